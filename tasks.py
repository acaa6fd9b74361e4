"""Invoke tasks: `invoke --list`, `invoke --help backup.create`.

Thin by design: each task reads its configuration and flags, calls one
backup_lib function, prints the result (human or --json) and turns the
library's errors into exit codes at one boundary (`_run`).  Defaults live in
`ns.configure` and can be overridden in invoke.yaml or INVOKE_BACKUP_* /
INVOKE_DB_* variables.
"""

from __future__ import annotations

import functools
import os
import sys

from invoke import Collection, Exit, task

HERE = os.path.dirname(os.path.abspath(__file__))

ROOT_HELP = "project folder to back up (default: the folder holding tasks.py; config backup.project_root)"
DIR_HELP = "where backups are kept (default: <root>/backups/project; config backup.backup_dir)"
DB_DIR_HELP = "where database backups are kept (default: <root>/backups/db; config db.backup_dir)"
JSON_HELP = "machine-readable output on stdout"


def _run(fn):
    """The one boundary where library errors become one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        from backup_lib.errors import BackupError

        try:
            return fn(c, *args, **kwargs)
        except Exit:
            raise
        except BackupError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("error: interrupted", code=130) from None
        except Exception as exc:  # a bug: still one line, never a traceback
            raise Exit(f"error: unexpected {type(exc).__name__}: {exc} (please report this)", code=1) from None

    return wrapper


def _conf(c, section: str, key: str, value=None):
    """A flag's value when given, else its configuration default."""
    if value not in (None, [], ""):
        return value
    return c.config.get(section, {}).get(key)


def _root(c, project_root) -> str:
    return os.path.abspath(_conf(c, "backup", "project_root", project_root) or HERE)


def _dir(c, section: str, root: str, backup_dir) -> str:
    from backup_lib.store import default_backup_dir

    value = _conf(c, section, "backup_dir", backup_dir)
    kind = "project" if section == "backup" else "db"
    return os.path.abspath(os.path.join(root, value) if value else default_backup_dir(root, kind))


def _list(c, section: str, key: str, flag_values) -> list[str]:
    configured = c.config.get(section, {}).get(key) or []
    if isinstance(configured, str):
        configured = [configured]
    return [*configured, *(flag_values or [])]


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


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


@task(
    help={
        "project_root": ROOT_HELP,
        "backup_dir": DIR_HELP,
        "no_compress": "write a plain .tar (same as --compression none)",
        "compression": "gz (default), zst or none (config backup.compression)",
        "exclude": "also leave out paths matching this gitignore pattern (repeatable; config backup.exclude)",
        "include": "keep paths that ignore rules drop, e.g. .env (repeatable; config backup.include)",
        "no_default_excludes": "do not leave out .venv, node_modules, *.pyc, the database … (git's rules still apply)",
        "dry_run": "write nothing; list exactly the files the archive would hold",
        "json_": JSON_HELP,
    },
    iterable=["exclude", "include"],
)
@_run
def create(c, project_root=None, backup_dir=None, no_compress=False, compression=None, exclude=None, include=None,
           no_default_excludes=False, dry_run=False, json_=False):
    """Back up the project tree as git sees it, into one standard archive."""
    from backup_lib.project import create_backup, normalize_compression
    from backup_lib.report import human_size

    root = _root(c, project_root)
    cfg = c.config.get("backup", {})
    result = create_backup(
        root,
        backup_dir=_dir(c, "backup", root, backup_dir),
        name=cfg.get("name"),
        compression=normalize_compression(_conf(c, "backup", "compression", compression), no_compress=no_compress),
        include=_list(c, "backup", "include", include),
        exclude=_list(c, "backup", "exclude", exclude),
        default_excludes=bool(cfg.get("default_excludes", True)) and not no_default_excludes,
        db_path=c.config.get("db", {}).get("path"),
        other_backup_dirs=[_dir(c, "db", root, None)],
        environment=cfg.get("environment"),
        dry_run=dry_run,
        lock_timeout=float(cfg.get("lock_timeout", 10)),
        progress=None if dry_run else _progress("backup"),
    )
    meta = result.metadata
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
    if json_:
        _json({**meta, "backup_path": result.backup_path, "work_folders": list(result.work_folders)})
    else:
        size = os.path.getsize(result.backup_path)
        _out(f"Created {_shown(result.backup_path)}\n  {meta['total_files']} files, {human_size(meta['total_size'])} "
             f"({human_size(size)} as {meta['compression']}), project_hash {meta['project_hash'][:16]}")
    if result.incomplete:
        _incomplete(f"{len(meta['skipped_files'])} files could not be read and are not in the backup")


