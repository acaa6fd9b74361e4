"""Restore drills: proof that a backup restores and that the application
runs from the restored copy (``backup.drill``, ``db.drill``).

A project drill restores a backup with every check of a normal restore
(:func:`backup_lib.project.restore_backup`) into a fresh temporary folder
that is never inside the project or a backup folder, then runs the user's
smoke command (``drill.command``) there with ``/bin/sh -c``, in its own
process group, under ``drill.timeout``.  A database drill extracts the
snapshot (every member checked against the manifest), runs
``integrity_check``, compares the row counts with the metadata, loads the
SQL dump, and runs ``drill.db_checks`` (queries that must return a row).

Each step is timed; the first that fails ends the drill with its own exit
code (:data:`EXIT_RESTORE_FAILED`, :data:`EXIT_COMMAND_FAILED`,
:data:`EXIT_TIMED_OUT`), chosen above the toolkit's 1-5 and the status
codes 10-13.  The temporary folder is removed unless the drill is told to
keep it.  Decisions (:func:`command_environment`, :func:`chain_problem`,
:func:`check_work_base`) are plain functions; the effects are in
:func:`drill_project` and :func:`drill_database`.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from .errors import BackupError, NotFoundError, UsageError
from .report import _shown, display_path

__all__ = [
    "EXIT_RESTORE_FAILED",
    "EXIT_COMMAND_FAILED",
    "EXIT_TIMED_OUT",
    "Step",
    "DrillResult",
    "newest_backup",
    "newest_listed",
    "chain_problem",
    "check_work_base",
    "command_environment",
    "drill_project",
    "drill_database",
]

EXIT_RESTORE_FAILED = 20  # the backup did not restore (missing from its chain, fails verification, unsafe, …)
EXIT_COMMAND_FAILED = 21  # the smoke command (or an SQL check) failed, or does not exist
EXIT_TIMED_OUT = 22  # the smoke command (or the SQL checks) ran past drill.timeout

TAIL_BYTES = 4096  # of the command's output, kept in the result
TAIL_LINES = 20
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a command past its timeout
WORK_LABEL = "backup-drill"
WORK_PREFIX = f".{WORK_LABEL}.restore-"  # workdir's naming: swept when their owner is gone
_MAX_CHAIN = 100_000


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str
    output: str | None = None  # the end of the smoke command's output

    def as_dict(self) -> dict:
        out = {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 3), "detail": self.detail}
        if self.output is not None:
            out["output"] = self.output
        return out


@dataclass
class DrillResult:
    kind: str  # "project" | "db"
    backup_path: str
    work_dir: str | None = None
    kept: bool = False
    steps: list[Step] = field(default_factory=list)
    exit_code: int = 0
    error: str | None = None
    files: int | None = None
    warnings: list[str] = field(default_factory=list)
    command: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def as_dict(self) -> dict:
        return {"kind": self.kind, "backup_path": self.backup_path, "ok": self.ok, "exit_code": self.exit_code,
                "error": self.error, "steps": [s.as_dict() for s in self.steps], "seconds": round(self.seconds, 3),
                "work_dir": self.work_dir, "kept": self.kept, "command": self.command, "files": self.files,
                "warnings": list(self.warnings)}


class _Failed(Exception):
    """A step failed: the drill ends with this code and line."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# ------------------------------------------------------------------ decisions


def newest_backup(backup_dir: str, kind: str, name: str | None, *, purpose: str = "to drill") -> str:
    """The newest backup of this project in ``backup_dir`` (for the
    database: not a safety backup that db.restore took)."""
    from .store import BackupStore

    store = BackupStore(backup_dir, kind)
    what = "project" if kind == "project" else "database"
    for bf in store.backups(name=name):
        if kind == "db":
            try:
                if store.metadata(bf.path).get("safety_backup"):
                    continue
            except BackupError:
                pass  # unreadable: the drill says so
        return bf.path
    raise NotFoundError(f"no {what} backups {purpose} in {display_path(backup_dir)}")


