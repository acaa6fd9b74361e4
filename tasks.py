"""Invoke tasks: `invoke --list`, `invoke --help backup.create`.

Thin by design: each task validates its settings and flags in one call
(`_settings`, over the schema in backup_lib/config.py), calls one backup_lib
function, prints the result (human or --json) and turns the library's errors
into exit codes at one boundary (`_run`).  Defaults live in the schema; an
invoke.yaml, INVOKE_BACKUP_* / INVOKE_DB_* variables and flags override them.
"""

from __future__ import annotations

import functools
import json
import os
import sys

from invoke import Collection, Exit, Task, task
from invoke.exceptions import ParseError

from backup_lib.errors import EXIT_USAGE

HERE = os.path.dirname(os.path.abspath(__file__))

# What a shell reports for a command killed by SIGPIPE (128 + 13), as for
# `yes | head -1`: the reader closed our stdout early (`backup.create --dry-run | head`).
EXIT_PIPE = 141

ROOT_HELP = "project folder to back up (default: the folder holding tasks.py; config backup.project_root)"
DIR_HELP = "where backups are kept (default: <root>/backups/project; config backup.backup_dir)"
DB_DIR_HELP = "where database backups are kept (default: <root>/backups/db; config db.backup_dir)"
JSON_HELP = "machine-readable output on stdout"

# One short form per long flag, the same in every task (README "Short flags").
# A letter never means two flags, and none that a task had before means
# something else in that task now: an old short flag either keeps its meaning
# or is refused (exit 2), e.g. -f (--force in backup.restore, --from-sql in
# db.restore) is gone and --force is -F.
SHORT_FLAGS = {
    "project-root": "p",
    "backup-dir": "B",
    "backup-path": "b",
    "json": "j",
    "dry-run": "d",
    "force": "F",
    "include": "i",
    "exclude": "e",
    "compression": "c",
    "no-compress": "u",
    "retention-days": "r",
    "max-backups": "m",
    "db-path": "s",
    "target-path": "t",
    "no-sql-dump": "n",
    "no-default-excludes": "o",
    "keep-last": "l",
    "keep-hourly": "H",
    "keep-daily": "D",
    "keep-weekly": "W",
    "keep-monthly": "M",
    "keep-yearly": "Y",
    "keep-within": "w",
    "remote": "R",
    "push": "P",
    "download": "L",
    "identity": "I",
    "keep": "k",
    "output": "O",
}


class _Task(Task):
    """A task whose short flags come from SHORT_FLAGS, not from the first free letter."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(opts["names"][0])
        if short:
            opts["names"].append(short)
        return opts

    # Invoke takes two tasks for one when their names match and their bodies
    # share code, and runs only the first of them: backup.verify and db.verify
    # are both "verify" and both bodies are _run's wrapper, so
    # `invoke backup.verify db.verify` (the README's cron line) skipped
    # db.verify in silence.  A task is itself only.
    def __eq__(self, other):
        return self is other

    __hash__ = Task.__hash__


def _task(*args, **kwargs):
    return task(*args, klass=_Task, auto_shortflags=False, **kwargs)


def _run(fn):
    """The one boundary where library errors become one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        try:
            result = _call(fn, c, *args, **kwargs)
        except Exit:
            _flush_stdout()  # a reader gone early changes nothing: the task's own code stands
            raise
        if not _flush_stdout() or _stdout_lost:
            raise Exit(code=EXIT_PIPE)
        return result

    return wrapper


def _call(fn, c, *args, **kwargs):
    from backup_lib.errors import BackupError

    try:
        with _monitoring(c, fn, kwargs):
            return fn(c, *args, **kwargs)
    except Exit:
        raise
    except BackupError as exc:
        raise Exit(f"error: {exc}", code=exc.exit_code) from None
    except BrokenPipeError:
        _drop_stdout()
        raise Exit(code=EXIT_PIPE) from None
    except KeyboardInterrupt:
        raise Exit("error: interrupted", code=130) from None
    except Exception as exc:  # a bug: still one line, never a traceback
        raise Exit(f"error: unexpected {type(exc).__name__}: {exc} (please report this)", code=1) from None


# Task function -> its name, for the run history (filled from the collections below).
_TASK_NAMES: dict = {}


def _monitoring(c, fn, kwargs):
    """Record the run in the history and notify, for the tasks that create,
    verify, restore or delete (not a --dry-run).  When the settings cannot
    even be read, the task reports that itself: nothing is recorded."""
    import contextlib

    from backup_lib.errors import BackupError
    from backup_lib.monitor import RECORDED_TASKS

    task = _TASK_NAMES.get(fn)
    if task not in RECORDED_TASKS or kwargs.get("dry_run"):
        return contextlib.nullcontext()
    from backup_lib.history import history_path
    from backup_lib.monitor import monitored

    try:
        flags = {"--project-root": kwargs.get("project_root")}
        if task.startswith("backup."):
            flags["--backup-dir"] = kwargs.get("backup_dir")
        s = _settings(c, backup=flags)
        root = os.path.abspath(s["backup"]["project_root"] or HERE)
        # A root that is gone is still a failure to notify, but no folder is made for its history.
        history = history_path(_dir(s, "backup", root), s["history"]["path"], root) if os.path.isdir(root) else None
    except BackupError:
        return contextlib.nullcontext()
    # The default history goes beside the backup folders once there are
    # some; a configured history.path is made when missing.
    return monitored(task, history_file=history, project=s["backup"]["name"] or os.path.basename(root), root=root,
                     notify_section={k: v for k, v in s["notify"].items() if v is not None}, warn=_warn,
                     create_history_dir=bool(s["history"]["path"]))


def _run_report():
    """The run being recorded, for a task to say what it wrote or checked."""
    from backup_lib.history import current_run

    return current_run()


_stdout_lost = False  # the reader of stdout went away (`| head -1`)


def _flush_stdout() -> bool:
    """Flush now, so that a closed pipe shows here and not in Python's exit; False if it was closed."""
    try:
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        _drop_stdout()
        return False


def _drop_stdout() -> None:
    """Point fd 1 at /dev/null: what is still buffered or written goes nowhere, quietly."""
    global _stdout_lost
    _stdout_lost = True
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):  # not a real file (tests' StringIO)
        pass


# ------------------------------------------------------------------- settings

# INVOKE_BACKUP_* / INVOKE_DB_* variables taken out of os.environ when the
# invoke command loads this file (see _take_environment).
_ENV_TAKEN: dict[str, str] = {}
_WARNED: set[str] = set()


def _settings(c, **flags) -> dict:
    """Every setting, validated (exit 2 naming the culprit); ``flags`` is
    {section: {"--flag": value}} for this task's flags that set one."""
    from backup_lib.config import EnvSource, resolve

    values, warnings = resolve([*_file_sources(c, ("system", "user", "project")), EnvSource(_environment()),
                                *_file_sources(c, ("runtime",))], flags)
    for text in warnings:
        if text not in _WARNED:  # once per run, also when one run calls several tasks
            _WARNED.add(text)
            _warn(text)
    return values


def _file_sources(c, levels):
    """The config files Invoke loaded, each with its data, in Invoke's order."""
    from backup_lib.config import FileSource

    for level in levels:
        path = getattr(c.config, f"_{level}_path", None)
        if path:
            yield FileSource(path, getattr(c.config, f"_{level}", None))


def _environment() -> dict[str, str]:
    from backup_lib.config import env_prefixes

    prefixes = env_prefixes()
    return {**_ENV_TAKEN, **{k: v for k, v in os.environ.items() if k.startswith(prefixes)}}


def _root(s) -> str:
    from backup_lib.errors import NotFoundError

    root = os.path.abspath(s["backup"]["project_root"] or HERE)
    if not os.path.isdir(root):
        raise NotFoundError(f"project root {root} does not exist or is not a directory")
    return root


def _dir(s, section: str, root: str) -> str:
    from backup_lib.errors import UsageError
    from backup_lib.store import default_backup_dir

    value = s[section]["backup_dir"]
    kind = "project" if section == "backup" else "db"
    path = os.path.abspath(os.path.join(root, value) if value else default_backup_dir(root, kind))
    if os.path.isfile(path):
        raise UsageError(f"the backup dir {path} is a file: name a folder (an archive is --backup-path/-b)")
    return path


def _backup_dirs(c, s, root: str) -> list[str]:
    """The backup folders in use and both configured ones (a flag may point
    elsewhere): never in a backup, never searched for the database."""
    configured = _settings(c)
    return list(dict.fromkeys([_dir(s, "backup", root), _dir(s, "db", root),
                               _dir(configured, "backup", root), _dir(configured, "db", root)]))


def _history_files(s, root: str) -> list[str]:
    """The run history and its lock: the toolkit's, never in a project backup."""
    from backup_lib.history import history_path

    path = history_path(_dir(s, "backup", root), s["history"]["path"], root)
    return [path, path + ".lock", *_report_files(s, root, path)]


def _report_files(s, root: str, history: str) -> list[str]:
    """Where backup.report writes by default and as configured: never in a project backup."""
    from backup_lib.report_page import default_report_path

    configured = s["report"]["output"]
    return [default_report_path(history), *([os.path.abspath(os.path.join(root, configured))] if configured else [])]


def _archive(backup_path, backup_dir: str) -> str:
    from backup_lib.errors import UsageError
    from backup_lib.project import resolve_backup_path

    path = resolve_backup_path(backup_path, backup_dir)
    if os.path.isdir(path):
        raise UsageError(f"--backup-path {path} is a folder: name an archive (the folder of backups is --backup-dir/-B)")
    return path


REMOTE_HELP = "a remote named in the remotes: section of invoke.yaml (default: the only one configured)"


