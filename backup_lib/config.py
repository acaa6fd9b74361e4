"""Settings: one declarative schema, and one function that validates them.

Every setting a task reads is declared in :data:`SCHEMA`: its section and
key, its kind (true/false, a whole number or a number in a range, text, a
choice, a list of text, a path, a duration), its default and the flags that
set it.  :func:`resolve` takes the sources in the order Invoke merges them
(config files and ``INVOKE_<SECTION>_<KEY>`` variables) plus the task's
flags, and returns plain validated values, or raises :class:`UsageError`
(exit 2) naming the setting and where its value came from
(``INVOKE_BACKUP_LOCK_TIMEOUT=xyz``, ``backup.lock_timeout in
/srv/app/invoke.yaml``, ``--retention-days 1000000``).

Strings are parsed here, never by Invoke: ``INVOKE_DB_SQL_DUMP=no`` is false,
``=maybe`` is an error.  A later feature adds its settings by adding entries
to SCHEMA (a new section too, e.g. ``remotes`` or ``notify``); the tasks,
the environment variables, the unknown-key warnings and the validation
follow from the entries.

Pure: no Invoke import, no file reads; ``tasks.py`` hands over what Invoke
loaded and the environment.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any, Mapping, Sequence

from .errors import UsageError

__all__ = [
    "Bool", "Int", "Float", "Duration", "CalendarDuration", "Raw", "Text", "SecretText", "Choice", "TextList", "Path",
    "Flag", "Setting", "SCHEMA", "FileSource", "EnvSource",
    "resolve", "env_var", "env_prefixes", "check_invoke_layers",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# Plain classes, not dataclasses: building a dataclass costs a fraction of a
# millisecond, paid at every command's start.


class Kind:
    """How one setting's value is written and checked."""

    __slots__ = ()

    def expects(self) -> str:  # "a whole number from 0 to 36500", for messages
        raise NotImplementedError

    def parse(self, value: Any) -> Any:
        """The checked value, or ValueError (the message says what is expected)."""
        raise NotImplementedError