@task(name="list", help={"project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def list_(c, project_root=None, backup_dir=None, json_=False):
    """List project backups, newest first (reads the small index beside each archive)."""
    from backup_lib.project import list_backups
    from backup_lib.report import render_list

    root = _root(c, project_root)
    rows = [b.summary() for b in list_backups(_dir(c, "backup", root, backup_dir))]
    _json(rows) if json_ else _out(render_list(rows))


@task(help={"backup_path": "the archive (a path, or a name inside the backup dir)", "project_root": ROOT_HELP,
            "backup_dir": DIR_HELP, "json_": "print the raw metadata JSON"})
@_run
def info(c, backup_path=None, project_root=None, backup_dir=None, json_=False):
    """Show a backup's metadata."""
    from backup_lib.project import backup_info, resolve_backup_path
    from backup_lib.report import render_metadata

    root = _root(c, project_root)
    path = resolve_backup_path(backup_path, _dir(c, "backup", root, backup_dir))
    meta = backup_info(path)
    _json(meta) if json_ else _out(f"backup_path: {path}\n{render_metadata(meta)}")


@task(
    help={
        "backup_path": "the archive (a path, or a name inside the backup dir)",
        "target_path": "where to restore (default ./restored_project; config backup.restore_target)",
        "force": "restore into a non-empty target, replacing files the backup holds",
        "dry_run": "write nothing; list what would be written and what already exists there",
        "include": "restore only paths matching this gitignore pattern (repeatable)",
        "allow_outside_links": "recreate symlinks that point outside the target (never written through)",
        "project_root": ROOT_HELP,
        "backup_dir": DIR_HELP,
        "json_": JSON_HELP,
    },
    iterable=["include"],
)
@_run
def restore(c, backup_path=None, target_path=None, force=False, dry_run=False, include=None,
            allow_outside_links=False, project_root=None, backup_dir=None, json_=False):
    """Verify a backup and restore it into an empty (or --force'd) directory."""
    from backup_lib.project import resolve_backup_path, restore_backup

    root = _root(c, project_root)
    path = resolve_backup_path(backup_path, _dir(c, "backup", root, backup_dir))
    target = _conf(c, "backup", "restore_target", target_path) or "restored_project"
    result = restore_backup(path, target, force=force, dry_run=dry_run, include=include or [],
                            allow_outside_links=allow_outside_links, progress=None if dry_run else _progress("restore"))
    _print_restore(result, json_)


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


@task(help={"backup_path": "verify this archive only (default: every backup in the backup dir)",
            "project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def verify(c, backup_path=None, project_root=None, backup_dir=None, json_=False):
    """Check archives end to end: structure, every member's SHA-256, project_hash."""
    from backup_lib.project import resolve_backup_path, verify_backups

    root = _root(c, project_root)
    bdir = _dir(c, "backup", root, backup_dir)
    paths = [resolve_backup_path(backup_path, bdir)] if backup_path else []
    _print_verify(verify_backups(bdir, paths, kind="project"), json_)


def _print_verify(reports, json_):
    from backup_lib.errors import EXIT_INTEGRITY

    from backup_lib.report import render_verify

    if json_:
        _json([r.as_dict() for r in reports])
    else:
        _out(render_verify(reports))
    failed = [r for r in reports if not r.ok]
    if failed:
        raise Exit(f"error: {len(failed)} of {len(reports)} backups failed verification: "
                   + ", ".join(os.path.basename(r.backup_path) for r in failed), code=EXIT_INTEGRITY)


@task(help={"retention_days": "delete backups older than this many days (default 30; config backup.retention_days)",
            "max_backups": "keep at most this many backups (default 5; config backup.max_backups)",
            "dry_run": "delete nothing; say what would be deleted",
            "project_root": ROOT_HELP, "backup_dir": DIR_HELP, "json_": JSON_HELP})
@_run
def cleanup(c, retention_days=None, max_backups=None, dry_run=False, project_root=None, backup_dir=None, json_=False):
    """Delete old backups by age and count; the newest is always kept."""
    from backup_lib.project import cleanup_backups

    root = _root(c, project_root)
    cfg = c.config.get("backup", {})
    result = cleanup_backups(
        _dir(c, "backup", root, backup_dir),
        kind="project",
        name=cfg.get("name") or os.path.basename(root),
        retention_days=_conf(c, "backup", "retention_days", retention_days),
        max_backups=_conf(c, "backup", "max_backups", max_backups),
        dry_run=dry_run,
        lock_timeout=float(cfg.get("lock_timeout", 10)),
    )
    _print_cleanup(result, json_)


def _print_cleanup(result, json_):
    if json_:
        _json({"dry_run": result.dry_run, "deleted": list(result.deleted),
               "would_delete": [d.key for d in result.decisions if d.delete] if result.dry_run else [],
               "kept": [d.key for d in result.decisions if not d.delete], "not_backups": list(result.not_backups)})
        return
    for d in result.decisions:
        verb = ("would delete" if result.dry_run else "deleted") if d.delete else "keep"
        _out(f"{verb:12}  {_shown(os.path.basename(d.key))}  ({d.reason})")
    for p in result.not_backups:
        _warn(f"left alone {_shown(os.path.basename(p))}: not readable as a backup")
    if not result.decisions:
        _out("No backups to clean up.")


# ----------------------------------------------------------------------- db

DB_PATH_HELP = "the SQLite file (default: config db.path, DATABASE_URL / SQLALCHEMY_DATABASE_URI, or the one *.db under the root)"


def _db_common(c, project_root, backup_dir):
    root = _root(c, project_root)
    return root, _dir(c, "db", root, backup_dir)


@task(name="backup", help={"db_path": DB_PATH_HELP, "no_sql_dump": "leave the SQL dump out (snapshot only)",
                           "no_compress": "write a plain .tar", "compression": "gz (default), zst or none (config db.compression)",
                           "project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_backup_task(c, db_path=None, no_sql_dump=False, no_compress=False, compression=None, project_root=None, backup_dir=None, json_=False):
    """Snapshot the live SQLite database consistently, check it, and archive it with an SQL dump."""
    from backup_lib.database import db_backup
    from backup_lib.project import normalize_compression
    from backup_lib.report import human_size

    root, bdir = _db_common(c, project_root, backup_dir)
    cfg = c.config.get("db", {})
    result = db_backup(
        root,
        db_path=_conf(c, "db", "path", db_path),
        backup_dir=bdir,
        skip_dirs=[_dir(c, "backup", root, None)],
        name=c.config.get("backup", {}).get("name"),
        compression=normalize_compression(_conf(c, "db", "compression", compression), no_compress=no_compress),
        sql_dump=bool(cfg.get("sql_dump", True)) and not no_sql_dump,
        environment=c.config.get("backup", {}).get("environment"),
        lock_timeout=float(c.config.get("backup", {}).get("lock_timeout", 10)),
        busy_timeout=float(cfg.get("busy_timeout", 5)),
        progress=_progress("db backup"),
    )
    meta = result.metadata
    if json_:
        _json({**meta, "backup_path": result.backup_path})
    else:
        rows = sum(meta["tables"].values())
        _out(f"Created {result.backup_path}\n  {meta['source_path']}: {len(meta['tables'])} tables, {rows} rows, "
             f"{human_size(meta['size'])}, integrity ok" + (f", dump {meta['sql_dump']}" if meta["sql_dump"] else ""))


@task(name="list", help={"project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_list(c, project_root=None, backup_dir=None, json_=False):
    """List database backups, newest first."""
    from backup_lib.project import list_backups
    from backup_lib.report import render_list

    _root_, bdir = _db_common(c, project_root, backup_dir)
    rows = [b.summary() for b in list_backups(bdir, kind="db")]
    _json(rows) if json_ else _out(render_list(rows))


@task(name="info", help={"backup_path": "the archive (a path, or a name inside the backup dir)", "project_root": ROOT_HELP,
                         "backup_dir": DB_DIR_HELP, "json_": "print the raw metadata JSON"})
@_run
def db_info(c, backup_path=None, project_root=None, backup_dir=None, json_=False):
    """Show a database backup's metadata."""
    from backup_lib.project import backup_info, resolve_backup_path
    from backup_lib.report import render_metadata

    _root_, bdir = _db_common(c, project_root, backup_dir)
    path = resolve_backup_path(backup_path, bdir)
    meta = backup_info(path)
    _json(meta) if json_ else _out(f"backup_path: {path}\n{render_metadata(meta)}")


@task(name="verify", help={"backup_path": "verify this archive only (default: every database backup)", "project_root": ROOT_HELP,
                           "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_verify_task(c, backup_path=None, project_root=None, backup_dir=None, json_=False):
    """Check database backups: hashes, integrity_check, row counts, and that the dump loads."""
    from backup_lib.database import db_verify
    from backup_lib.project import resolve_backup_path

    _root_, bdir = _db_common(c, project_root, backup_dir)
    paths = [resolve_backup_path(backup_path, bdir)] if backup_path else []
    _print_verify(db_verify(bdir, paths), json_)


@task(name="restore", help={"backup_path": "the archive to restore", "db_path": DB_PATH_HELP,
                            "from_sql": "rebuild from the SQL dump instead of the snapshot",
                            "force": "restore even while another connection holds a write transaction (never skips verification)",
                            "project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_restore_task(c, backup_path=None, db_path=None, from_sql=False, force=False, project_root=None, backup_dir=None, json_=False):
    """Verify a database backup, take a safety backup, and swap the restored file into place."""
    from backup_lib.database import db_restore
    from backup_lib.project import resolve_backup_path

    root, bdir = _db_common(c, project_root, backup_dir)
    path = resolve_backup_path(backup_path, bdir)
    cfg = c.config.get("db", {})
    result = db_restore(path, root=root, db_path=_conf(c, "db", "path", db_path), backup_dir=bdir,
                        skip_dirs=[_dir(c, "backup", root, None)], name=c.config.get("backup", {}).get("name"),
                        from_sql=from_sql, force=force, busy_timeout=float(cfg.get("restore_lock_wait", 2)))
    _print_work_folders(result.work_folders)
    if json_:
        _json({"db_path": result.db_path, "backup_path": result.backup_path, "safety_backup": result.safety_backup,
               "from_sql": result.from_sql, "tables": result.tables, "work_folders": list(result.work_folders)})
    else:
        _out(f"Restored {result.db_path} from {result.backup_path}" + (" (rebuilt from the SQL dump)" if result.from_sql else ""))
        _out(f"  safety backup of the previous database: {result.safety_backup}" if result.safety_backup else "  (there was no database before)")
        _out("  restart the application so that no connection keeps the old file open")


@task(name="cleanup", help={"retention_days": "delete backups older than this many days (default 30; config db.retention_days)",
                            "max_backups": "keep at most this many backups (default 5; config db.max_backups)",
                            "dry_run": "delete nothing; say what would be deleted",
                            "project_root": ROOT_HELP, "backup_dir": DB_DIR_HELP, "json_": JSON_HELP})
@_run
def db_cleanup(c, retention_days=None, max_backups=None, dry_run=False, project_root=None, backup_dir=None, json_=False):
    """Delete old database backups (safety backups count); the newest is always kept."""
    from backup_lib.project import cleanup_backups

    root, bdir = _db_common(c, project_root, backup_dir)
    result = cleanup_backups(
        bdir,
        kind="db",
        name=c.config.get("backup", {}).get("name") or os.path.basename(root),
        retention_days=_conf(c, "db", "retention_days", retention_days),
        max_backups=_conf(c, "db", "max_backups", max_backups),
        dry_run=dry_run,
        lock_timeout=float(c.config.get("backup", {}).get("lock_timeout", 10)),
    )
    _print_cleanup(result, json_)


backup = Collection("backup", create, list_, info, restore, verify, cleanup)
backup.configure({
    "backup": {
        "project_root": None,
        "backup_dir": None,
        "name": None,
        "compression": "gz",
        "include": [],
        "exclude": [],
        "default_excludes": True,
        "retention_days": 30,
        "max_backups": 5,
        "lock_timeout": 10,
        "environment": None,
        "restore_target": None,
    },
})

db = Collection("db", db_backup_task, db_list, db_info, db_verify_task, db_restore_task, db_cleanup)
db.configure({
    "db": {
        "path": None,
        "backup_dir": None,
        "compression": "gz",
        "sql_dump": True,
        "retention_days": 30,
        "max_backups": 5,
        "busy_timeout": 5,
        "restore_lock_wait": 2,
    },
})

ns = Collection(backup, db)
ns.configure(backup.configuration())
ns.configure(db.configuration())