def _transfer_help(kind: str, verb: str) -> dict:
    where = "<root>/backups/project" if kind == "project" else "<root>/backups/db"
    return {"remote": REMOTE_HELP, "backup_path": f"{verb} only this backup (a name; repeatable)",
            "dry_run": f"{verb} nothing; say what would be done", "project_root": ROOT_HELP,
            "backup_dir": f"the local backup dir (default {where})", "json_": JSON_HELP}


def _plain(value):
    """Invoke's config proxies as plain dicts and lists."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _remote(c, name: str | None, *, record: bool = True):
    """The remote called ``name`` in the remotes: section (the only one when
    not named); ``record``: the run history names it (``backup.status``
    judges that remote's copies by these runs)."""
    from backup_lib.errors import UsageError
    from backup_lib.remote import remote_from_config

    remotes = _plain(c.config.get("remotes")) or {}
    if not isinstance(remotes, dict):
        raise UsageError("remotes: must map names to remotes, such as offsite: {url: s3://bucket/prefix}")
    if not remotes:
        raise UsageError("no remotes configured: add a remotes: section to invoke.yaml (see the README, Off-site copies)")
    if name is None:
        if len(remotes) > 1:
            raise UsageError(f"several remotes are configured ({', '.join(sorted(remotes))}): choose one with --remote")
        name = next(iter(remotes))
    if name not in remotes:
        raise UsageError(f"no remote named {name!r} in the remotes: section (configured: {', '.join(sorted(remotes))})")
    if record:
        _run_report().remote = name
    return remote_from_config(name, remotes[name])


IDENTITY_HELP = "the age identity (or SSH private key) file that opens encrypted backups (config backup.identity_file)"


def _recipients(s, section: str, root: str) -> list[str]:
    """The recipients new backups of this kind are encrypted to (none: not encrypted)."""
    from backup_lib.archive.crypto import parse_recipients, read_recipients_file

    cfg = s[section]
    found = parse_recipients(cfg["encrypt_to"], source=f"{section}.encrypt_to")
    if cfg["recipients_file"]:
        found += read_recipients_file(os.path.join(root, cfg["recipients_file"]))
    return list(dict.fromkeys(found))


def _identity(s, root: str) -> str | None:
    """The identity file, checked (a missing or unreadable one is exit 2)."""
    from backup_lib.archive.crypto import check_identity_file

    value = s["backup"]["identity_file"]
    return check_identity_file(os.path.join(root, value) if value else None)


def _project_name(s, root: str) -> str:
    return s["backup"]["name"] or os.path.basename(root) or "project"


def _transfer_progress(label: str):
    bar = _progress(label)
    return lambda n: bar(0, n)


def _push_after_create(c, s, kind: str, archive: str, names) -> tuple[list[dict], list[str]]:
    """Push a new archive to each remote named: (what went where, the
    problems, one line each).  The local backup stays whatever happens."""
    pushed, problems = [], []
    if not names:
        return pushed, problems  # (and boto3's world stays unimported)
    from backup_lib.errors import BackupError
    from backup_lib.remote import push
    from backup_lib.store import BackupStore

    for name in dict.fromkeys(names):
        try:
            with _remote(c, name, record=False) as remote:  # the create's record is the local backup's
                result = push(BackupStore(os.path.dirname(archive), kind), remote, only=[os.path.basename(archive)],
                              progress=_transfer_progress(f"push {name}"), lock_timeout=s["backup"]["lock_timeout"])
            if result.ok:
                pushed.append({"remote": remote.name, "url": remote.url})
            else:
                problems.append(f"push to {name}: {result.conflicts[0].reason}")
        except BackupError as exc:
            problems.append(f"push to {name} failed: {exc}")
    return pushed, problems


def _created(c, s, kind: str, result, json_: bool, human, extra_json=None) -> None:
    """After a create: the configured pushes, then the output (JSON holds
    where the backup was pushed), then exit 1 if a push failed (the local
    backup stays)."""
    meta = result.metadata
    pushed, problems = _push_after_create(c, s, kind, result.backup_path, s["backup" if kind == "project" else "db"]["push"])
    if json_:
        extra = {"pushed": pushed, "push_errors": problems} if pushed or problems else {}
        _json({**meta, "backup_path": result.backup_path, **(extra_json or {}), **extra})
    else:
        human()
        for p in pushed:
            _out(f"  pushed to {p['remote']} ({p['url']})")
    for problem in problems[1:]:
        _warn(problem)
    if problems:
        raise Exit(f"error: created {result.backup_path}, but {problems[0]}", code=1)


def _out(text: str) -> None:
    """A line of output; once its reader has gone, the task goes on and its output goes nowhere."""
    try:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    except BrokenPipeError:
        _drop_stdout()


def _warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


def _shown(path) -> str:
    """A path for human output: quoted when it holds control characters (see report.display_path)."""
    from backup_lib.report import display_path

    return display_path(path)


def _print_work_folders(notes) -> None:
    """One warning per work folder a killed run left behind."""
    for note in notes:
        verb = "removed" if note["removed"] else "left alone"
        _warn(f"{verb} {_shown(note['path'])}: {note['reason']}")


def _progress(label: str):
    from backup_lib.progress import Progress

    return Progress(label)


def _json(data) -> None:
    from backup_lib.report import to_json

    _out(to_json(data))


def _incomplete(message: str):
    from backup_lib.errors import EXIT_INCOMPLETE

    raise Exit(f"incomplete: {message}", code=EXIT_INCOMPLETE)


# ------------------------------------------------------------------- backup


@_task(
    help={
        "project_root": ROOT_HELP,
        "backup_dir": DIR_HELP,
        "no_compress": "write a plain .tar (same as --compression none)",
        "compression": "gz (default), zst or none (config backup.compression)",
        "exclude": "also leave out paths matching this gitignore pattern (repeatable; config backup.exclude)",
        "include": "keep paths that ignore rules drop, e.g. .env (repeatable; config backup.include)",
        "no_default_excludes": "do not leave out .venv, node_modules, *.pyc, the database … (git's rules still apply)",
        "dry_run": "write nothing; list exactly the files the archive would hold",
        "incremental": "store only what changed since the newest backup (config backup.incremental: false, true or auto)",
        "full": "write a full backup whatever backup.incremental says",
        "rehash": "incremental: read and hash every file instead of trusting size and times",
        "push": "then push the new backup to this remote (repeatable; config backup.push)",
        "identity": IDENTITY_HELP + "; an incremental over an encrypted backup needs it",
        "json_": JSON_HELP,
    },
    iterable=["exclude", "include", "push"],
)
@_run
def create(c, project_root=None, backup_dir=None, no_compress=False, compression=None, exclude=None, include=None,
           no_default_excludes=False, dry_run=False, incremental=False, full=False, rehash=False, push=None, identity=None,
           json_=False):
    """Back up the project tree as git sees it, into one standard archive."""
    from backup_lib.project import create_backup
    from backup_lib.report import human_size

    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--no-compress": no_compress,
                             "--compression": compression, "--exclude": exclude, "--include": include,
                             "--no-default-excludes": no_default_excludes, "--incremental": incremental, "--full": full,
                             "--push": push, "--identity": identity})
    cfg = s["backup"]
    root = _root(s)
    result = create_backup(
        root,
        backup_dir=_dir(s, "backup", root),
        name=cfg["name"],
        compression=cfg["compression"],
        include=cfg["include"],
        exclude=cfg["exclude"],
        default_excludes=cfg["default_excludes"],
        db_path=s["db"]["path"],
        db_url=s["db"]["url"],
        other_backup_dirs=[*_backup_dirs(c, s, root), *_history_files(s, root)],
        environment=cfg["environment"],
        dry_run=dry_run,
        lock_timeout=cfg["lock_timeout"],
        progress=None if dry_run else _progress("backup"),
        incremental=cfg["incremental"],
        full=full,
        rehash=rehash,
        full_every_days=cfg["full_every_days"],
        max_chain=cfg["max_chain"],
        cache_dir=cfg["cache_dir"],
        encrypt_to=_recipients(s, "backup", root),
        identity_file=_identity(s, root),
    )
    meta = result.metadata
    for warning in result.warnings:
        _warn(warning)
    if not dry_run:
        _run_report().archive(result.backup_path, files=meta["total_files"])
    if dry_run:
        if json_:
            _json(meta)
        else:
            for path in result.files:
                _out(_shown(path))
            sys.stderr.write(f"{meta['total_files']} files, {human_size(meta['total_size'])} would be backed up (dry run: nothing written)\n")
        return
    _print_work_folders(result.work_folders)
    for item in meta.get("skipped_files", []):
        _warn(f"skipped {_shown(item['path'])}: {item['reason']}")
    for path in meta.get("changed_files", []):
        _warn(f"{_shown(path)} changed while it was read")

    def human():
        size = os.path.getsize(result.backup_path)
        packed = "an uncompressed tar" if meta["compression"] == "none" else meta["compression"]
        _out(f"Created {_shown(result.backup_path)}\n  {meta['total_files']} files, {human_size(meta['total_size'])} "
             f"({human_size(size)} as {packed}), project_hash {meta['project_hash'][:16]}")
        if meta.get("parent"):
            ch = meta["changes"]
            _out(f"  incremental on {meta['parent']['name']} (chain depth {meta['chain_depth']}): {ch['new']} new, "
                 f"{ch['modified']} modified, {ch['removed']} removed, {ch['unchanged']} unchanged")

    _created(c, s, "project", result, json_, human, {"work_folders": list(result.work_folders)})
    if result.incomplete:
        _incomplete(f"{len(meta['skipped_files'])} files could not be read and are not in the backup")