def chain_problem(path: str, read_metadata: Callable[[str], dict]) -> tuple[list[str], str | None]:
    """The archives an incremental backup needs (itself first, its full
    backup last), and what is wrong with its chain: a parent missing from
    the folder, or one that is not the backup its child was made on.  An
    archive whose own metadata cannot be read is left to the restore."""
    from .incremental import INCREMENTAL_TYPE

    chain = [path]
    seen = {os.path.basename(path)}
    try:
        meta = read_metadata(path)
    except BackupError:
        return chain, None  # the archive itself is unreadable: the restore says why
    while meta.get("backup_type") == INCREMENTAL_TYPE:
        link = meta.get("parent") or {}
        name = link.get("name")
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            return chain, f"{os.path.basename(chain[-1])} names no readable parent backup"
        if name in seen or len(chain) > _MAX_CHAIN:
            return chain, f"the chain of {os.path.basename(path)} loops at {name}"
        parent = os.path.join(os.path.dirname(path), name)
        if not os.path.isfile(parent):
            return chain, (f"{os.path.basename(chain[-1])} is an incremental backup on {name}, which is missing "
                           f"from {display_path(os.path.dirname(path))}")
        try:
            meta = read_metadata(parent)
        except BackupError as exc:
            return chain, f"{name}, in the chain of {os.path.basename(path)}, cannot be read: {exc}"
        want, got = link.get("metadata_sha256"), meta.get("metadata_sha256")
        if want and got and want != got:
            return chain, f"{name} is not the backup {os.path.basename(chain[-1])} was made on (another file of that name)"
        chain.append(parent)
        seen.add(name)
    return chain, None


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def check_work_base(base: str, forbidden: Mapping[str, str]) -> str:
    """The folder the drill's temporary folder goes in: absolute, existing,
    and outside every folder of ``forbidden`` ({label: path}: the project,
    the backup folders).  UsageError (exit 2) otherwise."""
    base = os.path.abspath(base)
    if not os.path.isdir(base):
        raise UsageError(f"drill.work_dir {display_path(base)} is not a folder")
    for label, folder in forbidden.items():
        if folder and _inside(base, folder):
            raise UsageError(f"the drill's temporary folder would be inside {label} ({display_path(folder)}): "
                             f"set drill.work_dir (or TMPDIR) to a folder outside it")
    return base


def _dotenv(path: str) -> dict[str, str]:
    try:
        from dotenv import dotenv_values

        return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}
    except (OSError, UnicodeDecodeError):
        return {}


def command_environment(base: Mapping[str, str], *, tree: str, archive: str, source_env: bool = False,
                        extra: Mapping | None = None, dotenv: Mapping[str, str] | None = None) -> dict[str, str]:
    """The smoke command's environment: the caller's (``base``) without the
    toolkit's own ``INVOKE_*`` settings; then, with ``source_env``, the
    restored tree's ``.env`` (``dotenv``); then ``drill.env`` (``extra``;
    a null value removes a variable); then ``BACKUP_DRILL=1``,
    ``BACKUP_DRILL_ROOT`` (the restored tree), ``BACKUP_DRILL_ARCHIVE``
    and ``PWD``."""
    env = {k: v for k, v in base.items() if not k.startswith("INVOKE_")}
    if source_env:
        env.update(dotenv or {})
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.update({"BACKUP_DRILL": "1", "BACKUP_DRILL_ROOT": tree, "BACKUP_DRILL_ARCHIVE": archive, "PWD": tree})
    return env


