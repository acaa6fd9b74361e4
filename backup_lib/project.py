"""Project backups: create, list, info, restore, verify, cleanup."""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass

from . import archive as _archive
from . import git as _git
from .archive.writer import Incremental
from .dbpath import left_out_of_project_backups, resolve_database
from .errors import BackupError, IntegrityError, NotFoundError, UsageError
from .metadata import SUMMARY_FIELDS, common_metadata, database_info, now_utc
from .retention import Backup, Decision, KeepPolicy, check_retention_args, plan_retention
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
    warnings: tuple[str, ...] = ()  # one line each, for stderr: a database left out, why a full backup was written, …
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
    db_url: str | None = None,
    other_backup_dirs=(),
    environment: str | None = None,
    dry_run: bool = False,
    lock_timeout: float = 10.0,
    progress=None,
    incremental="false",
    full: bool = False,
    rehash: bool = False,
    full_every_days: int = 7,
    max_chain: int = 14,
    cache_dir: str | None = None,
    encrypt_to=(),
    identity_file: str | None = None,
) -> CreateResult:
    """Back up ``root``.  ``incremental``: "false", "true" (store only what
    changed since the newest backup, when the chain policy allows) or
    "auto" (the same, silently full when there is nothing to build on);
    ``full`` forces a full backup whatever ``incremental`` says."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise NotFoundError(f"project root {root} does not exist or is not a directory")
    backup_dir = os.path.abspath(backup_dir or default_backup_dir(root, "project"))
    if os.path.realpath(backup_dir) == os.path.realpath(root):
        raise UsageError(f"the backup dir must not be the project root itself ({root}): use a folder inside or outside it")
    name = name or os.path.basename(root) or "project"
    if "/" in name or name.startswith("."):
        raise UsageError(f"backup name {name!r} must not contain '/' or start with '.'")
    rules = ProjectRules.for_root(root, backup_dir=backup_dir, include=include, exclude=exclude, default_excludes=default_excludes,
                                  db_path=db_path, db_url=db_url, other_backup_dirs=other_backup_dirs)
    db, backup_dirs = rules.db, rules.backup_dirs
    warnings = [rules.db_warning] if rules.db_warning and default_excludes else []
    mode = _incremental_mode(incremental, full)
    select = rules.select  # a full create fstat()s each file it opens: stat_files only when needed

    if dry_run:
        selection = select(True)
        files = tuple(e.path for e in selection.files)
        meta = {"files": list(files), "total_files": len(files), "total_size": selection.total_size}
        return CreateResult(None, meta, dry_run=True, files=files, warnings=tuple(warnings))

    from .incremental import INCREMENTAL_TYPE, ManifestCache, default_cache_dir, find_parent, force_groups

    compression_name = _archive.COMPRESSIONS[compression][1]
    store = BackupStore(backup_dir, "project")
    store.ensure()
    cache = ManifestCache(cache_dir or default_cache_dir(), backup_dir)
    with store.lock(lock_timeout):
        store.remove_leftovers()
        parent = None
        if mode != "false":
            parent, why = find_parent(store, name, now=now_utc(), full_every_days=full_every_days, max_chain=max_chain, cache=cache,
                                      read_metadata=read_metadata, identity_file=identity_file,
                                      read_manifest=lambda path, meta: _read_manifest(path, meta, identity_file))
            if parent is None and not (mode == "auto" and why.startswith("no earlier backup")):
                warnings.append(why)
        started_ns = time.time_ns()
        repo = _git.find_repo(root)
        # the metadata's commit, branch and dirty state, asked of git while the tree is walked
        head = _git.HeadQuery(repo.top) if repo else None
        selection = select(parent is not None)  # an incremental compares lstat with the parent's records
        # Work folders of killed restores: in the tree (never selected) and in
        # the backup folders (db.verify's); those whose owner is gone go.
        swept = sweep_paths(selection.work_dirs)
        for d in dict.fromkeys([backup_dir, *backup_dirs]):
            swept += sweep(d)
        inc = None
        if parent is not None:
            inc = Incremental(parent.priors, started_ns=parent.started_ns, rehash=rehash,
                              force_groups=force_groups(selection.entries, parent.priors))
        now = now_utc()

        def metadata_for(rep, writer) -> dict:
            metadata = common_metadata(backup_type=INCREMENTAL_TYPE if inc else "project_full", root=root,
                                       compression=compression_name, environment=environment, now=now, git_head=head)
            metadata.update(
                {
                    "total_files": rep.total_files,
                    "total_size": rep.total_size,
                    "project_hash": writer.finish_hash(),
                    "file_types": dict(sorted(rep.file_types.items(), key=lambda kv: (-kv[1], kv[0]))),
                    "gitignore_patterns": list(selection.gitignore_patterns),
                    "excluded_patterns": list(selection.excluded_patterns),
                    "included_patterns": list(include),
                    "database": database_info(root, db.path),
                    "skipped_files": [{"path": p, "reason": r} for p, r in selection.skipped] + rep.skipped,
                    "changed_files": rep.changed,
                    "started_ns": started_ns,
                }
            )
            if inc is not None:
                metadata.update(
                    {
                        "parent": parent.link(),
                        "base": parent.base,
                        "chain_depth": parent.depth + 1,
                        "changes": {"new": rep.new, "modified": rep.modified, "removed": writer.removed, "unchanged": rep.unchanged},
                        "rehash": rehash,
                    }
                )
            return metadata

        if progress is not None:
            progress.total_files = len(selection.files)
        final, metadata = store.write_archive(
            name=name, compression=compression, root=root, entries=selection.entries, metadata_for=metadata_for, now=now,
            progress=progress, incremental=inc, manifest_cache=cache, encrypt_to=list(encrypt_to) or None,
        )
    if progress is not None:
        progress.done()
    return CreateResult(final, metadata, warnings=tuple(warnings), work_folders=tuple(swept))


@dataclass(frozen=True)
class ProjectRules:
    """What a project backup selects, as ``backup.create`` and ``backup.diff``
    both need it: git's rules and the flags, with the backup folders (the
    one written to, both defaults, every configured one), the toolkit's own
    home and the application's database always left out."""

    root: str
    include: tuple
    exclude: tuple
    default_excludes: bool
    backup_dirs: list
    db: object  # dbpath.Database
    db_paths: tuple
    db_warning: str | None

    @classmethod
    def for_root(cls, root: str, *, backup_dir: str, include=(), exclude=(), default_excludes: bool = True,
                 db_path: str | None = None, db_url: str | None = None, other_backup_dirs=()) -> "ProjectRules":
        root = os.path.abspath(root)
        backup_dirs = list(dict.fromkeys(os.path.abspath(d) for d in (
            backup_dir, default_backup_dir(root, "project"), default_backup_dir(root, "db"), *(other_backup_dirs or ()))))
        # The database as the db.* tasks resolve it (db.backup saves it consistently).
        db = resolve_database(root, db_path, url=db_url, skip_dirs=backup_dirs)
        db_paths, db_warning = left_out_of_project_backups(db, root)
        return cls(root, tuple(include), tuple(exclude), default_excludes, backup_dirs, db, tuple(db_paths), db_warning)

    def select(self, stat_files: bool = True):
        home = _toolkit_home(self.root, self.backup_dirs)  # looked at now: the backup folder may have just been made
        return select_files(
            self.root,
            include=self.include,
            exclude=self.exclude,
            default_excludes=self.default_excludes,
            exclude_paths=self.db_paths,
            always_exclude_paths=[*self.backup_dirs, *([home] if home else [])],
            stat_files=stat_files,
        )


