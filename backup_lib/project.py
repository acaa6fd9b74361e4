"""Project backups: create, list, info, restore, verify, cleanup."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

from . import archive as _archive
from .dbpath import resolve_database, side_files
from .errors import BackupError, IntegrityError, NotFoundError, UsageError
from .metadata import common_metadata, database_info, now_utc
from .retention import Decision, check_retention_args, plan_retention
from .selection import select_files
from .store import BACKUP_TYPES, BackupStore, default_backup_dir, read_metadata
from .workdir import sweep, sweep_paths

__all__ = [
    "CreateResult",
    "ListedBackup",
    "CleanupResult",
    "VerifyReport",
    "create_backup",
    "list_backups",
    "backup_info",
    "restore_backup",
    "verify_backups",
    "cleanup_backups",
    "resolve_backup_path",
    "normalize_compression",
]


def normalize_compression(value: str | None, *, no_compress: bool = False) -> str:
    if no_compress:
        return "none"
    value = (value or "gz").lower()
    aliases = {"gz": "gz", "gzip": "gz", "zst": "zst", "zstd": "zst", "none": "none", "tar": "none"}
    if value not in aliases:
        raise UsageError(f"--compression must be gz, zst or none (got {value!r})")
    return aliases[value]


@dataclass(frozen=True)
class CreateResult:
    backup_path: str | None
    metadata: dict
    dry_run: bool = False
    files: tuple[str, ...] = ()
    work_folders: tuple[dict, ...] = ()  # leftovers of killed restores: removed, or left alone and why

    @property
    def incomplete(self) -> bool:
        return bool(self.metadata.get("skipped_files"))


def create_backup(
    root: str,
    *,
    backup_dir: str | None = None,
    name: str | None = None,
    compression: str = "gz",
    include=(),
    exclude=(),
    default_excludes: bool = True,
    db_path: str | None = None,
    other_backup_dirs=None,
    environment: str | None = None,
    dry_run: bool = False,
    lock_timeout: float = 10.0,
    progress=None,
) -> CreateResult:
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise NotFoundError(f"project root {root} does not exist or is not a directory")
    backup_dir = os.path.abspath(backup_dir or default_backup_dir(root, "project"))
    if os.path.realpath(backup_dir) == os.path.realpath(root):
        raise UsageError(f"the backup dir must not be the project root itself ({root}): use a folder inside or outside it")
    name = name or os.path.basename(root) or "project"
    if "/" in name or name.startswith("."):
        raise UsageError(f"backup name {name!r} must not contain '/' or start with '.'")
    if other_backup_dirs is None:
        other_backup_dirs = [default_backup_dir(root, "db")]
    db, _how = resolve_database(root, db_path)
    excluded_paths = [*(side_files(db) if db else ()), *other_backup_dirs, backup_dir]
    selection = select_files(
        root,
        include=include,
        exclude=exclude,
        default_excludes=default_excludes,
        exclude_paths=excluded_paths,
        always_exclude_paths=[backup_dir],
        stat_files=dry_run,  # the writer fstat()s each file it opens
    )
    if dry_run:
        files = tuple(e.path for e in selection.files)
        meta = {"files": list(files), "total_files": len(files), "total_size": selection.total_size}
        return CreateResult(None, meta, dry_run=True, files=files)

    compression_name = _archive.COMPRESSIONS[compression][1]
    store = BackupStore(backup_dir, "project")
    store.ensure()
    # Work folders of killed restores: in the tree (never selected) and in
    # the backup folders (db.verify's); those whose owner is gone go.
    swept = sweep_paths(selection.work_dirs)
    for d in dict.fromkeys([backup_dir, *other_backup_dirs]):
        swept += sweep(d)

    def metadata_for(rep, writer) -> dict:
        metadata = common_metadata(backup_type="project_full", root=root, compression=compression_name, environment=environment, now=now)
        metadata.update(
            {
                "total_files": rep.total_files,
                "total_size": rep.total_size,
                "project_hash": writer.finish_hash(),
                "file_types": dict(sorted(rep.file_types.items(), key=lambda kv: (-kv[1], kv[0]))),
                "gitignore_patterns": list(selection.gitignore_patterns),
                "excluded_patterns": list(selection.excluded_patterns),
                "included_patterns": list(include),
                "database": database_info(root, db),
                "skipped_files": [{"path": p, "reason": r} for p, r in selection.skipped] + rep.skipped,
                "changed_files": rep.changed,
            }
        )
        return metadata

    with store.lock(lock_timeout):
        store.remove_leftovers()
        now = now_utc()
        if progress is not None:
            progress.total_files = len(selection.files)
        final, metadata = store.write_archive(
            name=name, compression=compression, root=root, entries=selection.entries, metadata_for=metadata_for, now=now, progress=progress
        )
    if progress is not None:
        progress.done()
    return CreateResult(final, metadata, work_folders=tuple(swept))


@dataclass(frozen=True)
class ListedBackup:
    backup_path: str
    size: int
    metadata: dict | None
    error: str | None = None

    def summary(self) -> dict:
        meta = self.metadata or {}
        out = {
            "backup_path": self.backup_path,
            "name": os.path.basename(self.backup_path),
            "size": self.size,
            "backup_timestamp": meta.get("backup_timestamp"),
            "backup_type": meta.get("backup_type"),
            "total_files": meta.get("total_files"),
            "total_size": meta.get("total_size"),
            "compression": meta.get("compression"),
            "project_hash": meta.get("project_hash"),
        }
        if meta.get("safety_backup"):
            out["safety_backup"] = True  # taken by db.restore before it swapped the database
        if self.error:
            out["error"] = self.error
        return out


def list_backups(backup_dir: str, *, kind: str = "project") -> list[ListedBackup]:
    store = BackupStore(backup_dir, kind)
    out = []
    for bf in store.backups():
        try:
            out.append(ListedBackup(bf.path, bf.size, store.metadata(bf.path)))
        except BackupError as exc:
            out.append(ListedBackup(bf.path, bf.size, None, str(exc)))
    return out


def resolve_backup_path(path: str | None, backup_dir: str) -> str:
    """A path as given, else relative to the backup directory."""
    if not path:
        raise UsageError("--backup-path is required")
    if os.path.exists(path) or os.path.isabs(path):
        return os.path.abspath(path)
    candidate = os.path.join(backup_dir, path)
    return candidate if os.path.exists(candidate) else os.path.abspath(path)


def backup_info(path: str) -> dict:
    return read_metadata(path)


def restore_backup(path: str, target: str, **kw):
    from .restore import restore_tree

    if not os.path.exists(path):
        raise NotFoundError(f"backup {path} does not exist")
    return restore_tree(path, target, **kw)


@dataclass(frozen=True)
class VerifyReport:
    backup_path: str
    ok: bool
    errors: tuple[str, ...] = ()
    metadata: dict | None = None

    def as_dict(self) -> dict:
        return {"backup_path": self.backup_path, "ok": self.ok, "errors": list(self.errors)}


def verify_one(path: str, *, progress=None) -> VerifyReport:
    from .extract import scan_archive

    try:
        res = scan_archive(path, progress=progress)
    except BackupError as exc:
        return VerifyReport(path, False, (str(exc),))
    return VerifyReport(path, res.ok, tuple(res.errors), res.metadata)


def verify_backups(backup_dir: str, paths=(), *, kind: str = "project", progress=None) -> list[VerifyReport]:
    if not paths:
        paths = [bf.path for bf in BackupStore(backup_dir, kind).backups()]
        if not paths:
            raise NotFoundError(f"no backups to verify in {backup_dir}")
    return [verify_one(p, progress=progress) for p in paths]


@dataclass(frozen=True)
class CleanupResult:
    decisions: tuple[Decision, ...]
    deleted: tuple[str, ...]
    not_backups: tuple[str, ...] = ()
    dry_run: bool = False


def cleanup_backups(
    backup_dir: str,
    *,
    kind: str = "project",
    name: str | None = None,
    retention_days=30,
    max_backups=5,
    dry_run: bool = False,
    lock_timeout: float = 10.0,
    now: _dt.datetime | None = None,
) -> CleanupResult:
    days, keep = check_retention_args(retention_days, max_backups)
    store = BackupStore(backup_dir, kind)
    if not os.path.isdir(store.directory):
        return CleanupResult((), (), dry_run=dry_run)

    def run() -> CleanupResult:
        confirmed, not_ours = [], []
        for bf in store.backups(name=name):
            try:
                meta = store.metadata(bf.path)
            except (IntegrityError, NotFoundError):
                not_ours.append(bf.path)
                continue
            if meta.get("backup_type") != BACKUP_TYPES[kind]:
                not_ours.append(bf.path)
                continue
            confirmed.append((bf.path, bf.timestamp))
        decisions = plan_retention(confirmed, now=now or now_utc(), retention_days=days, max_backups=keep)
        deleted = []
        for d in decisions:
            if d.delete and not dry_run:
                store.delete(d.key)
                deleted.append(d.key)
        return CleanupResult(tuple(decisions), tuple(deleted), tuple(not_ours), dry_run)

    if dry_run:
        return run()
    with store.lock(lock_timeout):
        return run()