def check_env_setting(value) -> dict:
    """``drill.env``: a mapping of variable names to text (numbers are taken
    as text; null removes the variable)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"drill.env must map variable names to values, such as {{DATABASE_URL: 'sqlite:///drill.db'}} (got {value!r:.60})")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise UsageError(f"drill.env: {key!r:.60} is not a variable name")
        if item is None:
            out[key] = None
        elif isinstance(item, bool) or not isinstance(item, (str, int, float)) or "\0" in str(item):
            raise UsageError(f"drill.env.{key} must be text (got {item!r:.60})")
        else:
            out[key] = str(item)
    return out


def _exit_meaning(code: int) -> str:
    if code == 127:
        return " (command not found)"
    if code == 126:
        return " (not executable)"
    if code < 0:
        try:
            return f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f" (killed by signal {-code})"
    return ""


def _tail(log: str) -> str:
    """The last lines of the command's output, safe to print."""
    try:
        with open(log, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES and lines:
        lines = lines[1:]  # cut in the middle
    return "\n".join(_shown(line) for line in lines[-TAIL_LINES:])


# -------------------------------------------------------------------- effects


def _work_dir(base: str | None, forbidden: Mapping[str, str], warnings: list[str]) -> str:
    """A new work folder (``.backup-drill.restore-XXXXXXXX``, 0700, with an
    owner record and an empty ``tree/``) in ``base``; the folders of drills
    that were killed (their owner is gone) are removed first: a copy of the
    project, ``.env`` included, does not stay behind."""
    from .workdir import create_work_dir, is_work_dir_name, sweep_paths

    base = check_work_base(base or tempfile.gettempdir(), forbidden)
    try:
        names = [n for n in os.listdir(base) if n.startswith(WORK_PREFIX) and is_work_dir_name(n)]
    except OSError:
        names = []
    for note in sweep_paths(os.path.join(base, n) for n in sorted(names)):
        if note["removed"]:
            warnings.append(f"removed {display_path(note['path'])}: {note['reason']}")
    try:
        return create_work_dir(WORK_LABEL, "restore", parent=base).path
    except OSError as exc:
        raise BackupError(f"cannot create the drill's temporary folder in {display_path(base)}: {exc.strerror}") from None


def _done(result, work: str, keep: bool, t0: float) -> None:
    """Every drill's end: its folder kept or removed, its time taken."""
    result.kept = keep
    if not keep:
        _remove(work, result.warnings)
    result.seconds = time.monotonic() - t0


def _remove(path: str, warnings: list[str]) -> None:
    from .workdir import remove_tree

    try:
        remove_tree(path)
    except OSError as exc:
        warnings.append(f"the drill's temporary folder {display_path(path)} could not be removed: {exc.strerror or exc}")


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_command(command: str, *, cwd: str, env: Mapping[str, str], timeout: float, log: str) -> tuple[int | None, float]:
    """Run ``/bin/sh -c command`` in ``cwd``, its output into ``log``, in a
    new process group; (exit status, or None when it timed out; seconds).
    Past the timeout, and when it ends, whatever is left of its process
    group is killed: a drill leaves nothing running."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    start = time.monotonic()
    try:
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                    stdout=fd, stderr=fd, start_new_session=True)
        except OSError as exc:
            raise _Failed(EXIT_COMMAND_FAILED, f"the smoke command cannot be started: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_GRACE)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            return None, time.monotonic() - start
    except BaseException:  # Ctrl-C: the command goes too
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        _kill_group(proc.pid, signal.SIGKILL)  # what it left running in the background
    return code, time.monotonic() - start


def _restore(path: str, target: str, identity_file: str | None, progress, source=None):
    from .project import restore_backup

    if source is None:
        return restore_backup(path, target, progress=progress, identity_file=identity_file)
    where = source()
    with where["stream"]:
        return restore_backup(path, target, progress=progress, identity_file=identity_file, **where)


def newest_listed(rows: Sequence[Mapping], kind: str, where: str, *, purpose: str = "to drill") -> str:
    """The newest backup of a listing (a remote's rows, newest first), not
    a safety backup; an unreadable one is still the newest (the drill says
    what is wrong with it)."""
    for row in rows:
        if not row.get("safety_backup"):
            return str(row["name"])
    raise NotFoundError(f"no {'project' if kind == 'project' else 'database'} backups {purpose} on {where}")


def drill_project(
    path: str,
    *,
    root: str,
    backup_dirs=(),
    command: str | None,
    timeout: float = 600.0,
    source_env: bool = False,
    env: Mapping | None = None,
    work_dir: str | None = None,
    keep: bool = False,
    identity_file: str | None = None,
    progress=None,
    base_env: Mapping[str, str] | None = None,
    source: Callable[[], dict] | None = None,
) -> DrillResult:
    """Restore ``path`` into a fresh temporary folder and run ``command``
    in the restored tree.  Returns the result; a step that fails sets its
    ``exit_code`` and ``error`` (raises only for bad settings, exit 2).
    ``source()`` gives the archive from elsewhere (a remote: ``stream`` and
    the ``opener`` of its chain); ``path`` then only names it."""
    from .store import read_metadata

    extra = check_env_setting(env)
    forbidden = {"the project": root, **{f"the backup folder {os.path.basename(d) or d}": d for d in backup_dirs}}
    t0 = time.monotonic()
    result = DrillResult("project", path, command=command)
    if source is None and not os.path.exists(path):
        raise NotFoundError(f"backup {display_path(path)} does not exist")
    work = _work_dir(work_dir, forbidden, result.warnings)
    result.work_dir = work
    tree = os.path.join(work, "tree")  # empty: the restore renames its tree over it
    try:
        try:
            started = time.monotonic()
            # (a remote's chain is checked by the restore, which opens each parent from there)
            chain, problem = chain_problem(path, read_metadata) if source is None else ([path], None)
            if problem:
                result.steps.append(Step("chain", False, time.monotonic() - started, problem))
                raise _Failed(EXIT_RESTORE_FAILED, f"restore failed: {problem}")
            if len(chain) > 1:
                result.steps.append(Step("chain", True, time.monotonic() - started,
                                         f"{len(chain)} archives, down to {os.path.basename(chain[-1])}"))
            started = time.monotonic()
            try:
                restored = _restore(path, tree, identity_file, progress, source)
            except BackupError as exc:
                result.steps.append(Step("restore", False, time.monotonic() - started, str(exc)))
                raise _Failed(EXIT_RESTORE_FAILED, f"restore failed: {exc}") from None
            except _Failed as exc:
                result.steps.append(Step("restore", False, time.monotonic() - started, exc.message))
                raise
            result.files = len(restored.restored)
            note = ""
            if restored.incomplete:
                note = f"; {len(restored.outside_links)} symlinks not created, {len(restored.skipped)} paths skipped"
                for link in restored.outside_links:
                    result.warnings.append(f"symlink {display_path(link['path'])} -> {display_path(link['target'])} points "
                                           "outside the restored tree: not created")
                for item in restored.skipped:
                    result.warnings.append(f"skipped {display_path(item['path'])}: {item['reason']}")
            result.steps.append(Step("restore", True, time.monotonic() - started,
                                     f"{len(restored.restored)} paths into {display_path(tree)}{note}"))
            if command:
                os.makedirs(tree, exist_ok=True)  # an archive of nothing restores no folder
                dotenv = _dotenv(os.path.join(tree, ".env")) if source_env else None
                environ = command_environment(os.environ if base_env is None else base_env, tree=tree, archive=path,
                                              source_env=source_env, extra=extra, dotenv=dotenv)
                log = os.path.join(work, "command.log")
                code, seconds = run_command(command, cwd=tree, env=environ, timeout=timeout, log=log)
                tail = _tail(log)
                if code is None:
                    result.steps.append(Step("command", False, seconds, f"{_shown(command)}: still running after "
                                                                        f"{timeout:g}s (drill.timeout): killed", tail))
                    raise _Failed(EXIT_TIMED_OUT, f"the smoke command timed out after {timeout:g}s (drill.timeout): {_shown(command)}")
                if code != 0:
                    meaning = _exit_meaning(code)
                    result.steps.append(Step("command", False, seconds, f"{_shown(command)}: exit {code}{meaning}", tail))
                    raise _Failed(EXIT_COMMAND_FAILED, f"the smoke command failed with exit {code}{meaning}: {_shown(command)}")
                result.steps.append(Step("command", True, seconds, f"{_shown(command)}: exit 0", tail))
            else:
                result.warnings.append("no drill.command configured: the backup was restored and checked, no smoke test ran")
            if restored.incomplete:
                from .errors import EXIT_INCOMPLETE

                result.exit_code = EXIT_INCOMPLETE
                result.error = (f"the restore left out {len(restored.outside_links)} symlinks and skipped "
                                f"{len(restored.skipped)} paths")
        except _Failed as exc:
            result.exit_code, result.error = exc.code, exc.message
    finally:
        _done(result, work, keep, t0)
    return result


# ------------------------------------------------------------------ database


def _run_check(db: str, sql: str, deadline: float) -> int:
    """Rows the query returns (at most 1 is fetched); raises _Failed."""
    import sqlite3

    from . import sqlite as _sq

    try:
        with _sq.connect(db, readonly=True) as conn:
            conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
            try:
                row = conn.execute(sql).fetchone()
            except sqlite3.OperationalError as exc:
                if time.monotonic() > deadline and "interrupt" in str(exc):
                    raise _Failed(EXIT_TIMED_OUT, "timeout") from None
                raise _Failed(EXIT_COMMAND_FAILED, f"SQL error: {exc}") from None
            except (sqlite3.Error, sqlite3.Warning, ValueError) as exc:
                raise _Failed(EXIT_COMMAND_FAILED, f"SQL error: {exc}") from None
    except BackupError as exc:
        raise _Failed(EXIT_COMMAND_FAILED, str(exc)) from None
    return 0 if row is None else 1


def drill_database(
    path: str,
    *,
    root: str,
    backup_dirs=(),
    checks=(),
    timeout: float = 600.0,
    work_dir: str | None = None,
    keep: bool = False,
    identity_file: str | None = None,
    source: Callable[[], dict] | None = None,
) -> DrillResult:
    """Restore a database backup's snapshot into a temporary file, check it
    (hashes, integrity_check, row counts, the SQL dump) and run ``checks``.
    ``source()`` gives the archive's ``stream`` from elsewhere (a remote)."""
    from . import sqlite as _sq
    from .errors import DatabaseError
    from .extract import scan_archive

    forbidden = {"the project": root, **{f"the backup folder {os.path.basename(d) or d}": d for d in backup_dirs}}
    t0 = time.monotonic()
    result = DrillResult("db", path)
    if source is None and not os.path.exists(path):
        raise NotFoundError(f"backup {display_path(path)} does not exist")
    work = _work_dir(work_dir, forbidden, result.warnings)
    result.work_dir = work
    tree = os.path.join(work, "tree")

    def step(name: str, ok: bool, started: float, detail: str, code: int = EXIT_RESTORE_FAILED) -> None:
        result.steps.append(Step(name, ok, time.monotonic() - started, detail))
        if not ok:
            raise _Failed(code, f"{name} failed: {detail}" if name != "restore" else f"restore failed: {detail}")

    try:
        try:
            started = time.monotonic()
            try:
                if source is None:
                    res = scan_archive(path, dest=tree, identity_file=identity_file)
                else:
                    stream = source()["stream"]
                    with stream:
                        res = scan_archive(path, dest=tree, identity_file=identity_file, stream=stream)
            except BackupError as exc:
                step("restore", False, started, str(exc))
            meta = res.metadata or {}
            if meta.get("backup_type") != "database":
                step("restore", False, started, f"not a database backup (backup_type {meta.get('backup_type')!r})")
            if meta.get("engine") not in (None, "sqlite"):
                raise UsageError(f"db.drill restores SQLite backups; {os.path.basename(path)} is a {meta.get('engine')} backup")
            if res.errors:
                step("restore", False, started, f"fails verification: {res.errors[0]}"
                     + (f" (and {len(res.errors) - 1} more problems)" if len(res.errors) > 1 else ""))
            name = meta.get("database_file")
            db = os.path.join(tree, name) if isinstance(name, str) and name and "/" not in name else None
            if db is None or not os.path.isfile(db) or os.path.islink(db):
                step("restore", False, started, f"the snapshot {name!r} is missing from the archive")
            if res.sha256_of(name) != meta.get("sha256"):
                step("restore", False, started, "the snapshot's SHA-256 does not match the metadata")
            os.chmod(db, stat.S_IRUSR | stat.S_IWUSR)
            result.files = 1
            step("restore", True, started, f"{name} ({meta.get('size', os.path.getsize(db))} bytes) into {display_path(db)}")

            started = time.monotonic()
            try:
                check = _sq.integrity_check(db)
            except DatabaseError as exc:
                check = str(exc)
            step("integrity_check", check == "ok", started, check)

            started = time.monotonic()
            try:
                counts = _sq.table_counts(db)
            except DatabaseError as exc:
                step("row_counts", False, started, str(exc))
            recorded = meta.get("tables")
            if counts != recorded:
                differ = sorted(t for t in set(counts) | set(recorded or {}) if counts.get(t) != (recorded or {}).get(t))
                shown = ", ".join(f"{_shown(t)} {counts.get(t, 'missing')} (recorded {(recorded or {}).get(t, 'none')})"
                                  for t in differ[:5])
                step("row_counts", False, started, f"differ from the metadata: {shown}")
            step("row_counts", True, started, f"{len(counts)} tables, {sum(counts.values())} rows, as recorded")

            dump = meta.get("sql_dump")
            if dump:
                started = time.monotonic()
                sql = os.path.join(tree, dump) if isinstance(dump, str) and "/" not in dump else None
                if sql is None or not os.path.isfile(sql):
                    step("sql_dump", False, started, f"the dump {dump!r} is missing from the archive")
                loaded = os.path.join(work, "dump-check.db")
                try:
                    _sq.load_dump(sql, loaded)
                    same = _sq.table_counts(loaded) == counts
                except DatabaseError as exc:
                    step("sql_dump", False, started, str(exc))
                step("sql_dump", same, started, "loads, with the same row counts" if same else
                     "loads, but with other row counts than the snapshot")

            deadline = time.monotonic() + timeout
            for i, sql in enumerate(checks, 1):
                started = time.monotonic()
                label = f"check {i}"
                try:
                    rows = _run_check(db, sql, deadline)
                except _Failed as exc:
                    if exc.code == EXIT_TIMED_OUT:
                        result.steps.append(Step(label, False, time.monotonic() - started,
                                                 f"{_shown(sql)}: still running after drill.timeout {timeout:g}s: interrupted"))
                        raise _Failed(EXIT_TIMED_OUT, f"the SQL checks timed out after {timeout:g}s (drill.timeout): {_shown(sql)}") from None
                    step(label, False, started, f"{_shown(sql)}: {exc.message}", EXIT_COMMAND_FAILED)
                step(label, rows > 0, started, f"{_shown(sql)}: " + ("returns rows" if rows else "returns no rows"),
                     EXIT_COMMAND_FAILED)
        except _Failed as exc:
            result.exit_code, result.error = exc.code, exc.message
    finally:
        _done(result, work, keep, t0)
    return result
