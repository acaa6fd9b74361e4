"""Database backups: db.backup / list / info / verify / restore / cleanup.

Two engines, one set of tasks: the database is resolved once
(:func:`find_database`, :mod:`backup_lib.dbpath`), and a PostgreSQL URL goes
to :mod:`backup_lib.postgres` (imported only then).  A SQLite archive holds
the snapshot file, its SQL dump (unless turned off) and the manifest and
metadata every backup of this toolkit has; a PostgreSQL archive the custom
and the SQL dump (``"engine": "postgresql"`` in its metadata).  Verify and
restore go by the archive's engine and the database's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import archive as _archive
from . import sqlite as _sq
from .dbpath import HOW_TO_SET, Database, resolve_database, side_files
from .errors import BackupError, DatabaseError, IntegrityError, NotFoundError, UsageError
from .extract import scan_archive
from .metadata import common_metadata, database_archive_facts, now_utc, shown_path
from .project import VerifyReport
from .selection import Entry, tree_key
from .store import BackupStore, default_backup_dir, fsync_dir
from .workdir import WorkDir, create_work_dir, sweep

__all__ = ["DbBackupResult", "DbRestoreResult", "find_database", "locate_database", "db_backup", "db_verify", "db_restore"]


@dataclass(frozen=True)
class DbBackupResult:
    backup_path: str
    metadata: dict
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DbRestoreResult:
    db_path: str
    backup_path: str
    safety_backup: str | None
    from_sql: bool
    tables: dict
    open_by: tuple[tuple[int, str], ...] = ()  # (pid, command) of processes that had the old file open
    forced_while_busy: bool = False  # --force over a connection's write transaction: its commit is lost
    work_folders: tuple[dict, ...] = ()  # leftovers of killed runs beside the database


def find_database(root: str, db_path: str | None = None, db_url: str | None = None, *, skip_dirs=()) -> Database:
    """The database the db tasks work on: a SQLite file or a PostgreSQL URL.

    The same resolution as a project backup's (:func:`resolve_database`);
    what it cannot name (nothing found, several files, a URL of another
    engine or an in-memory database) is a :class:`DatabaseError`, never a
    reason to take some other file; ``db_path`` and ``db_url`` together are
    a :class:`UsageError`."""
    db = resolve_database(root, db_path, url=db_url, skip_dirs=skip_dirs)
    if db.problem:
        raise DatabaseError(db.problem)
    return db


def locate_database(root: str, db_path: str | None = None, *, db_url: str | None = None, skip_dirs=(),
                    must_exist: bool = True) -> tuple[str, str]:
    """(path, how it was found) of the SQLite file the database tasks work
    on; a PostgreSQL database is a :class:`DatabaseError` here (the SQLite
    engine's entry point)."""
    return _sqlite_path(find_database(root, db_path, db_url, skip_dirs=skip_dirs), must_exist)


def _sqlite_path(db: Database, must_exist: bool = True) -> tuple[str, str]:
    if db.engine != "sqlite" or db.path is None:
        raise DatabaseError(f"{db.how} names a {db.engine} database, not a SQLite file")
    if must_exist or os.path.exists(db.path):
        _sq.check_sqlite_file(db.path, f" (from {db.how}; {HOW_TO_SET})")
    return db.path, db.how


def _pg_target(db: Database):
    """The parsed URL; a malformed one is a usage error naming where it was set (never quoting it)."""
    from .postgres import parse_url

    try:
        return parse_url(db.url)
    except UsageError as exc:
        raise UsageError(f"{db.how}: {exc}") from None


def _refuse_pg_only(db: Database, given) -> None:
    """Options that only apply to PostgreSQL, given for a SQLite database (exit 2)."""
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(f"{' and '.join(given)} only {verb} to PostgreSQL databases; the database here is the SQLite "
                         f"file {db.path} (from {db.how})")


def db_backup(
    root: str,
    *,
    db_path: str | None = None,
    db_url: str | None = None,
    backup_dir: str | None = None,
    skip_dirs=(),
    name: str | None = None,
    compression: str = "gz",
    sql_dump: bool = True,
    environment: str | None = None,
    lock_timeout: float = 10.0,
    busy_timeout: float = 5.0,
    progress=None,
    safety_for: str | None = None,
    encrypt_to=(),
    schemas=(),
    exclude_tables=(),
    pg_bin_dir: str | None = None,
    pg_only=(),
) -> DbBackupResult:
    """Snapshot the database and archive it.  With ``encrypt_to`` the
    archive is encrypted (age) as it is written; the snapshot itself is made
    in a private folder beside the backups (0700) and removed at once: it is
    the same data as the live file, on the same machine.

    A PostgreSQL database (``db_url``, or a URL variable) is dumped by
    :func:`backup_lib.postgres.pg_backup` with ``schemas``,
    ``exclude_tables`` and the tools from ``pg_bin_dir``; for a SQLite file
    those are ignored, except that ``pg_only`` (the names of such options
    given explicitly, e.g. ``["--schema"]``) is a usage error."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise NotFoundError(f"project root {root} does not exist or is not a directory")
    backup_dir = os.path.abspath(backup_dir or default_backup_dir(root, "db"))
    db = find_database(root, db_path, db_url, skip_dirs=[backup_dir, *skip_dirs])
    if db.engine == "postgresql":
        from .postgres import pg_backup

        res = pg_backup(root, url=_pg_target(db), found_by=db.how, backup_dir=backup_dir, name=name, compression=compression,
                        sql_dump=sql_dump, schemas=list(schemas), exclude_tables=list(exclude_tables), environment=environment,
                        lock_timeout=lock_timeout, pg_bin_dir=pg_bin_dir, progress=progress, safety_for=safety_for,
                        encrypt_to=encrypt_to)
        meta = res.metadata
        return DbBackupResult(res.backup_path, meta, tuple(pg_backup_warnings(meta)))
    _refuse_pg_only(db, pg_only)
    path, how = _sqlite_path(db)
    name = name or os.path.basename(root) or "project"
    compression_name = _archive.COMPRESSIONS[compression][1]
    store = BackupStore(backup_dir, "db")
    store.ensure()
    with store.lock(lock_timeout):
        store.remove_leftovers()
        now = now_utc()
        work = store.temp_dir(f"{name}_db")
        try:
            base = os.path.basename(path)
            snap = os.path.join(work, base)
            info = _sq.snapshot(path, snap, timeout=busy_timeout)
            names = [base]
            dump_name = None
            # integrity_check reads the snapshot on its own connection while
            # the dump is written (sqlite3 lets go of the GIL).
            with ThreadPoolExecutor(max_workers=1) as pool:
                checking = pool.submit(_sq.integrity_check, snap)
                tables = _sq.table_counts(snap)
                facts = _sq.database_facts(snap)
                if sql_dump:
                    dump_name = os.path.splitext(base)[0] + ".sql"
                    if dump_name == base:
                        dump_name = base + ".sql"
                    _sq.write_dump(snap, os.path.join(work, dump_name))
                    names.append(dump_name)
                check = checking.result()
            if check != "ok":
                raise DatabaseError(f"the snapshot of {path} fails integrity_check ({check}): no backup was kept")
            entries = sorted((Entry.from_stat(n, "file", os.lstat(os.path.join(work, n))) for n in names), key=lambda e: tree_key(os.fsencode(e.path)))

            def metadata_for(rep, writer) -> dict:
                by_path = rep.records
                meta = common_metadata(backup_type="database", root=root, compression=compression_name, environment=environment, now=now)
                meta.update(
                    {
                        "source_path": shown_path(root, path),
                        "found_by": how,
                        "database_file": base,
                        "sql_dump": dump_name,
                        "sqlite_version": facts["sqlite_version"],
                        "page_size": facts["page_size"],
                        "journal_mode": info["journal_mode"],
                        "user_version": facts["user_version"],
                        "size": by_path[base]["size"],
                        "sha256": by_path[base]["sha256"],
                        "integrity_check": check,
                        "tables": tables,
                        **database_archive_facts(rep, writer, safety_for),
                    }
                )
                return meta

            final, metadata = store.write_archive(
                name=name, compression=compression, root=work, entries=entries, metadata_for=metadata_for, now=now, progress=progress,
                keep_records=True, encrypt_to=list(encrypt_to) or None,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return DbBackupResult(final, metadata, tuple(backup_warnings(path, metadata)))


def backup_warnings(path: str, metadata: dict) -> list[str]:
    """What a user should look at in a database backup that succeeded."""
    if metadata.get("tables"):
        return []
    if _source_was_empty(path):
        return [f"database {path} is an empty file (0 bytes): the backup holds no tables; is it the application's database? ({HOW_TO_SET})"]
    return [f"database {path} has no tables: the backup holds none; is it the application's database? ({HOW_TO_SET})"]


def pg_backup_warnings(metadata: dict) -> list[str]:
    """A PostgreSQL backup that holds no table data: the wrong database, or a --schema that matches nothing?"""
    if metadata.get("tables"):
        return []
    narrowed = " with the --schema / --exclude-table given" if metadata.get("schemas") or metadata.get("exclude_tables") else ""
    return [f"PostgreSQL database {metadata.get('database')} has no tables{narrowed}: the backup holds none; "
            f"is it the application's database? (config db.url or DATABASE_URL)"]


def _source_was_empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def _check_extracted(res, work: str) -> list[str]:
    """Database-level checks on an extracted, hash-verified backup."""
    meta = res.metadata or {}
    errors = list(res.errors)
    if meta.get("backup_type") != "database":
        return errors + [f"not a database backup (backup_type {meta.get('backup_type')!r})"]
    if errors:
        return errors
    if meta.get("engine") not in (None, "sqlite"):
        return [f"not a SQLite backup (engine {meta.get('engine')!r})"]
    # The files the metadata names are regular members at the archive's top
    # (member names were checked when read: never absolute, never ".."): a
    # restore moves the snapshot over the live database, and
    # "/elsewhere/x.db" would name another file.  Being a member, the
    # snapshot has a SHA-256 to compare with the metadata's (a missing one
    # no longer matches a missing member's).
    for field_name in ("database_file", "sql_dump"):
        name = meta.get(field_name)
        if field_name == "sql_dump" and not name:
            continue
        if not (isinstance(name, str) and "/" not in name and res.actual.get(name, ("",))[0] == "file"):
            return [f"the metadata's {field_name} {name!r} is not a file of this archive"]
    snap = os.path.join(work, meta["database_file"])
    if not os.path.isfile(snap) or os.path.islink(snap):
        return [f"the snapshot {meta.get('database_file')!r} is missing from the archive"]
    if res.sha256_of(meta["database_file"]) != meta.get("sha256"):
        errors.append("the snapshot's SHA-256 does not match the metadata")
    check = _sq.integrity_check(snap)
    if check != "ok":
        errors.append(f"integrity_check on the snapshot: {check}")
        return errors
    counts = _sq.table_counts(snap)
    if counts != meta.get("tables"):
        errors.append(f"row counts {counts} differ from the metadata's {meta.get('tables')}")
    dump = meta.get("sql_dump")
    if dump:
        sql = os.path.join(work, dump)
        loaded = os.path.join(work, ".dump-check.db")
        try:
            _sq.load_dump(sql, loaded)
            if _sq.table_counts(loaded) != counts:
                errors.append("the SQL dump loads, but with other row counts than the snapshot")
        except DatabaseError as exc:
            errors.append(str(exc))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(loaded)
    return errors


def _extract_and_check(archive: str, work: str, identity_file: str | None = None, stream=None) -> tuple[dict, list[str], bool]:
    """(metadata, problems, whether the archive itself is sound: every hash and seal)."""
    try:
        res = scan_archive(archive, dest=work, identity_file=identity_file, stream=stream)
    except IntegrityError as exc:
        return {}, [str(exc)], False
    return res.metadata or {}, _check_extracted(res, work), not res.errors


def check_database_stream(label: str, stream, identity_file: str | None = None) -> list[str]:
    """A database backup read as a stream (a remote object): extracted into a
    private folder, checked as db.verify checks it, and removed."""
    wd = _work_dir(tempfile.gettempdir(), "db")
    try:
        try:
            res = scan_archive(label, dest=wd.tree, identity_file=identity_file, stream=stream)
        except IntegrityError as exc:
            return [str(exc)]
        return _check_extracted(res, wd.tree)
    finally:
        wd.remove()


def _work_dir(near: str, label: str) -> WorkDir:
    parent = near if os.path.isdir(near) and os.access(near, os.W_OK) else tempfile.gettempdir()
    return create_work_dir(label, "verify", parent=parent)


def archive_engine(path: str, identity_file: str | None = None) -> str | None:
    """"postgresql" or "sqlite" as the archive's metadata says (its index
    when fresh, else the archive; unverified: it only chooses the checks),
    None when it cannot be read."""
    from .store import read_metadata

    for identity in (None, identity_file) if identity_file else (None,):
        try:
            meta = read_metadata(path, identity)
        except BackupError:
            continue
        if isinstance(meta, dict):
            engine = meta.get("engine")
            return engine if isinstance(engine, str) else "sqlite"
    return None


def db_verify(backup_dir: str, paths=(), *, identity_file: str | None = None, pg_bin_dir: str | None = None,
              progress=None) -> list[VerifyReport]:
    """Verify database backups of either engine: each by its metadata's
    engine (a PostgreSQL one needs pg_restore, no server).  The PostgreSQL
    tools are looked for before anything is verified: missing or too old
    ones fail the run (exit 1), not the backups."""
    from .archive.crypto import is_encrypted
    from .project import verify_ciphertext

    if not paths:
        paths = [bf.path for bf in BackupStore(backup_dir, "db").backups()]
        if not paths:
            raise NotFoundError(f"no database backups to verify in {backup_dir}")
    plan = []
    for path in paths:
        if not os.path.exists(path):
            plan.append((path, "missing"))
        elif identity_file is None and is_encrypted(path):
            plan.append((path, "ciphertext"))
        else:
            plan.append((path, archive_engine(path, identity_file) or "sqlite"))
    tools = None
    if any(how == "postgresql" for _p, how in plan):
        from .postgres import find_tools

        tools = find_tools(pg_bin_dir, need=("pg_restore",))
    reports = []
    for path, how in plan:
        if how == "missing":
            reports.append(VerifyReport(path, False, (f"{path} does not exist",)))
        elif how == "ciphertext":
            reports.append(verify_ciphertext(path))
        elif how == "postgresql":
            from .postgres import verify_backup

            reports.append(verify_backup(path, tools=tools, identity_file=identity_file, progress=progress))
        else:
            reports.append(_verify_sqlite(path, identity_file))
    return reports


def _verify_sqlite(path: str, identity_file: str | None) -> VerifyReport:
    wd = _work_dir(os.path.dirname(os.path.abspath(path)), "db")
    try:
        meta, errors, _sound = _extract_and_check(path, wd.tree, identity_file)
    finally:
        wd.remove()
    return VerifyReport(path, not errors, tuple(errors), meta)


def _writer_busy(db: str, timeout: float) -> bool:
    """True when another connection holds a write transaction (or lock) on db."""
    try:
        conn = sqlite3.connect(db, timeout=timeout)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {db}: {exc}") from None
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return False
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return True
        raise DatabaseError(f"cannot lock database {db}: {exc}") from None
    finally:
        conn.close()


def processes_holding(paths, proc: str = "/proc") -> list[tuple[int, str]]:
    """(pid, command) of the other processes that have one of ``paths`` open,
    from ``/proc/*/fd`` (Linux); what cannot be read is skipped, and where
    there is no ``/proc`` the answer is empty."""
    wanted = {os.path.realpath(p) for p in paths}
    try:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except OSError:
        return []
    me = os.getpid()
    found = []
    for pid in pids:
        if pid == me:
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in wanted:
                found.append((pid, _command_of(proc, pid)))
                break
    return found


def _command_of(proc: str, pid: int) -> str:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as fh:
            words = fh.read(4096).split(b"\0")
        text = " ".join(os.fsdecode(w) for w in words if w)
        if not text:
            with open(f"{proc}/{pid}/comm", "rb") as fh:
                text = os.fsdecode(fh.read().strip())
    except OSError:
        return "?"
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 80 else text[:79] + "…"


def _held_by(holders) -> str:
    if not holders:
        return ""
    return " (open in " + ", ".join(f"pid {pid} {cmd}" for pid, cmd in holders) + ")"


def db_restore(
    archive: str,
    *,
    root: str,
    db_path: str | None = None,
    db_url: str | None = None,
    backup_dir: str | None = None,
    skip_dirs=(),
    name: str | None = None,
    from_sql: bool = False,
    force: bool = False,
    busy_timeout: float = 2.0,
    lock_timeout: float = 10.0,
    identity_file: str | None = None,
    encrypt_to=(),
    target_db: str | None = None,
    drop_previous: bool = False,
    pg_bin_dir: str | None = None,
    progress=None,
    pg_only=(),
    stream=None,
):
    """Restore ``archive`` over the live database (see the README).  An
    encrypted backup needs ``identity_file``; ``encrypt_to`` encrypts the
    safety backup of the live database like any new backup.

    A PostgreSQL database goes to :func:`backup_lib.postgres.pg_restore_backup`
    (``target_db``, ``drop_previous``; the result is a ``PgRestoreResult``);
    ``from_sql`` is for SQLite only.  A sound backup of the other engine is
    a usage error (exit 2), found before anything is changed."""
    root = os.path.abspath(root)
    if stream is None and not os.path.exists(archive):
        raise NotFoundError(f"backup {archive} does not exist")
    backup_dir = os.path.abspath(backup_dir or default_backup_dir(root, "db"))
    db = find_database(root, db_path, db_url, skip_dirs=[backup_dir, *skip_dirs])
    if db.engine == "postgresql":
        if stream is not None:
            raise UsageError("db.restore --remote restores SQLite backups; for PostgreSQL, db.pull the backup first, then db.restore it")
        if from_sql:
            raise UsageError("--from-sql is for SQLite backups: a PostgreSQL backup is restored from its custom dump "
                             "(its SQL dump loads with psql -f, see the README)")
        from .postgres import pg_restore_backup

        return pg_restore_backup(archive, root=root, url=_pg_target(db), backup_dir=backup_dir, name=name, target_db=target_db,
                                 force=force, drop_previous=drop_previous, pg_bin_dir=pg_bin_dir, lock_timeout=lock_timeout,
                                 progress=progress, identity_file=identity_file, encrypt_to=encrypt_to, found_by=db.how)
    _refuse_pg_only(db, pg_only)
    live, _how = _sqlite_path(db, must_exist=False)
    parent = os.path.dirname(live)
    os.makedirs(parent, exist_ok=True)
    swept = sweep(parent)
    wd = create_work_dir(live)
    work = wd.tree
    try:
        meta, errors, sound = _extract_and_check(archive, work, identity_file, stream)
        if sound and meta.get("backup_type") == "database" and meta.get("engine") == "postgresql":
            # A sound backup of the other engine: the wrong archive for this database, not a damaged one.
            raise UsageError(f"{archive} is a backup of a PostgreSQL database, not of SQLite: restore it with db.url "
                             f"or DATABASE_URL set to the PostgreSQL server (postgresql://…)")
        if errors:
            raise IntegrityError(f"{archive} fails verification, nothing restored: {errors[0]}")
        if from_sql and not meta.get("sql_dump"):
            raise DatabaseError(f"{archive} has no SQL dump (made with --no-sql-dump): restore without --from-sql")
        exists = os.path.exists(live)
        busy = exists and _writer_busy(live, busy_timeout)
        if busy and not force:
            raise DatabaseError(
                f"database {live} is busy: another connection holds a write transaction"
                f"{_held_by(processes_holding(side_files(live)[:3]))}: stop the application, or use --force "
                f"(what that connection commits then goes to the replaced file and is lost)"
            )
        safety = None
        if exists:
            safety = db_backup(
                root, db_path=live, backup_dir=backup_dir, skip_dirs=skip_dirs, name=name, lock_timeout=lock_timeout,
                safety_for=os.path.basename(archive), encrypt_to=encrypt_to,
            ).backup_path
        new = os.path.join(work, ".new.db")
        if from_sql:
            _sq.load_dump(os.path.join(work, meta["sql_dump"]), new)
            if _sq.table_counts(new) != meta.get("tables"):
                raise IntegrityError("the database rebuilt from the SQL dump has other row counts than the backup's")
        else:
            os.rename(os.path.join(work, meta["database_file"]), new)
        if str(meta.get("journal_mode", "")).lower() == "wal":
            with _sq.connect(new) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        if exists:
            st = os.stat(live)
            os.chmod(new, st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(new, st.st_uid, st.st_gid)
        fd = os.open(new, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        open_by = tuple(processes_holding(side_files(live)[:3])) if exists else ()
        # Stale side files of the old database must not be applied to the new one.
        for side in side_files(live)[1:]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(side)
        os.rename(new, live)
        fsync_dir(parent)
        return DbRestoreResult(live, archive, safety, from_sql, _sq.table_counts(live), open_by, bool(busy), tuple(swept))
    finally:
        wd.remove()