@_task(name="list", help={"remote": REMOTE_HELP + ": list its backups, from the indexes", "project_root": ROOT_HELP,
                          "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def list_(c, remote=None, project_root=None, backup_dir=None, json_=False):
    """List project backups, newest first (reads the small index beside each archive)."""
    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir})
    root = _root(s)
    if remote is not None:
        _list_remote(c, s, root, "project", remote, json_)
    else:
        _list_backups(_dir(s, "backup", root), "project", json_)


def _list_remote(c, s, root: str, kind: str, remote_name: str, json_: bool) -> None:
    from backup_lib.remote import list_remote
    from backup_lib.report import render_list

    with _remote(c, remote_name) as remote:
        rows = list_remote(remote, _project_name(s, root), kind)
    if json_:
        _json(rows)
    else:
        _out(f"Remote {remote.name} ({remote.url}):\n{render_list(rows)}")


def _list_backups(bdir: str, kind: str, json_: bool) -> None:
    from backup_lib.project import list_backups
    from backup_lib.report import render_list

    if not os.path.isdir(bdir):
        _json([]) if json_ else _out(f"No backups: {bdir} does not exist.")
        return
    rows = [b.summary() for b in list_backups(bdir, kind=kind)]
    _json(rows) if json_ else _out(render_list(rows))


@_task(help={"backup_path": "the archive (a path, or a name inside the backup dir)", "project_root": ROOT_HELP,
             "remote": REMOTE_HELP + ": read the backup's index there (nothing is downloaded)",
             "identity": IDENTITY_HELP + " (without it an encrypted backup shows its public part)",
             "backup_dir": DIR_HELP, "json_": "print the raw metadata JSON"})
@_run
def info(c, backup_path=None, remote=None, identity=None, project_root=None, backup_dir=None, json_=False):
    """Show a backup's metadata."""
    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--identity": identity})
    root = _root(s)
    if remote is not None:
        _remote_info(c, s, root, "project", remote, backup_path, json_)
    else:
        _show_info(_archive(backup_path, _dir(s, "backup", root)), json_, _identity(s, root))


def _remote_info(c, s, root: str, kind: str, remote_name: str, backup_path, json_: bool) -> None:
    from backup_lib.errors import UsageError
    from backup_lib.remote import remote_info
    from backup_lib.report import render_metadata

    if not backup_path:
        raise UsageError("--backup-path is required (the archive's name on the remote)")
    with _remote(c, remote_name) as remote:
        meta = remote_info(remote, _project_name(s, root), kind, backup_path)
    _json(meta) if json_ else _out(f"backup_path: {remote.name}:{os.path.basename(backup_path)}\n{render_metadata(meta)}")


def _show_info(path: str, json_: bool, identity_file: str | None = None) -> None:
    from backup_lib.archive.crypto import is_encrypted
    from backup_lib.project import backup_info
    from backup_lib.report import render_metadata

    meta = backup_info(path, identity_file)
    if json_:
        _json(meta)
        return
    _out(f"backup_path: {path}\n{render_metadata(meta)}")
    if meta.get("backup_type") == "project_incremental":
        from backup_lib.project import chain_of
        from backup_lib.report import display_path

        links = [display_path(c["name"]) + ("" if c["present"] else " (MISSING)") for c in chain_of(path, meta)]
        _out("chain (newest first): " + " <- ".join(links))
    if identity_file is None and is_encrypted(path):
        sys.stderr.write("encrypted: this is its public part only (give --identity for the whole metadata)\n")


@_task(
    help={
        "backup_path": "the archive (a path, or a name inside the backup dir)",
        "target_path": "where to restore (default ./restored_project; config backup.restore_target)",
        "force": "restore into a non-empty target, replacing files the backup holds",
        "dry_run": "write nothing; list what would be written and what already exists there",
        "include": "restore only paths matching this gitignore pattern (repeatable)",
        "allow_outside_links": "recreate symlinks that point outside the target (never written through)",
        "identity": IDENTITY_HELP,
        "remote": REMOTE_HELP + ": read the backup (and its chain) from there, verified before anything reaches the target",
        "project_root": ROOT_HELP,
        "backup_dir": DIR_HELP,
        "json_": JSON_HELP,
    },
    iterable=["include"],
)
@_run
def restore(c, backup_path=None, target_path=None, force=False, dry_run=False, include=None,
            allow_outside_links=False, identity=None, remote=None, project_root=None, backup_dir=None, json_=False):
    """Verify a backup (an incremental with its chain) and restore it into an empty (or --force'd) directory."""
    from backup_lib.project import restore_backup

    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--target-path": target_path,
                             "--identity": identity})
    root = _root(s)
    target = s["backup"]["restore_target"] or "restored_project"
    options = dict(force=force, dry_run=dry_run, include=include or [], allow_outside_links=allow_outside_links,
                   progress=None if dry_run else _progress("restore"), identity_file=_identity(s, root))
    if remote is not None:
        with _remote(c, remote) as rem:
            path, stream, opener = _remote_source(rem, _project_name(s, root), "project", backup_path)
            with stream:
                result = restore_backup(path, target, stream=stream, opener=opener, **options)
    else:
        path = _archive(backup_path, _dir(s, "backup", root))
        result = restore_backup(path, target, **options)
    _run_report().archive(path, files=len(result.restored))
    _print_restore(result, json_)


def _remote_source(remote, name: str, kind: str, backup_path):
    """A remote backup as a restore reads it: a label, its stream, and how
    to open its parents (an incremental's chain) from the same remote."""
    from backup_lib.errors import UsageError
    from backup_lib.remote import open_remote_archive

    if not backup_path:
        raise UsageError("--backup-path is required (the archive's name on the remote)")
    archive = os.path.basename(backup_path)

    def opener(parent: str) -> dict:
        return {"archive": f"{remote.name}:{parent}", "stream": open_remote_archive(remote, name, kind, parent)}

    return f"{remote.name}:{archive}", open_remote_archive(remote, name, kind, archive), opener


def _print_restore(result, json_):
    _print_work_folders(result.work_folders)
    for link in result.outside_links:
        _warn(f"symlink {_shown(link['path'])} -> {_shown(link['target'])} points outside the target: "
              f"{'would not be created' if result.dry_run else 'not created'} (use --allow-outside-links)")
    for item in result.skipped:
        _warn(f"{'would skip' if result.dry_run else 'skipped'} {_shown(item['path'])}: {item['reason']}")
    if json_:
        _json({"backup_path": result.backup_path, "target": result.target, "dry_run": result.dry_run,
               "restored": list(result.restored), "existing": list(result.existing),
               "outside_links": list(result.outside_links), "skipped": list(result.skipped),
               "work_folders": list(result.work_folders)})
    elif result.dry_run:
        existing = set(result.existing)
        for p in result.restored:
            _out(f"{'overwrite' if p in existing else 'create'}  {_shown(p)}")
        sys.stderr.write(f"{len(result.restored)} paths would be restored into {_shown(result.target)}, "
                         f"{len(existing)} of them exist there (dry run: nothing written"
                         + ("; the target is not empty: the real run needs --force" if result.needs_force else "") + ")\n")
    else:
        _out(f"Restored {len(result.restored)} paths from {_shown(result.backup_path)} into {_shown(result.target)}")
    if result.incomplete:
        _incomplete(f"{len(result.outside_links)} symlinks {'would not be' if result.dry_run else 'not'} created, "
                    f"{len(result.skipped)} paths {'would be ' if result.dry_run else ''}skipped")