_TOOLKIT_FILES = {"history.jsonl", "history.jsonl.lock", "report.html"}


def _toolkit_home(root: str, backup_dirs) -> str | None:
    """``<root>/backups`` when it holds nothing but the toolkit's own (the
    backup folders, the run history, the report page): then it is left out
    whole, instead of coming back from every restore as an empty folder.
    A project's own folder of that name, with anything else in it, is
    backed up as usual (only the toolkit's paths inside it are left out)."""
    home = os.path.join(root, "backups")
    try:
        names = os.listdir(home)
    except OSError:
        return None
    ours = {os.path.basename(d) for d in backup_dirs if os.path.dirname(d) == home}
    if all(n in ours or n in _TOOLKIT_FILES for n in names):
        return home
    return None


def _incremental_mode(value, full: bool) -> str:
    if full:
        return "false"
    if isinstance(value, bool) or value is None:
        return "true" if value else "false"
    text = str(value).strip().lower()
    aliases = {"false": "false", "no": "false", "off": "false", "0": "false", "true": "true", "yes": "true", "on": "true",
               "1": "true", "auto": "auto"}
    if text not in aliases:
        raise UsageError(f"backup.incremental must be false, true or auto (got {value!r})")
    return aliases[text]


def _read_manifest(path: str, metadata: dict, identity_file: str | None = None) -> bytes:
    """A backup's manifest, read from the archive (a whole streaming pass)."""
    from .archive import ArchiveReader

    reader = ArchiveReader(path, identity_file=identity_file)
    for _ti, fobj in reader:
        if fobj is not None:
            while fobj.read(_archive.CHUNK):
                pass
    if reader.manifest_bytes is None or reader.problems:
        raise IntegrityError(f"{path}: " + (reader.problems[0] if reader.problems else "no manifest"))
    return reader.manifest_bytes


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
            **{k: meta.get(k) for k in SUMMARY_FIELDS},
        }
        if meta.get("backup_type") == "project_incremental":
            out["parent"] = (meta.get("parent") or {}).get("name")
            out["chain_depth"] = meta.get("chain_depth")
        if meta.get("encryption"):
            out["encrypted"] = True
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