class Bool(Kind):
    __slots__ = ()

    def expects(self) -> str:
        return "true or false (or yes/no, on/off, 1/0)"

    def parse(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        raise ValueError


def _number_text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and len(value) <= 40 else None


class Int(Kind):
    __slots__ = ("min", "max", "unit")

    def __init__(self, min: int, max: int, unit: str = ""):  # unit: "days"
        self.min, self.max, self.unit = min, max, unit

    def expects(self) -> str:
        unit = f" of {self.unit}" if self.unit else ""
        return f"a whole number{unit} from {self.min} to {self.max}"

    def parse(self, value):
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            n = value
        else:
            text = _number_text(value)
            if text is None or not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError
            n = int(text)
        if not self.min <= n <= self.max:
            raise ValueError
        return n


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        x = float(value)
    else:
        text = _number_text(value)
        if text is None or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", text):
            raise ValueError
        x = float(text)
    if not math.isfinite(x):
        raise ValueError
    return x


class Float(Kind):
    __slots__ = ("min", "max", "unit")

    def __init__(self, min: float, max: float, unit: str = ""):  # unit: "seconds"
        self.min, self.max, self.unit = min, max, unit

    def expects(self) -> str:
        unit = f" of {self.unit}" if self.unit else ""
        return f"a number{unit} from {self.min:g} to {self.max:g}"

    def parse(self, value):
        x = _to_float(value)
        if not self.min <= x <= self.max:
            raise ValueError
        return x


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _show_duration(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class Duration(Kind):
    """Seconds, written ``90`` / ``90s``, ``15m``, ``26h``, ``7d`` or ``2w``; a float of seconds."""

    __slots__ = ("min", "max")

    def __init__(self, min: float, max: float):
        self.min, self.max = min, max

    def expects(self) -> str:
        return f"a duration such as 90s, 15m, 26h or 7d, from {_show_duration(self.min)} to {_show_duration(self.max)}"

    def parse(self, value):
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value.lower()) if len(value) <= 40 else None
            if not m:
                raise ValueError
            seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            seconds = _to_float(value)
        if not self.min <= seconds <= self.max:
            raise ValueError
        return seconds


class Text(Kind):
    """Text; an empty value means the default.  Numbers are taken as text (``name: 2024``)."""

    __slots__ = ()

    def expects(self) -> str:
        return "text"

    def parse(self, value):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError
        return str(value) or None


class SecretText(Text):
    """Text that may hold a password (a database URL): a message about a
    bad value names the setting and where it was set, never the value."""

    __slots__ = ()


class Choice(Kind):
    __slots__ = ("choices", "aliases")

    def __init__(self, choices: tuple[str, ...], aliases: Mapping[str, str] | None = None):
        self.choices = choices
        self.aliases = aliases or {}  # other spellings -> a choice

    def expects(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, value):
        if not isinstance(value, str):
            raise ValueError
        word = value.strip().lower()
        word = self.aliases.get(word, word)
        if word not in self.choices:
            raise ValueError
        return word


class TextList(Kind):
    """A list in a config file; in a variable or a single string, items separated by commas."""

    __slots__ = ()

    def expects(self) -> str:
        return "a list of text (in a variable: items separated by commas)"

    def parse(self, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, (list, tuple)):
            out = []
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                    raise ValueError
                out.append(str(item))
            return out
        raise ValueError


class Path(Kind):
    """A file or folder name; ``~`` is expanded; empty means the default."""

    __slots__ = ()

    def expects(self) -> str:
        return "a path"

    def parse(self, value):
        if not isinstance(value, str) or "\0" in value:
            raise ValueError
        return os.path.expanduser(value) if value else None


_VALUE = object()  # a flag that takes a value (as opposed to a switch)


class Flag:
    """A task flag that sets a setting.

    ``--compression X`` takes a value; a switch (``--no-compress``) sets
    ``const``; ``append`` flags add to the configured list instead of
    replacing it (``--include``).
    """

    __slots__ = ("name", "const", "append")

    def __init__(self, name: str, const: Any = _VALUE, append: bool = False):
        self.name, self.const, self.append = name, const, append

    @property
    def is_switch(self) -> bool:
        return self.const is not _VALUE


class Setting:
    __slots__ = ("kind", "default", "flags", "doc")

    def __init__(self, kind: Kind, default: Any = None, flags: tuple[Flag, ...] = (), doc: str = ""):
        self.kind, self.default, self.flags, self.doc = kind, default, flags, doc


class Raw(Kind):
    """Handed on as written (a file's value, or a variable's text), for a
    feature that validates its own section (``notify``, ``status``)."""

    __slots__ = ()

    def expects(self) -> str:
        return "a value"

    def parse(self, value):
        return value


class CalendarDuration(Kind):
    """A retention duration: ``7d``, ``2w``, ``6m`` (months), ``1y3m``, ``36h``
    (restic's ``--keep-within``); kept as its text."""

    __slots__ = ()

    def expects(self) -> str:
        return "a duration such as 7d, 2w, 6m or 1y3m (y, m = months, w, d, h)"

    def parse(self, value):
        from .retention import parse_duration

        if not isinstance(value, str):
            raise ValueError
        if not value.strip():
            return None
        try:
            return parse_duration(value).text
        except UsageError:
            raise ValueError from None


_COMPRESSION = Choice(("gz", "zst", "none"), {"gzip": "gz", "zstd": "zst", "tar": "none"})
_KEEP = Int(0, 1_000_000)


def _keep_rules() -> dict[str, Setting]:
    """--keep-last … --keep-within: calendar retention (any rule replaces age and count)."""
    out = {
        f"keep_{rule}": Setting(_KEEP, None, (Flag(f"--keep-{rule}"),), f"keep the newest backup of each of the last N {what}")
        for rule, what in (("hourly", "hours"), ("daily", "days"), ("weekly", "weeks"), ("monthly", "months"), ("yearly", "years"))
    }
    out["keep_last"] = Setting(_KEEP, None, (Flag("--keep-last"),), "keep the newest N backups")
    out["keep_within"] = Setting(CalendarDuration(), None, (Flag("--keep-within"),), "keep every backup this young (from the newest)")
    return out


_RETENTION_DAYS = Int(0, 36500, "days")
_MAX_BACKUPS = Int(1, 1_000_000)

SCHEMA: dict[str, dict[str, Setting]] = {
    "backup": {
        "project_root": Setting(Path(), None, (Flag("--project-root"),), "the folder to back up (default: the folder holding tasks.py)"),
        "backup_dir": Setting(Path(), None, (Flag("--backup-dir"),), "where project backups go (default <root>/backups/project)"),
        "name": Setting(Text(), None, (), "<name> in archive names (default: the root folder's name)"),
        "compression": Setting(_COMPRESSION, "gz", (Flag("--compression"), Flag("--no-compress", const="none"))),
        "include": Setting(TextList(), [], (Flag("--include", append=True),), "gitignore patterns always re-included"),
        "exclude": Setting(TextList(), [], (Flag("--exclude", append=True),), "gitignore patterns always left out"),
        "default_excludes": Setting(Bool(), True, (Flag("--no-default-excludes", const=False),)),
        "retention_days": Setting(_RETENTION_DAYS, 30, (Flag("--retention-days"),)),
        "max_backups": Setting(_MAX_BACKUPS, 5, (Flag("--max-backups"),)),
        "lock_timeout": Setting(Float(0, 86400, "seconds"), 10.0, (), "how long a create or cleanup waits for another"),
        "environment": Setting(Text(), None, (), 'metadata "environment"'),
        "restore_target": Setting(Path(), None, (Flag("--target-path"),), "default ./restored_project"),
        "incremental": Setting(Choice(("false", "true", "auto"), {"no": "false", "off": "false", "0": "false", "yes": "true",
                                                                   "on": "true", "1": "true"}),
                               "false", (Flag("--incremental", const="true"), Flag("--full", const="false")),
                               "store only what changed since the newest backup"),
        "full_every_days": Setting(Int(0, 36500, "days"), 7, (), "a chain whose full backup is older gets a new full"),
        "max_chain": Setting(Int(1, 10_000), 14, (), "incrementals per chain at most"),
        "cache_dir": Setting(Path(), None, (), "where manifests are kept for the next incremental (default ~/.cache/backup-toolkit)"),
        "push": Setting(TextList(), [], (Flag("--push", append=True),), "remotes every new project backup is pushed to"),
        "encrypt_to": Setting(TextList(), [], (), "age recipients (age1…) or SSH public keys: every new backup is encrypted to them"),
        "recipients_file": Setting(Path(), None, (), "a file of recipients, one per line (# comments), like age -R"),
        "identity_file": Setting(Path(), None, (Flag("--identity"),), "the age identity (or SSH private key) that opens encrypted backups"),
        **_keep_rules(),
    },
    "db": {
        "path": Setting(Path(), None, (Flag("--db-path"),), "the SQLite file"),
        "url": Setting(SecretText(), None, (), "the database's URL: postgresql://… or sqlite:///… (wins over DATABASE_URL)"),
        "pg_bin_dir": Setting(Path(), None, (), "the folder of pg_dump, pg_restore and psql (default: PATH)"),
        "schema": Setting(TextList(), [], (Flag("--schema", append=True),), "PostgreSQL: dump only these schemas (pg_dump patterns)"),
        "exclude_table": Setting(TextList(), [], (Flag("--exclude-table", append=True),),
                                 "PostgreSQL: leave these tables out (pg_dump patterns)"),
        "drop_previous": Setting(Bool(), False, (Flag("--drop-previous", const=True),),
                                 "PostgreSQL: drop the replaced database after a restore instead of keeping it"),
        "backup_dir": Setting(Path(), None, (Flag("--backup-dir"),), "where database backups go (default <root>/backups/db)"),
        "compression": Setting(_COMPRESSION, "gz", (Flag("--compression"), Flag("--no-compress", const="none"))),
        "sql_dump": Setting(Bool(), True, (Flag("--no-sql-dump", const=False),)),
        "retention_days": Setting(_RETENTION_DAYS, 30, (Flag("--retention-days"),)),
        "max_backups": Setting(_MAX_BACKUPS, 5, (Flag("--max-backups"),)),
        "busy_timeout": Setting(Float(0, 3600, "seconds"), 5.0, (), "how long the snapshot waits on a locked database"),
        "restore_lock_wait": Setting(Float(0, 3600, "seconds"), 2.0, (), "how long db.restore tries for the write lock"),
        "push": Setting(TextList(), [], (Flag("--push", append=True),), "remotes every new database backup is pushed to"),
        "encrypt_to": Setting(TextList(), [], (), "age recipients or SSH public keys for database backups"),
        "recipients_file": Setting(Path(), None, (), "a file of recipients for database backups"),
        **_keep_rules(),
    },
    # Validated by backup_lib.notify.notify_config and backup_lib.status (their
    # own messages, e.g. that YAML reads `when: on` as a boolean).
    "notify": {
        "urls": Setting(Raw(), None, (), "Apprise URLs (mailto://, slack://, json://host/path …)"),
        "urls_env": Setting(Text(), None, (), "an environment variable holding the URLs"),
        "when": Setting(Raw(), None, (), "failure (default), always or never"),
        "heartbeat_url": Setting(Raw(), None, (), "a dead man's switch: requested on success, <url>/fail on failure"),
        "heartbeat_url_env": Setting(Text(), None, (), "an environment variable holding the heartbeat URL"),
        "heartbeat_tasks": Setting(TextList(), None, (), "the tasks that ping the heartbeat (default backup.create, db.backup)"),
        "timeout": Setting(Float(0.1, 300, "seconds"), None, (), "per notification"),
    },
    "status": {
        "max_age": Setting(Raw(), None, (), "newest backup older than this is stale (default 26h; or per kind)"),
        "verify_max_age": Setting(Raw(), None, (), "no successful verify within this is stale (default 8d; off)"),
        "shrink_warning": Setting(Raw(), None, (), "newest below this share of the previous is shrunk (default 0.5)"),
        "kinds": Setting(TextList(), None, (), "the kinds to expect (default project, and db when there is a database)"),
        "remotes": Setting(TextList(), None, (), "the remotes whose copies are checked too (default: those backup.push and db.push name)"),
    },
    "history": {
        "path": Setting(Path(), None, (), "the run history (default <root>/backups/history.jsonl)"),
    },
    # Restore drills (backup.drill, db.drill; README "Restore drills").
    "drill": {
        "command": Setting(Text(), None, (Flag("--command"),), "the smoke command run in the restored tree (/bin/sh -c)"),
        "timeout": Setting(Duration(1, 7 * 86400), 600.0, (Flag("--timeout"),), "how long the smoke command (or the SQL checks) may run"),
        "source_env": Setting(Bool(), False, (), "give the command the variables of the restored tree's .env"),
        "env": Setting(Raw(), None, (), "variables to set for the command ({NAME: value}; null removes one)"),
        "db_checks": Setting(TextList(), [], (), "SQL queries that must each return at least one row on the restored database"),
        "work_dir": Setting(Path(), None, (), "where the temporary copies go (default: the system's temporary folder)"),
    },
    "report": {
        "output": Setting(Path(), None, (), "the HTML page backup.report writes (relative to the root; default beside the history)"),
    },
}


def env_var(section: str, key: str) -> str:
    """``INVOKE_BACKUP_LOCK_TIMEOUT`` for backup.lock_timeout (Invoke's naming)."""
    return f"INVOKE_{section}_{key}".upper()


def env_prefixes(schema: Mapping[str, Mapping[str, Setting]] = SCHEMA) -> tuple[str, ...]:
    return tuple(f"INVOKE_{section.upper()}_" for section in schema)


class FileSource:
    """A config file's whole content as Invoke loaded it."""

    __slots__ = ("path", "data")

    def __init__(self, path: str, data: Any):
        self.path, self.data = path, data


class EnvSource:
    """The ``INVOKE_*`` variables (other variables are ignored)."""

    __slots__ = ("environ",)

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _closest(word: str, options) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.7)
    return f"; did you mean {match[0]}?" if match else ""