@_task(help={"backup_path": "verify this archive only (default: every backup in the backup dir)",
             "remote": REMOTE_HELP + ": check its copies (size and SHA-256 recorded at upload)",
             "download": "with --remote: stream every archive through the full verification (no copy is kept)",
             "identity": IDENTITY_HELP + " (without it an encrypted backup is checked against the SHA-256 recorded when it was written)",
             "project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def verify(c, backup_path=None, remote=None, download=False, identity=None, project_root=None, backup_dir=None, json_=False):
    """Check archives end to end: structure, every member's SHA-256, project_hash."""
    from backup_lib.project import verify_backups

    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--identity": identity})
    root = _root(s)
    if remote is not None:
        return _verify_remote(c, s, root, "project", remote, backup_path, download, json_)
    bdir = _dir(s, "backup", root)
    paths = [_archive(backup_path, bdir)] if backup_path else []
    _print_verify(verify_backups(bdir, paths, kind="project", identity_file=_identity(s, root)), json_)


def _verify_remote(c, s, root: str, kind: str, remote_name: str, backup_path, download: bool, json_: bool) -> None:
    from backup_lib.errors import EXIT_INTEGRITY
    from backup_lib.remote import verify_remote

    with _remote(c, remote_name) as remote:
        reports = verify_remote(remote, _project_name(s, root), kind, only=[backup_path] if backup_path else None,
                                download=download, check_stream=_stream_check(kind, _identity(s, root)) if download else None)
    failed = [r for r in reports if not r.ok]
    _run_report().verified(len(reports), len(failed))
    if json_:
        _json([r.as_dict() for r in reports])
    else:
        for r in reports:
            note = "  (the encrypted file only: give --identity to check its contents)" if r.checked == "encrypted file" else ""
            _out(f"ok      {remote.name}:{r.archive}{note}" if r.ok else f"FAILED  {remote.name}:{r.archive}: {r.errors[0]}")
        if not download and remote.storage.kind == "folder":
            sys.stderr.write("checked: size and SHA-256 of each copy's bytes against its upload (--download also reads the archives' contents)\n")
        elif not download:
            sys.stderr.write("checked: size and SHA-256 of each copy against its upload (--download reads the contents)\n")
    if failed:
        raise Exit(f"error: {len(failed)} of {len(reports)} backups on {remote.name} failed verification: "
                   + ", ".join(r.archive for r in failed), code=EXIT_INTEGRITY)


def _stream_check(kind: str, identity_file: str | None):
    """The full verification of an archive read as a stream (verify --remote
    --download): the same strict pass as a local verify, and for a database
    backup its checks on the extracted snapshot; no copy is kept."""
    from backup_lib.archive.reader import IdentityNeededError
    from backup_lib.database import check_database_stream
    from backup_lib.errors import BackupError
    from backup_lib.extract import scan_archive

    def check(stream, rb) -> list[str]:
        label = rb.archive
        try:
            if kind == "db":
                return check_database_stream(label, stream, identity_file)
            return list(scan_archive(label, stream=stream, identity_file=identity_file).errors)
        except IdentityNeededError:
            raise  # encrypted, no key: verify_remote checks the encrypted bytes and says so
        except BackupError as exc:
            return [str(exc)]

    return check


def _print_verify(reports, json_):
    from backup_lib.errors import EXIT_INTEGRITY

    from backup_lib.report import render_verify

    if json_:
        _json([r.as_dict() for r in reports])
    else:
        _out(render_verify(reports))
    failed = [r for r in reports if not r.ok]
    _run_report().verified(len(reports), len(failed))
    if failed:
        raise Exit(f"error: {len(failed)} of {len(reports)} backups failed verification: "
                   + ", ".join(os.path.basename(r.backup_path) for r in failed), code=EXIT_INTEGRITY)


def _keep_help(section: str) -> dict:
    periods = {"hourly": "hour", "daily": "day", "weekly": "ISO week", "monthly": "month", "yearly": "year"}
    out = {f"keep_{rule}": f"keep the newest backup of each of the last N {what}s with one (local time; config {section}.keep_{rule})"
           for rule, what in periods.items()}
    out["keep_last"] = f"keep the newest N backups (config {section}.keep_last)"
    out["keep_within"] = f"keep every backup within this of the newest: 7d, 2w, 6m, 1y3m (config {section}.keep_within)"
    return out


def _keep_flags(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within) -> dict:
    return {"--keep-last": keep_last, "--keep-hourly": keep_hourly, "--keep-daily": keep_daily, "--keep-weekly": keep_weekly,
            "--keep-monthly": keep_monthly, "--keep-yearly": keep_yearly, "--keep-within": keep_within}


@_task(help={"retention_days": "delete backups older than this many days (default 30; config backup.retention_days)",
             "max_backups": "keep at most this many backups (default 5; config backup.max_backups)",
             **_keep_help("backup"),
             "remote": REMOTE_HELP + ": apply the retention there (objects not named as this project's backups stay)",
             "dry_run": "delete nothing; say what would be deleted and why",
             "project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def cleanup(c, retention_days=None, max_backups=None, keep_last=None, keep_hourly=None, keep_daily=None, keep_weekly=None,
            keep_monthly=None, keep_yearly=None, keep_within=None, remote=None, dry_run=False, project_root=None, backup_dir=None,
            json_=False):
    """Delete old backups by age and count, or by --keep-* rules; the newest, and every chain a kept backup needs, stay."""
    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir,
                             "--retention-days": retention_days, "--max-backups": max_backups,
                             **_keep_flags(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within)})
    root = _root(s)
    if remote is not None:
        return _cleanup_remote(c, s, "backup", root, remote, dry_run, json_)
    _cleanup(s, "backup", root, _dir(s, "backup", root), dry_run, json_)


def _keep_policy(cfg):
    from backup_lib.retention import KeepPolicy, check_retention_args

    check_retention_args(cfg["retention_days"], cfg["max_backups"])
    return KeepPolicy.from_values(**{rule: cfg[f"keep_{rule}"] for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within")})


def _cleanup_remote(c, s, section: str, root: str, remote_name: str, dry_run: bool, json_: bool) -> None:
    """The same retention on a remote: only objects named and indexed as this project's backups are deleted."""
    import datetime as dt
    import functools

    from backup_lib.remote import cleanup_remote
    from backup_lib.retention import plan_retention

    cfg = s[section]
    plan = functools.partial(plan_retention, now=dt.datetime.now(dt.timezone.utc), retention_days=cfg["retention_days"],
                             max_backups=cfg["max_backups"], keep=_keep_policy(cfg))
    with _remote(c, remote_name) as remote:
        result = cleanup_remote(remote, _project_name(s, root), "project" if section == "backup" else "db", plan, dry_run=dry_run)
    _warn_future(result.decisions, f"{remote.name}:")
    if json_:
        _json(result.as_dict())
        return
    for d in result.decisions:
        verb = ("would delete" if dry_run else "deleted") if d.delete else "keep"
        _out(f"{verb:12}  {remote.name}:{d.key}  ({d.reason})")
    for name in result.unconfirmed:
        _warn(f"left alone {remote.name}:{name}: no index confirms it as this project's backup")
    if not result.decisions:
        _out(f"No backups to clean up on {remote.name}.")


def _cleanup(s, section: str, root: str, bdir: str, dry_run: bool, json_: bool) -> None:
    from backup_lib.errors import BackupError
    from backup_lib.project import cleanup_backups

    cfg = s[section]
    keep = _keep_policy(cfg)
    try:
        identity_file = _identity(s, root)  # opens an encrypted backup whose index is stale
    except BackupError as exc:  # a cleanup goes on without it: such a backup is left alone
        _warn(f"backup.identity_file not used: {exc}")
        identity_file = None
    result = cleanup_backups(
        bdir,
        kind="project" if section == "backup" else "db",
        name=s["backup"]["name"] or os.path.basename(root),
        retention_days=cfg["retention_days"],
        max_backups=cfg["max_backups"],
        keep=keep,
        dry_run=dry_run,
        lock_timeout=s["backup"]["lock_timeout"],
        cache_dir=s["backup"]["cache_dir"],
        identity_file=identity_file,
    )
    if not json_ and not os.path.isdir(bdir):
        _out(f"No backups to clean up: {bdir} does not exist.")
        return
    _print_cleanup(result, json_)


def _warn_future(decisions, where: str = "") -> None:
    """One warning naming the backups dated in the future (kept, not counted: a clock was wrong)."""
    from backup_lib.retention import dated_in_future

    future = dated_in_future(decisions)
    if future:
        names = ", ".join(where + _shown(os.path.basename(d.key)) for d in future)
        _warn(f"{len(future)} backup(s) dated in the future, kept and not counted (was the clock wrong when they were made?): {names}")


def _print_cleanup(result, json_):
    _warn_future(result.decisions)
    if json_:
        _json({"dry_run": result.dry_run, "deleted": list(result.deleted),
               "would_delete": [d.key for d in result.decisions if d.delete] if result.dry_run else [],
               "kept": [d.key for d in result.decisions if not d.delete], "not_backups": list(result.not_backups),
               "backups": [{"backup_path": d.key, "name": os.path.basename(d.key), "timestamp": d.timestamp.isoformat(),
                            "action": "delete" if d.delete else "keep", "reasons": list(d.reasons)} for d in result.decisions]})
        return
    for d in result.decisions:
        verb = ("would delete" if result.dry_run else "deleted") if d.delete else "keep"
        _out(f"{verb:12}  {_shown(os.path.basename(d.key))}  ({d.reason})")
    why = dict(result.why_unreadable)
    for p in result.not_backups:
        _warn(f"left alone {_shown(os.path.basename(p))}: {why.get(p, 'not readable as a backup')}")
    if not result.decisions:
        _out("No backups to clean up.")


# ----------------------------------------------------------------------- db

DB_PATH_HELP = ("the SQLite file (default: config db.path, db.url, DATABASE_URL / SQLALCHEMY_DATABASE_URI, or the one *.db "
                "under the root); a PostgreSQL database is named by db.url or DATABASE_URL")


def _db_settings(c, project_root, backup_dir, identity=None, **db_flags):
    """The settings, the root and the database backup dir, for the db.* tasks."""
    s = _settings(c, backup={"--project-root": project_root, "--identity": identity}, db={"--backup-dir": backup_dir, **db_flags})
    root = _root(s)
    return s, root, _dir(s, "db", root)


def _pg_bin_dir(s, root: str) -> str | None:
    value = s["db"]["pg_bin_dir"]
    return os.path.join(root, value) if value else None


def _given(**flags) -> list[str]:
    """The names of the flags given (PostgreSQL-only ones: refused for a SQLite database)."""
    return [f"--{name.replace('_', '-')}" for name, value in flags.items() if value]


@_task(name="backup", help={"db_path": DB_PATH_HELP, "no_sql_dump": "leave the SQL dump out (the snapshot, or the custom dump, only)",
                            "no_compress": "write a plain .tar", "compression": "gz (default), zst or none (config db.compression)",
                            "push": "then push the new backup to this remote (repeatable; config db.push)",
                            "schema": "PostgreSQL: dump only schemas matching this pg_dump pattern (repeatable; config db.schema)",
                            "exclude_table": "PostgreSQL: leave out tables matching this pg_dump pattern (repeatable; config db.exclude_table)",
                            "project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP, "json_": JSON_HELP},
       iterable=["push", "schema", "exclude_table"])
@_run
def db_backup_task(c, db_path=None, no_sql_dump=False, no_compress=False, compression=None, push=None, schema=None,
                   exclude_table=None, project_root=None, backup_dir=None, json_=False):
    """Back up the database consistently: a SQLite snapshot, or a PostgreSQL dump of one snapshot, with an SQL dump."""
    from backup_lib.database import db_backup
    from backup_lib.report import human_size

    s, root, bdir = _db_settings(c, project_root, backup_dir, **{"--db-path": db_path, "--no-sql-dump": no_sql_dump,
                                                                 "--no-compress": no_compress, "--compression": compression,
                                                                 "--push": push, "--schema": schema,
                                                                 "--exclude-table": exclude_table})
    cfg = s["db"]
    bar = _progress("db backup")
    try:
        result = db_backup(
            root,
            db_path=cfg["path"],
            db_url=cfg["url"],
            schemas=cfg["schema"],
            exclude_tables=cfg["exclude_table"],
            pg_bin_dir=_pg_bin_dir(s, root),
            pg_only=_given(schema=schema, exclude_table=exclude_table),
            backup_dir=bdir,
            skip_dirs=_backup_dirs(c, s, root),
            name=s["backup"]["name"],
            compression=cfg["compression"],
            sql_dump=cfg["sql_dump"],
            environment=s["backup"]["environment"],
            lock_timeout=s["backup"]["lock_timeout"],
            busy_timeout=cfg["busy_timeout"],
            progress=bar,
            encrypt_to=_recipients(s, "db", root),
        )
    finally:
        bar.done()  # ends the progress line, if one was drawn, before the output
    meta = result.metadata
    for warning in result.warnings:
        _warn(warning)
    _run_report().archive(result.backup_path, files=meta["total_files"])

    def human():
        rows = sum(meta["tables"].values())
        if meta.get("engine") == "postgresql":
            dumps = ", ".join(_shown(d) for d in (meta["dump_file"], meta["sql_dump"]) if d)
            _out(f"Created {_shown(result.backup_path)}\n  {meta['source']}: {len(meta['tables'])} tables, {rows} rows, "
                 f"{human_size(meta['size'])}, PostgreSQL {meta['server_version']}, dumps {dumps}")
            return
        _out(f"Created {result.backup_path}\n  {meta['source_path']}: {len(meta['tables'])} tables, {rows} rows, "
             f"{human_size(meta['size'])}, integrity ok" + (f", dump {meta['sql_dump']}" if meta["sql_dump"] else ""))

    _created(c, s, "db", result, json_, human)


@_task(name="list", help={"remote": REMOTE_HELP + ": list its backups, from the indexes", "project_root": ROOT_HELP,
                          "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_list(c, remote=None, project_root=None, backup_dir=None, json_=False):
    """List database backups, newest first."""
    s, root, bdir = _db_settings(c, project_root, backup_dir)
    if remote is not None:
        _list_remote(c, s, root, "db", remote, json_)
    else:
        _list_backups(bdir, "db", json_)


@_task(name="info", help={"backup_path": "the archive (a path, or a name inside the backup dir)", "project_root": ROOT_HELP,
                          "remote": REMOTE_HELP + ": read the backup's index there (nothing is downloaded)",
                          "identity": IDENTITY_HELP + " (without it an encrypted backup shows its public part)",
                          "backup_dir": DB_DIR_HELP, "json_": "print the raw metadata JSON"})
@_run
def db_info(c, backup_path=None, remote=None, identity=None, project_root=None, backup_dir=None, json_=False):
    """Show a database backup's metadata."""
    s, root, bdir = _db_settings(c, project_root, backup_dir, identity=identity)
    if remote is not None:
        _remote_info(c, s, root, "db", remote, backup_path, json_)
    else:
        _show_info(_archive(backup_path, bdir), json_, _identity(s, root))


@_task(name="verify", help={"backup_path": "verify this archive only (default: every database backup)", "project_root": ROOT_HELP,
                            "remote": REMOTE_HELP + ": check its copies (size and SHA-256 recorded at upload)",
                            "download": "with --remote: stream every archive through the full verification (no copy is kept)",
                            "identity": IDENTITY_HELP + " (without it an encrypted backup is checked against its recorded SHA-256)",
                            "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_verify_task(c, backup_path=None, remote=None, download=False, identity=None, project_root=None, backup_dir=None, json_=False):
    """Check database backups: hashes, then SQLite's integrity_check, row counts and the dump loading, or pg_restore --list."""
    from backup_lib.database import db_verify

    s, root, bdir = _db_settings(c, project_root, backup_dir, identity=identity)
    if remote is not None:
        return _verify_remote(c, s, root, "db", remote, backup_path, download, json_)
    paths = [_archive(backup_path, bdir)] if backup_path else []
    _print_verify(db_verify(bdir, paths, identity_file=_identity(s, root), pg_bin_dir=_pg_bin_dir(s, root)), json_)


@_task(name="restore", help={"backup_path": "the archive to restore", "db_path": DB_PATH_HELP,
                             "from_sql": "SQLite: rebuild from the SQL dump instead of the snapshot",
                             "force": "SQLite: restore even while another connection holds a write transaction: what it commits "
                                      "then goes to the replaced file and is lost; PostgreSQL: terminate the other sessions "
                                      "of the database (never skips verification)",
                             "target_db": "PostgreSQL: restore into this new database and leave the live one alone",
                             "drop_previous": "PostgreSQL: drop the replaced database instead of keeping it as "
                                              "<db>_previous_<ts> (config db.drop_previous)",
                             "identity": IDENTITY_HELP,
                             "remote": REMOTE_HELP + ": read the backup from there (verified before the database is touched)",
                             "project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_restore_task(c, backup_path=None, db_path=None, from_sql=False, force=False, target_db=None, drop_previous=False,
                    identity=None, remote=None, project_root=None, backup_dir=None, json_=False):
    """Verify a database backup, take a safety backup, and swap the restored database into place."""
    from backup_lib.database import db_restore

    s, root, bdir = _db_settings(c, project_root, backup_dir, identity=identity,
                                 **{"--db-path": db_path, "--drop-previous": drop_previous})
    if target_db is not None and not target_db.strip():
        from backup_lib.errors import UsageError

        raise UsageError("--target-db needs the name of a new database")
    options = dict(root=root, db_path=s["db"]["path"], db_url=s["db"]["url"], backup_dir=bdir,
                   skip_dirs=_backup_dirs(c, s, root), name=s["backup"]["name"],
                   from_sql=from_sql, force=force, busy_timeout=s["db"]["restore_lock_wait"],
                   lock_timeout=s["backup"]["lock_timeout"], identity_file=_identity(s, root),
                   encrypt_to=_recipients(s, "db", root), target_db=target_db,
                   drop_previous=s["db"]["drop_previous"], pg_bin_dir=_pg_bin_dir(s, root),
                   pg_only=_given(target_db=target_db is not None, drop_previous=drop_previous))
    bar = _progress("db restore")
    try:
        if remote is not None:
            with _remote(c, remote) as rem:
                path, stream, _opener = _remote_source(rem, _project_name(s, root), "db", backup_path)
                with stream:
                    result = db_restore(path, stream=stream, progress=bar, **options)
        else:
            path = _archive(backup_path, bdir)
            result = db_restore(path, progress=bar, **options)
    finally:
        bar.done()
    _run_report().archive(path)
    _print_work_folders(result.work_folders)
    if not hasattr(result, "db_path"):
        return _print_pg_restore(result, json_)
    held = ", ".join(f"pid {pid} {cmd}" for pid, cmd in result.open_by)
    if result.forced_while_busy:
        _warn(f"restored over another connection's write transaction (--force{'; open in ' + held if held else ''}): "
              f"what it commits now goes to the replaced file and is lost; restart the application")
    if json_:
        _json({"db_path": result.db_path, "backup_path": result.backup_path, "safety_backup": result.safety_backup,
               "from_sql": result.from_sql, "tables": result.tables, "forced_while_busy": result.forced_while_busy,
               "open_by": [{"pid": pid, "command": cmd} for pid, cmd in result.open_by],
               "work_folders": list(result.work_folders)})
    else:
        _out(f"Restored {result.db_path} from {result.backup_path}" + (" (rebuilt from the SQL dump)" if result.from_sql else ""))
        _out(f"  safety backup of the previous database: {result.safety_backup}" if result.safety_backup else "  (there was no database before)")
        _out("  restart the application so that no connection keeps the old file open"
             + (f" (it is open in {held})" if held else ""))


def _print_pg_restore(result, json_) -> None:
    for note in result.notes:
        _warn(note)
    if json_:
        _json({"engine": "postgresql", "database": result.database, "backup_path": result.backup_path,
               "safety_backup": result.safety_backup, "tables": result.tables, "replaced": result.replaced,
               "previous": result.previous, "terminated": result.terminated, "notes": list(result.notes),
               "work_folders": list(result.work_folders)})
        return
    _out(f"Restored {_shown(result.database)} from {_shown(result.backup_path)}"
         + ("" if result.replaced else " (a new database)"))
    if result.safety_backup:
        _out(f"  safety backup of the database it replaced: {_shown(result.safety_backup)}")
    if result.previous:
        ident = '"' + result.previous.replace('"', '""') + '"'  # as SQL writes the name
        shown = ident if ident.isprintable() else _shown(ident)
        _out(f"  the previous database is kept as {_shown(result.previous)} (DROP DATABASE {shown} when no longer needed)")
    elif result.replaced:
        _out("  the previous database was dropped (--drop-previous)")
    if result.terminated:
        _out(f"  terminated {result.terminated} session{'s' if result.terminated != 1 else ''} of the database (--force)")


@_task(name="cleanup", help={"retention_days": "delete backups older than this many days (default 30; config db.retention_days)",
                             "max_backups": "keep at most this many backups (default 5; config db.max_backups)",
                             **_keep_help("db"),
                             "remote": REMOTE_HELP + ": apply the retention there (objects not named as this project's backups stay)",
                             "dry_run": "delete nothing; say what would be deleted and why",
                             "project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_cleanup(c, retention_days=None, max_backups=None, keep_last=None, keep_hourly=None, keep_daily=None, keep_weekly=None,
               keep_monthly=None, keep_yearly=None, keep_within=None, remote=None, dry_run=False, project_root=None, backup_dir=None,
               json_=False):
    """Delete old database backups (safety backups count) by age and count, or by --keep-* rules; the newest is always kept."""
    s, root, bdir = _db_settings(c, project_root, backup_dir, **{
        "--retention-days": retention_days, "--max-backups": max_backups,
        **_keep_flags(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within)})
    if remote is not None:
        return _cleanup_remote(c, s, "db", root, remote, dry_run, json_)
    _cleanup(s, "db", root, bdir, dry_run, json_)


@_task(name="push", help={**_transfer_help("db", "push"),
                          "overwrite": "replace a remote copy that differs (another machine's backup of the same name, say)"},
       iterable=["backup_path"])
@_run
def db_push(c, remote=None, backup_path=None, overwrite=False, dry_run=False, project_root=None, backup_dir=None, json_=False):
    """Upload every local database backup the remote lacks (compared by name, size and SHA-256)."""
    s, root, bdir = _db_settings(c, project_root, backup_dir)
    _push(c, s, root, "db", bdir, remote, backup_path, overwrite, dry_run, json_)


@_task(name="pull", help=_transfer_help("db", "pull"), iterable=["backup_path"])
@_run
def db_pull(c, remote=None, backup_path=None, dry_run=False, project_root=None, backup_dir=None, json_=False):
    """Copy the remote's database backups that the local backup dir lacks (each checked before it is kept)."""
    s, root, bdir = _db_settings(c, project_root, backup_dir)
    _pull(c, s, root, "db", bdir, remote, backup_path, dry_run, json_)


# --------------------------------------------------------------------- remotes


@_task(help={**_transfer_help("project", "push"),
             "overwrite": "replace a remote copy that differs (another machine's backup of the same name, say)"},
       iterable=["backup_path"])
@_run
def push(c, remote=None, backup_path=None, overwrite=False, dry_run=False, project_root=None, backup_dir=None, json_=False):
    """Upload every local project backup the remote lacks (compared by name, size and SHA-256)."""
    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir})
    root = _root(s)
    _push(c, s, root, "project", _dir(s, "backup", root), remote, backup_path, overwrite, dry_run, json_)


def _push(c, s, root, kind, bdir, remote_name, only, overwrite, dry_run, json_) -> None:
    from backup_lib.remote import push as push_backups
    from backup_lib.store import BackupStore

    with _remote(c, remote_name) as remote:
        result = push_backups(BackupStore(bdir, kind), remote, name=_project_name(s, root), only=only or None, dry_run=dry_run,
                              overwrite=overwrite, progress=None if dry_run else _transfer_progress(f"push {remote.name}"),
                              lock_timeout=s["backup"]["lock_timeout"])
    _run_report().archive(None, size=result.bytes_sent, files=len(result.done))
    if json_:
        _json(result.as_dict())
    else:
        for step in result.steps:
            verb = {"upload": "would upload" if dry_run else "uploaded", "index": "would index" if dry_run else "indexed",
                    "skip": "up to date", "conflict": "CONFLICT"}[step.action]
            _out(f"{verb:12}  {step.archive}  ({step.reason})")
        if not result.steps:
            _out("No backups to push.")
    if not result.ok:
        raise Exit(f"error: {len(result.conflicts)} backups differ on {remote.name} and were left alone "
                   f"(--overwrite replaces them): {', '.join(st.archive for st in result.conflicts)}", code=1)


@_task(help=_transfer_help("project", "pull"), iterable=["backup_path"])
@_run
def pull(c, remote=None, backup_path=None, dry_run=False, project_root=None, backup_dir=None, json_=False):
    """Copy the remote's project backups that the local backup dir lacks (each checked before it is kept)."""
    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir})
    root = _root(s)
    _pull(c, s, root, "project", _dir(s, "backup", root), remote, backup_path, dry_run, json_)


def _pull(c, s, root, kind, bdir, remote_name, only, dry_run, json_) -> None:
    from backup_lib.remote import pull as pull_backups
    from backup_lib.store import BackupStore

    with _remote(c, remote_name) as remote:
        result = pull_backups(BackupStore(bdir, kind), remote, name=_project_name(s, root), only=only or None, dry_run=dry_run,
                              progress=None if dry_run else _transfer_progress(f"pull {remote.name}"),
                              lock_timeout=s["backup"]["lock_timeout"])
    _run_report().archive(None, size=result.bytes_received, files=len(result.done))
    if json_:
        _json(result.as_dict())
    else:
        for step in result.steps:
            verb = {"download": "would pull" if dry_run else "pulled", "skip": "already here"}.get(step.action, "PROBLEM")
            _out(f"{verb:12}  {step.archive}  ({step.reason})")
        if not result.steps:
            _out(f"No backups on {remote.name}.")
    if not result.ok:
        bad = [st for st in result.steps if st.action in ("conflict", "missing")]
        raise Exit(f"error: {len(bad)} backups could not be pulled from {remote.name}: {bad[0].archive}: {bad[0].reason}", code=1)


# ------------------------------------------------------------------ encryption


@_task(help={"output": "where to write the new identity (a file that does not exist yet; kept 0600)",
             "json_": JSON_HELP + ": {recipient, identity_file}"})
@_run
def keygen(c, output=None, json_=False):
    """Write a new age identity and print its recipient (public key, for backup.encrypt_to)."""
    from backup_lib.archive.crypto import keygen as make_identity
    from backup_lib.errors import UsageError

    if not output:
        raise UsageError("--output is required: the file to write the new identity to")
    path = os.path.abspath(os.path.expanduser(output))
    recipient = make_identity(path)
    if json_:
        _json({"recipient": recipient, "identity_file": path})
        sys.stderr.write(f"identity written to {output} (keep it safe, away from the backups); put the recipient in "
                         "backup.encrypt_to\n")
        return
    _out(recipient)
    sys.stderr.write(f"identity written to {output} (keep it safe, away from the backups); put the line above in "
                     "backup.encrypt_to\n")


# ------------------------------------------------------------------ monitoring


@_task(help={"json_": "the report as JSON (fields documented in the README)",
             "prometheus": "also write the facts to FILE in Prometheus' text format (node_exporter's textfile collector)",
             "project_root": ROOT_HELP, "backup_dir": DIR_HELP})
@_run
def status(c, json_=False, prometheus=None, project_root=None, backup_dir=None):
    """Are the backups fresh, complete, verified?  Exit 0 if so, 10-13 if not (see the README)."""
    from backup_lib.status import render_status, write_prometheus

    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir})
    report = _status_report(c, s, _root(s))
    if prometheus:
        write_prometheus(report, prometheus)
    _json(report) if json_ else _out(render_status(report))
    if report["exit_code"]:
        raise Exit(f"status: {report['status']}", code=report["exit_code"])


def _status_report(c, s, root: str) -> dict:
    """The status evaluation (backup.status, and the report page's)."""
    from backup_lib.dbpath import resolve_database
    from backup_lib.history import history_path
    from backup_lib.monitor import gather_status
    from backup_lib.status import expected_kinds, split_kind, thresholds_from_config

    section = {k: v for k, v in s["status"].items() if v is not None}
    thresholds = thresholds_from_config(section)
    db = resolve_database(root, s["db"]["path"], url=s["db"]["url"], skip_dirs=_backup_dirs(c, s, root))
    kinds = expected_kinds(section, has_database=db.usable, pushes={"project": s["backup"]["push"], "db": s["db"]["push"]})
    dirs = {"project": _dir(s, "backup", root), "db": _dir(s, "db", root)}
    unknown = [k for k in kinds if split_kind(k)[0] not in dirs]
    if unknown:
        from backup_lib.errors import UsageError

        raise UsageError(f"status.kinds: {', '.join(unknown)} is not a kind of backup (project, db, or project@REMOTE, db@REMOTE)")
    name = _project_name(s, root)
    listings = {}
    for kind in kinds:
        base, remote_name = split_kind(kind)
        if remote_name:
            _remote(c, remote_name, record=False).close()  # a name not in remotes: is exit 2 now, not a problem row
            listings[kind] = functools.partial(_remote_rows, c, remote_name, name, base)
    return gather_status({k: dirs[k] for k in kinds if k in dirs}, history_path(dirs["project"], s["history"]["path"], root),
                         thresholds=thresholds, project=s["backup"]["name"] or os.path.basename(root), kinds=kinds,
                         remote_listings=listings)


def _remote_rows(c, remote_name: str, project: str, kind: str) -> list[dict]:
    """A remote's backups of this project, as status rows (from the indexes)."""
    from backup_lib.remote import list_remote

    with _remote(c, remote_name, record=False) as remote:
        return list_remote(remote, project, kind)


@_task(name="notify-test", help={"json_": JSON_HELP, "project_root": ROOT_HELP})
@_run
def notify_test_task(c, json_=False, project_root=None):
    """Send a test message to every configured notification URL and say how each went."""
    from backup_lib.errors import UsageError
    from backup_lib.notify import notify_config, notify_test

    s = _settings(c, backup={"--project-root": project_root})
    root = _root(s)
    cfg = notify_config({k: v for k, v in s["notify"].items() if v is not None})
    if not cfg.urls:
        missing = f" ({', '.join(cfg.missing_env)} not set)" if cfg.missing_env else ""
        raise UsageError(f"no notification URLs configured{missing}: set notify.urls or notify.urls_env")
    outcomes = notify_test(cfg.urls, project=s["backup"]["name"] or os.path.basename(root), timeout=cfg.timeout)
    if json_:
        _json([o.as_dict() for o in outcomes])
    else:
        for o in outcomes:
            _out(f"ok      {o.url}" if o.ok else f"FAILED  {o.url}: {o.error}")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise Exit(f"error: {len(failed)} of {len(outcomes)} notification URLs failed", code=1)


# ---------------------------------------------------------------------- drills

DRILL_HELP = {
    "backup_path": "drill this backup (default: the newest of this project)",
    "remote": "drill a backup on this remote (named in remotes:), read from there with its chain; nothing is kept locally",
    "keep": "keep the temporary folder (its path is printed) instead of removing it",
    "identity": IDENTITY_HELP,
    "json_": JSON_HELP,
}


@_task(help={**DRILL_HELP, "command": "the smoke command, run with /bin/sh -c in the restored tree (config drill.command)",
             "timeout": "how long the command may run: 90s, 10m, 1h (default 600 s; config drill.timeout)",
             "project_root": ROOT_HELP, "backup_dir": DIR_HELP})
@_run
def drill(c, backup_path=None, remote=None, command=None, timeout=None, keep=False, identity=None, project_root=None,
          backup_dir=None, json_=False):
    """Restore a backup into a temporary folder with every check, then run the smoke command (drill.command) in it."""
    from backup_lib.drill import drill_project, newest_backup

    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--identity": identity},
                  drill={"--command": command, "--timeout": timeout})
    root = _root(s)
    cfg = s["drill"]

    def run(path, source=None):
        return drill_project(path, root=root, backup_dirs=_backup_dirs(c, s, root), command=cfg["command"],
                             timeout=cfg["timeout"], source_env=cfg["source_env"], env=cfg["env"], work_dir=cfg["work_dir"],
                             keep=keep, identity_file=_identity(s, root), progress=_progress("drill restore"), source=source)

    if remote is not None:
        path, result = _drill_remote(c, s, root, "project", remote, backup_path, run)
    else:
        bdir = _dir(s, "backup", root)
        path = _archive(backup_path, bdir) if backup_path else newest_backup(bdir, "project", _project_name(s, root))
        result = run(path)
    _run_report().archive(path, files=result.files)
    _print_drill(result, json_)


def _drill_remote(c, s, root: str, kind: str, remote_name: str, backup_path, run):
    """A drill of a backup on a remote (the newest there by default), read
    from there as a restore --remote reads it."""
    from backup_lib.drill import newest_listed
    from backup_lib.remote import list_remote

    name = _project_name(s, root)
    with _remote(c, remote_name) as rem:
        archive = backup_path or newest_listed(list_remote(rem, name, kind), kind, f"remote {rem.name}")

        def source() -> dict:
            _label, stream, opener = _remote_source(rem, name, kind, archive)
            return {"stream": stream, "opener": opener}

        label = f"{rem.name}:{os.path.basename(archive)}"
        return label, run(label, source)


@_task(name="drill", help={**DRILL_HELP, "project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP})
@_run
def db_drill_task(c, backup_path=None, remote=None, keep=False, identity=None, project_root=None, backup_dir=None,
                  json_=False):
    """Restore a database backup into a temporary file: integrity_check, row counts, the dump, drill.db_checks."""
    from backup_lib.drill import drill_database, newest_backup

    s, root, bdir = _db_settings(c, project_root, backup_dir, identity=identity)
    cfg = s["drill"]

    def run(path, source=None):
        return drill_database(path, root=root, backup_dirs=_backup_dirs(c, s, root), checks=cfg["db_checks"],
                              timeout=cfg["timeout"], work_dir=cfg["work_dir"], keep=keep, identity_file=_identity(s, root),
                              source=source)

    if remote is not None:
        path, result = _drill_remote(c, s, root, "db", remote, backup_path, run)
    else:
        path = _archive(backup_path, bdir) if backup_path else newest_backup(bdir, "db", _project_name(s, root))
        result = run(path)
    _run_report().archive(path, files=result.files)
    _print_drill(result, json_)


def _print_drill(result, json_: bool) -> None:
    for warning in result.warnings:
        _warn(warning)
    if json_:
        _json(result.as_dict())
    else:
        _out(f"Drill of {_shown(result.backup_path)}")
        for st in result.steps:
            _out(f"  {'ok' if st.ok else 'FAILED':6}  {st.name:15}  {st.seconds:7.2f}s  {st.detail}")
            if not st.ok and st.output:
                for line in st.output.splitlines():
                    _out(f"      | {line}")
        if result.kept:
            _out(f"  kept {_shown(result.work_dir)}" + (" (the restored tree in tree/, the command's output in command.log)"
                                                         if result.kind == "project" else " (the restored database in tree/)"))
        if result.ok:
            _out(f"drill passed in {result.seconds:.1f}s")
    if result.exit_code == 3:
        _incomplete(f"drill: {result.error}")
    if not result.ok:
        raise Exit(f"error: drill failed: {result.error}", code=result.exit_code)


# ------------------------------------------------------------- diff and ls


def _newest_or(s, root: str, bdir: str, backup_path, purpose: str) -> str:
    from backup_lib.drill import newest_backup

    return _archive(backup_path, bdir) if backup_path else newest_backup(bdir, "project", _project_name(s, root), purpose=purpose)


@_task(help={"backup_path": "the backup to compare (default: the newest of this project)",
             "against": "compare with this backup instead of the working tree (A is the older side)",
             "stat": "counts and sizes by top-level folder instead of one line per path",
             "exit_code": "exit 1 when they differ (as git diff --exit-code)",
             "identity": IDENTITY_HELP, "project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def diff(c, backup_path=None, against=None, stat=False, exit_code=False, identity=None, project_root=None, backup_dir=None,
         json_=False):
    """What changed: from a backup to the working tree now (as create would select it), or to another backup."""
    from backup_lib import diff as d

    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--identity": identity})
    cfg = s["backup"]
    root = _root(s)
    bdir = _dir(s, "backup", root)
    identity_file = _identity(s, root)
    a = _newest_or(s, root, bdir, backup_path, "to compare")
    a_manifest, a_meta = d.read_manifest(a, identity_file=identity_file, cache_dir=cfg["cache_dir"])
    if against:
        b = _archive(against, bdir)
        b_manifest, b_meta = d.read_manifest(b, identity_file=identity_file, cache_dir=cfg["cache_dir"])
        result = d.diff_manifests(a_manifest, b_manifest, a_label=a, b_label=b)
        warning = d.warn_other_project(a, a_meta, *d.project_of(b, b_meta), os.path.basename(b))
    else:
        selection = d.worktree_selection(root, backup_dir=bdir, include=cfg["include"], exclude=cfg["exclude"],
                                         default_excludes=cfg["default_excludes"], db_path=s["db"]["path"], db_url=s["db"]["url"],
                                         other_backup_dirs=[*_backup_dirs(c, s, root), *_history_files(s, root)])
        result = d.diff_worktree(a_manifest, selection, started_ns=a_meta.get("started_ns"), a_label=a)
        warning = d.warn_other_project(a, a_meta, _project_name(s, root), root, "the working tree")
    if warning:
        _warn(warning)
    for text in result.warnings:
        _warn(text)
    if json_:
        _json(result.as_dict(with_stat=stat))
    elif stat:
        _out(_render_diff_stat(d.stat_rows(result.changes), result.summary()))
    else:
        for change in result.changes:
            _out(change.line())
        n = result.summary()
        sys.stderr.write(f"{n['added']} added, {n['removed']} removed, {n['changed']} changed "
                         f"(from {_shown(os.path.basename(a))} to {_shown(os.path.basename(b)) if against else 'the working tree'})\n")
    if exit_code and result.differ:
        raise Exit(code=1)


def _render_diff_stat(rows, summary) -> str:
    from backup_lib.report import human_size

    table = [("FOLDER", "ADDED", "REMOVED", "CHANGED", "+BYTES", "-BYTES")]
    for r in rows:
        table.append((_shown(r["folder"] + "/") if r["folder"] else "(top)", str(r["added"]), str(r["removed"]),
                      str(r["changed"]), human_size(r["bytes_added"]) if r["bytes_added"] else "-",
                      human_size(r["bytes_removed"]) if r["bytes_removed"] else "-"))
    added = sum(r["bytes_added"] for r in rows)
    removed = sum(r["bytes_removed"] for r in rows)
    table.append(("total", str(summary["added"]), str(summary["removed"]), str(summary["changed"]),
                  human_size(added) if added else "-", human_size(removed) if removed else "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(col.ljust(w) if i == 0 else col.rjust(w) for i, (col, w) in enumerate(zip(row, widths)))
                     for row in table)


@_task(help={"backup_path": "the backup to list (default: the newest of this project)",
             "path": "list only paths matching this gitignore pattern, and what is below them (repeatable)",
             "identity": IDENTITY_HELP, "project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP},
       iterable=["path"])
@_run
def ls(c, backup_path=None, path=None, identity=None, project_root=None, backup_dir=None, json_=False):
    """List a backup's entries (type and mode, size, time in UTC, path) from its manifest."""
    from backup_lib import diff as d
    from backup_lib.report import human_size

    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--identity": identity})
    root = _root(s)
    archive = _newest_or(s, root, _dir(s, "backup", root), backup_path, "to list")
    manifest, _meta = d.read_manifest(archive, identity_file=_identity(s, root), cache_dir=s["backup"]["cache_dir"])
    entries = d.list_entries(manifest, path or [])
    if json_:  # a record at a time: memory stays flat whatever the backup holds
        _out("[")
        held = None
        for rec in entries:
            if held is not None:
                _out(held + ",")
            held = "  " + json.dumps(d.ls_record(rec), ensure_ascii=False)
        if held is not None:
            _out(held)
        _out("]")
        return
    count = size = 0
    for rec in entries:
        _out(d.ls_line(rec))
        count += 1
        if rec.get("type") == "file" and isinstance(rec.get("size"), int):
            size += rec["size"]
    sys.stderr.write(f"{count} entries, {human_size(size)} in {_shown(os.path.basename(archive))}\n")


# ---------------------------------------------------------------------- report


@_task(help={"output": "the HTML file to write (default: report.html beside the run history, <root>/backups/; "
                       "config report.output)",
             "identity": IDENTITY_HELP + " (for the folder sizes of an encrypted backup)",
             "project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def report(c, output=None, identity=None, project_root=None, backup_dir=None, json_=False):
    """Write one self-contained HTML page: backups, sizes over time, folders, chains, status, drills, runs."""
    from backup_lib.history import history_path
    from backup_lib.report_page import build_context, default_report_path, gather, inside_project, render, write_page

    # --output is taken relative to the current folder (report.output to the root); what create leaves out is
    # the configured or default report, so --output is not a setting here.
    s = _settings(c, backup={"--project-root": project_root, "--backup-dir": backup_dir, "--identity": identity})
    root = _root(s)
    name = _project_name(s, root)
    dirs = {"project": _dir(s, "backup", root), "db": _dir(s, "db", root)}
    history = history_path(dirs["project"], s["history"]["path"], root)
    configured = s["report"]["output"]
    if output:
        target = os.path.abspath(os.path.expanduser(output))
    elif configured:
        target = os.path.abspath(os.path.join(root, configured))
    else:
        target = default_report_path(history)
    status_report = _status_report(c, s, root)
    shown = {k: d for k, d in dirs.items() if k in status_report["kinds"] or k == "project" or os.path.isdir(d)}
    data = gather(project=name, root=root, backup_dirs=shown, history_file=history, status=status_report,
                  identity_file=_identity(s, root), cache_dir=s["backup"]["cache_dir"])
    if output and inside_project(target, root, [*_backup_dirs(c, s, root), *_history_files(s, root)]):
        _warn(f"{_shown(target)} is inside the project: backup.create will back it up unless it is ignored "
              "(report.output, or the default, is left out)")
    write_page(render(build_context(data)), target, make_dir=not (output or configured))
    counts = {k: len(v) for k, v in data["backups"].items()}
    if json_:
        _json({"output": target, "backups": counts, "status": status_report["status"]})
    else:
        _out(f"Wrote {_shown(target)} ({', '.join(f'{n} {k} backups' for k, n in counts.items())}; status {status_report['status']})")



backup = Collection("backup", create, list_, info, restore, verify, cleanup, push, pull, status, notify_test_task, keygen,
                    drill, diff, ls, report)
db = Collection("db", db_backup_task, db_list, db_info, db_verify_task, db_restore_task, db_cleanup, db_push, db_pull,
                db_drill_task)
# No configuration of ours goes into Invoke (ns.configure): the defaults live
# in backup_lib/config.py's schema, so Invoke never casts an INVOKE_* string
# by a default's type.
ns = Collection(backup, db)
for _coll in (backup, db):
    for _name, _t in _coll.tasks.items():
        _TASK_NAMES[_t.body.__wrapped__] = f"{_coll.name}.{_name}"


# ----------------------------------------------------------------- start-up
#
# The invoke command imports this file after it has read /etc/invoke.yaml and
# ~/.invoke.yaml and parsed its own flags, but before it reads the project's
# invoke.yaml and the runtime file (-f, INVOKE_RUNTIME_CONFIG), merges them,
# reads INVOKE_* variables and parses the task's flags.  Each of those steps
# can end in a traceback inside Invoke, before any task runs; the checks
# below run first and turn them into one line and exit 2.


def _preflight() -> None:
    program = _loading_program()
    if program is None:  # imported by Python code (tests, scripts), not by the invoke command
        return
    _check_config_files(program)
    _take_environment()
    _parse_errors_exit_2(program)


def _loading_program():
    """The invoke.Program importing this file: it is on the call stack (Program.load_collection)."""
    from invoke import Program

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Program):
            return candidate
        frame = frame.f_back
    return None


def _check_config_files(program) -> None:
    """Refuse a config file Invoke would fail to read or merge."""
    from invoke.config import Config

    from backup_lib.config import check_invoke_layers

    config = program.config
    layers = [("Invoke's defaults", Config.global_defaults()), ("tasks.py", ns.configuration())]
    for level in ("system", "user"):  # read by Invoke already
        path = getattr(config, f"_{level}_path", None)
        if path:
            layers.append((path, getattr(config, f"_{level}", None)))
    stem = os.path.join(HERE, config.file_prefix or config.prefix)
    project = next((p for p in (f"{stem}.{suffix}" for suffix in ("yaml", "yml", "json", "py")) if os.path.exists(p)), None)
    try:
        runtime = program.args.config.value
    except (AttributeError, KeyError):
        runtime = None
    runtime = runtime or os.environ.get("INVOKE_RUNTIME_CONFIG")
    for path in (project, runtime):
        if path and os.path.exists(os.path.expanduser(path)):
            layers.append((path, _read_config_file(os.path.expanduser(path))))
    problem = check_invoke_layers(layers)
    if problem:
        raise Exit(f"error: {problem}", code=EXIT_USAGE)


def _read_config_file(path: str):
    """A config file's data as Invoke will load it (a .py file is left to Invoke), or Exit(2)."""
    suffix = os.path.splitext(path)[1].lstrip(".")
    if suffix not in ("yaml", "yml", "json", "py"):
        raise Exit(f"error: {path}: Invoke reads config files ending in .yaml, .yml, .json or .py", code=EXIT_USAGE)
    if suffix == "py":
        return None
    try:
        with open(path) as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Exit(f"error: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", code=EXIT_USAGE) from None
    if suffix == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise Exit(f"error: {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", code=EXIT_USAGE) from None
    from invoke.util import yaml  # the parser Invoke itself uses

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise Exit(f"error: {path} is not valid YAML: {problem}{where}", code=EXIT_USAGE) from None


def _take_environment() -> None:
    """Take INVOKE_BACKUP_* / INVOKE_DB_* out of Invoke's sight.

    Invoke casts such a variable by the type of the value a config file gives
    the same key: int("xyz") ends in a traceback, and for a true/false key
    every value but "0" and "" is true.  backup_lib.config parses them
    instead (_environment hands them over).
    """
    from backup_lib.config import env_prefixes

    prefixes = env_prefixes()
    for name in [n for n in os.environ if n.startswith(prefixes)]:
        _ENV_TAKEN[name] = os.environ.pop(name)


def _parse_errors_exit_2(program) -> None:
    """An unknown task or flag is bad usage: exit 2, as the README says (Invoke's own code is 1).

    Invoke also takes its own flags after a task name (-d is its --debug,
    -f its --config, -c its --collection …) and then mostly ignores them: a
    task's old or mistyped short flag would pass in silence.  Refused too.
    """
    parse_tasks = program.parse_tasks

    def parse_tasks_or_exit_2():
        try:
            parse_tasks()
        except ParseError as exc:
            # Invoke's own flag that takes a value, last after a task (`backup.restore -b x -f`): Invoke says
            # "Flag <Argument: config (f)> needed value and was not given one!".  Name it as a flag of invoke.
            flag = _flag_without_value(program, exc)
            if flag is not None:
                raise Exit(_core_flag_line(flag, getattr(exc.context, "name", None), program.argv), code=EXIT_USAGE) from None
            own = _flag_without_value(program, exc, getattr(exc.context, "args", None) or {})
            if own is not None:  # the task's own flag, last on the line: `backup.restore -b`
                raise Exit(f"error: {_flag_names(own)} needs a value (invoke --help {exc.context.name} lists the task's flags)",
                           code=EXIT_USAGE) from None
            raise Exit(f"error: {exc}", code=EXIT_USAGE) from None
        for arg in program.core_via_tasks.args.values():
            if arg.got_value and arg.name != "help":
                raise Exit(_core_flag_line(arg, program.tasks[0].name if program.tasks else None, program.argv),
                           code=EXIT_USAGE)

    program.parse_tasks = parse_tasks_or_exit_2


# What an old short flag that is now Invoke's own meant in a task (README "Short flags": -f was --force in
# backup.restore and --from-sql in db.restore; both are now without -f).
_OLD_SHORT_MEANT = {
    ("f", "backup.restore"): "--force (-F)",
    ("f", "db.restore"): "--from-sql or --force (-F)",
}


def _flag_without_value(program, exc, args=None):
    """The Argument of ``args`` (default: Invoke's own, the core flags) that a
    ParseError says got no value, else None."""
    import re

    m = re.match(r"Flag <Argument: ([\w-]+)", str(exc))
    if not m or "needed value" not in str(exc):
        return None
    if args is None:
        args = program.core[0].args if getattr(program, "core", None) else {}
    return next((a for a in args.values() if a.name == m.group(1)), None)


def _flag_names(arg) -> str:
    return "/".join(("-" if len(n) == 1 else "--") + n for n in sorted(arg.names, key=len))


def _core_flag_line(arg, task_name: str | None, argv) -> str:
    """One line: Invoke's flag ``arg`` came after the task; an old short flag of that task, what it is now."""
    names = _flag_names(arg)
    meant = next((m for (short, task_), m in _OLD_SHORT_MEANT.items()
                  if short in arg.names and task_ == task_name and f"-{short}" in (argv or ())), None)
    hint = f"; {task_name}'s {meant} is probably what you meant" if meant else ""
    return (f"error: {names} is not a flag of the task but of invoke itself, and goes before the task name"
            f"{hint} (invoke --help TASK lists the task's flags)")


_preflight()