def backup_info(path: str, identity_file: str | None = None) -> dict:
    """The metadata; of an encrypted backup, its public part unless an
    identity is given (then the whole archive is read for it)."""
    return read_metadata(path, identity_file)


def chain_of(path: str, metadata: dict) -> list[dict]:
    """An incremental's chain as the indexes beside its archives tell it,
    newest first: {name, present, backup_type}; a parent that is missing
    ends the list (with present False)."""
    chain = [{"name": os.path.basename(path), "present": True, "backup_type": metadata.get("backup_type")}]
    directory = os.path.dirname(os.path.abspath(path))
    meta = metadata
    while meta.get("backup_type") == "project_incremental" and len(chain) < 10_000:
        name = (meta.get("parent") or {}).get("name")
        if not isinstance(name, str) or "/" in name:
            break
        parent = os.path.join(directory, name)
        try:
            meta = read_metadata(parent)
        except BackupError:
            chain.append({"name": name, "present": False, "backup_type": None})
            break
        chain.append({"name": name, "present": True, "backup_type": meta.get("backup_type")})
    return chain


def restore_backup(path: str, target: str, **kw):
    """Restore a backup (an incremental with its chain); ``stream=`` reads
    it from elsewhere (a remote), ``path`` then only names it."""
    from .restore import restore_tree

    if kw.get("stream") is None and not os.path.exists(path):
        raise NotFoundError(f"backup {path} does not exist")
    return restore_tree(path, target, **kw)


@dataclass(frozen=True)
class VerifyReport:
    backup_path: str
    ok: bool
    errors: tuple[str, ...] = ()
    metadata: dict | None = None
    # What was checked: "contents" (every byte, member and seal), or for an
    # encrypted backup without its identity "encrypted file" (its SHA-256
    # against the one recorded when it was written).
    checked: str = "contents"

    def as_dict(self) -> dict:
        return {"backup_path": self.backup_path, "ok": self.ok, "errors": list(self.errors), "checked": self.checked}


def verify_one(path: str, *, progress=None, identity_file: str | None = None) -> VerifyReport:
    from .archive.crypto import DecryptError, is_encrypted
    from .extract import scan_backup

    if identity_file is None and is_encrypted(path):
        return verify_ciphertext(path)
    try:
        res = scan_backup(path, progress=progress, identity_file=identity_file)
    except DecryptError:
        raise  # the wrong key, not a damaged backup: one line, exit 1
    except BackupError as exc:
        return VerifyReport(path, False, (str(exc),))
    return VerifyReport(path, res.ok, tuple(res.errors), res.metadata)


def verify_ciphertext(path: str) -> VerifyReport:
    """An encrypted backup checked without its key: the file's SHA-256
    against the one recorded beside it when it was written."""
    import hashlib

    from .store import ARCHIVE_SHA256, INDEX_SUFFIX, load_index

    label = "encrypted file"
    try:  # the digest recorded at creation, whatever happened to the file since (a stale index included)
        recorded = load_index(path + INDEX_SUFFIX).get(ARCHIVE_SHA256)
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, str):
        return VerifyReport(path, False, ("no SHA-256 was recorded for this encrypted file (its index is missing): "
                                          "give --identity to check its contents",), checked=label)
    try:
        with open(path, "rb", buffering=0) as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        return VerifyReport(path, False, (f"{path}: {exc.strerror}",), checked=label)
    if digest != recorded:
        return VerifyReport(path, False, ("the encrypted file does not match the SHA-256 recorded when it was written "
                                          "(it was altered or damaged)",), checked=label)
    return VerifyReport(path, True, (), checked=label)