def _file_entries(src: FileSource, schema, warnings: list[str]):
    data = src.data
    if data is None:
        return
    if not isinstance(data, Mapping):
        raise UsageError(f"{src.path} must hold a mapping of settings (it holds {type(data).__name__})")
    for section, keys in schema.items():
        values = data.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise UsageError(f"{section} in {src.path} must be a mapping of settings (it is {_show(values)})")
        for key, raw in values.items():
            if key in keys:
                shown = "" if isinstance(keys[key].kind, SecretText) else f" ({_show(raw)})"
                yield section, key, raw, f"{section}.{key} in {src.path}{shown}"
            else:
                warnings.append(f"unknown setting {section}.{key} in {src.path} is ignored{_closest(str(key), keys)}")


def _env_entries(src: EnvSource, schema, warnings: list[str]):
    # Longest section first, so that a section named like another's prefix is matched whole.
    prefixes = sorted(((f"INVOKE_{s.upper()}_", s) for s in schema), key=lambda p: -len(p[0]))
    for name in sorted(src.environ):
        for prefix, section in prefixes:
            if name.startswith(prefix):
                key = name[len(prefix):].lower()
                raw = src.environ[name]
                if key in schema[section]:
                    yield section, key, raw, name if isinstance(schema[section][key].kind, SecretText) else f"{name}={shlex.quote(raw)}"
                else:
                    names = [env_var(section, k) for k in schema[section]]
                    warnings.append(f"unknown setting {name} is ignored{_closest(name, names)}")
                break


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    try:
        return setting.kind.parse(raw)
    except ValueError:
        raise UsageError(f"invalid {where}: expected {setting.kind.expects()}") from None