def verify_backups(backup_dir: str, paths=(), *, kind: str = "project", progress=None,
                   identity_file: str | None = None) -> list[VerifyReport]:
    if not paths:
        paths = [bf.path for bf in BackupStore(backup_dir, kind).backups()]
        if not paths:
            raise NotFoundError(f"no backups to verify in {backup_dir}")
    return [verify_one(p, progress=progress, identity_file=identity_file) for p in paths]


@dataclass(frozen=True)
class CleanupResult:
    decisions: tuple[Decision, ...]
    deleted: tuple[str, ...]
    not_backups: tuple[str, ...] = ()
    dry_run: bool = False
    why_unreadable: tuple[tuple[str, str], ...] = ()  # (path, why) of the not_backups that could not be read


def cleanup_backups(
    backup_dir: str,
    *,
    kind: str = "project",
    name: str | None = None,
    retention_days=30,
    max_backups=5,
    keep: KeepPolicy | None = None,
    dry_run: bool = False,
    lock_timeout: float = 10.0,
    now: _dt.datetime | None = None,
    cache_dir: str | None = None,
    tz=None,
    identity_file: str | None = None,
) -> CleanupResult:
    """Delete this project's backups that the policy does not keep: the
    calendar rules in ``keep`` when given, else age and count.  A kept
    incremental keeps its whole chain; deletion goes newest first, so a
    cleanup cut short never leaves an incremental without its parent.

    A backup that cannot be read (an encrypted one whose index is stale
    opens only with ``identity_file``) is left alone, never the whole
    cleanup stopped; when it is an incremental, every backup that could be
    its parent is kept too."""
    days, most = check_retention_args(retention_days, max_backups)
    store = BackupStore(backup_dir, kind)
    if not os.path.isdir(store.directory):
        return CleanupResult((), (), dry_run=dry_run)

    def run() -> CleanupResult:
        from .archive.reader import IdentityNeededError

        confirmed, not_ours, unreadable, unknown_chains = [], [], [], []
        for bf in store.backups(name=name):
            try:
                try:
                    meta = store.metadata(bf.path, write_index=not dry_run)
                except IdentityNeededError:
                    if not identity_file:
                        raise
                    meta = store.metadata(bf.path, identity_file=identity_file, write_index=not dry_run)
            except (IntegrityError, NotFoundError):
                not_ours.append(bf.path)
                continue
            except BackupError as exc:  # encrypted with no key that opens it, unreadable: left alone
                not_ours.append(bf.path)
                why = ("encrypted, its index is stale, and no backup.identity_file opens it"
                       if isinstance(exc, IdentityNeededError) else str(exc))
                unreadable.append((bf.path, why))
                if bf.incremental:  # its chain cannot be known: keep whatever could be its parent
                    unknown_chains.append((bf.path, bf.timestamp, "which cannot be read"))
                continue
            if meta.get("backup_type") not in BACKUP_TYPES[kind]:
                not_ours.append(bf.path)
                continue
            parent = (meta.get("parent") or {}).get("name") if meta.get("backup_type") == "project_incremental" else None
            confirmed.append(Backup(bf.path, bf.timestamp, os.path.join(store.directory, parent) if parent else None))
        decisions = plan_retention(confirmed, now=now or now_utc(), retention_days=days, max_backups=most, keep=keep, tz=tz,
                                   unknown_chains=unknown_chains)
        deleted = []
        for d in decisions:  # newest first: dependants before their parents
            if d.delete and not dry_run:
                store.delete(d.key)
                deleted.append(d.key)
        if deleted and kind == "project":
            from .incremental import ManifestCache, default_cache_dir

            ManifestCache(cache_dir or default_cache_dir(), backup_dir).prune(d.key for d in decisions if not d.delete)
        return CleanupResult(tuple(decisions), tuple(deleted), tuple(not_ours), dry_run, tuple(unreadable))

    if dry_run:
        return run()
    with store.lock(lock_timeout):
        return run()