def _given(value: Any) -> bool:
    """Whether a flag was given: Invoke hands None, False or [] when it was not."""
    return value is not None and value is not False and value != [] and value != ()


def resolve(
    sources: Sequence[FileSource | EnvSource],
    flags: Mapping[str, Mapping[str, Any]] | None = None,
    schema: Mapping[str, Mapping[str, Setting]] = SCHEMA,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every setting of every section, validated: ``({section: {key: value}}, warnings)``.

    ``sources`` go from lowest to highest precedence (Invoke's order: system,
    user and project files, the environment, the runtime file); a later
    source's value wins, ``null`` in a file means the default.  Every value
    found is checked, also one a later source overrides, so that a broken
    setting is reported wherever it is.  ``flags`` is ``{section: {"--flag":
    value as Invoke parsed it}}`` for the flags of the running task; flags
    not given (None, False, []) are skipped, and two flags that set one
    setting differently (``--no-compress --compression zst``) are refused.
    ``warnings`` name unknown keys in known sections, one line each.
    """
    values = {section: {key: _copy(s.default) for key, s in keys.items()} for section, keys in schema.items()}
    warnings: list[str] = []
    for src in sources:
        entries = _file_entries(src, schema, warnings) if isinstance(src, FileSource) else _env_entries(src, schema, warnings)
        for section, key, raw, where in entries:
            setting = schema[section][key]
            values[section][key] = _copy(setting.default) if raw is None else _parse(setting, raw, where)
    for section, given in (flags or {}).items():
        known = {f.name: (key, f) for key, s in schema[section].items() for f in s.flags}
        unknown = set(given) - set(known)
        if unknown:  # a task passing a flag the schema does not know: a bug in tasks.py
            raise ValueError(f"no setting in section {section!r} for {sorted(unknown)}")
        chosen: dict[str, list[tuple[str, Any]]] = {}
        for name, raw in given.items():
            if not _given(raw):
                continue
            key, flag = known[name]
            setting = schema[section][key]
            if flag.append:
                items = raw if isinstance(raw, (list, tuple)) else [raw]
                values[section][key] = [*values[section][key], *(_parse(setting, [i], f"{name} {shlex.quote(str(i))}")[0] for i in items)]
            elif flag.is_switch:
                chosen.setdefault(key, []).append((name, flag.const))
            else:
                chosen.setdefault(key, []).append((f"{name} {shlex.quote(str(raw))}", _parse(setting, raw, f"{name} {shlex.quote(str(raw))}")))
        for key, picks in chosen.items():
            if len({repr(v) for _, v in picks}) > 1:
                raise UsageError(f"{' and '.join(label for label, _ in picks)} contradict each other: give one")
            values[section][key] = picks[0][1]
    return values, warnings


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def check_invoke_layers(layers: Sequence[tuple[str, Any]]) -> str | None:
    """What would make Invoke fail merging these config layers, or None.

    ``layers`` are (where, data), lowest first, as Invoke merges them (its
    defaults, the collection's, then the files).  Invoke raises (a
    traceback, before any task runs) when a file is not a mapping, when
    one layer has a mapping where another has a single value (``run: 5``),
    or, when it reads the environment, at a key that is not text.
    """
    merged: dict = {}
    origin: dict[tuple, str] = {}
    for where, data in layers:
        if data is None:
            continue
        if not isinstance(data, Mapping):
            return f"{where} must hold a mapping of settings (it holds {type(data).__name__})"
        problem = _merge(merged, data, (), where, origin)
        if problem:
            return problem
    return None


def _merge(base: dict, updates: Mapping, path: tuple, where: str, origin: dict) -> str | None:
    for key, value in updates.items():
        here = (*path, key)
        dotted = ".".join(map(str, here))
        if not isinstance(key, str):
            return f"{dotted} in {where}: setting names must be text (got {_show(key)})"
        if key in base and isinstance(base[key], Mapping) != isinstance(value, Mapping):
            what = "a mapping" if isinstance(value, Mapping) else f"a single value ({_show(value)})"
            was = "a mapping" if isinstance(base[key], Mapping) else f"a single value ({_show(base[key])})"
            return f"{dotted} is {what} in {where} but {was} in {origin.get(here, 'an earlier layer')}: Invoke cannot merge them"
        if isinstance(value, Mapping):
            if key not in base:
                base[key] = {}
                origin[here] = where
            problem = _merge(base[key], value, here, where, origin)
            if problem:
                return problem
        else:
            base[key] = value
            origin[here] = where
    return None
