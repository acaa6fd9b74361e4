"""A backup directory: naming, listing, locking, atomic placement, the index.

* Archives are named ``<name>_<kind>_<YYYYmmdd_HHMMSS>[_<n>].tar[.gz|.zst]``
  (UTC); a second archive in the same second gets ``_1``, ``_2`` …: placement
  uses ``link(2)``, which never overwrites.
* An archive is written as ``.tmp-….partial`` (0600), fsynced, then linked
  into place: nothing else is ever taken for a backup, and the next create
  (which holds the directory's lock) removes the leftovers of a killed one.
* Beside each archive, ``<archive>.index.json`` caches its metadata so that
  listing never decompresses an archive; a missing or stale index is rebuilt
  from the archive.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from typing import Iterator

from .errors import BackupError, LockedError, NotABackupError, NotFoundError

__all__ = ["BackupFile", "BackupStore", "parse_backup_name"]

_NAME_RE = re.compile(
    r"^(?P<name>.+)_(?P<kind>project|db)_(?P<ts>\d{8}_\d{6})(?:_(?P<seq>\d+))?(?P<incr>_incr)?"
    r"(?P<ext>\.tar(?:\.gz|\.zst)?)(?P<age>\.age)?$"
)
INCR_TAG = "_incr"
_EXT_COMPRESSION = {".tar.gz": "gzip", ".tar.zst": "zstd", ".tar": "none"}
TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".partial"
INDEX_SUFFIX = ".index.json"
LOCK_NAME = ".backup.lock"
BACKUP_TYPES = {"project": ("project_full", "project_incremental"), "db": ("database",)}  # store kind -> metadata backup_types


def default_backup_dir(root: str, kind: str) -> str:
    """<root>/backups/project or <root>/backups/db."""
    return os.path.join(root, "backups", kind)


@dataclass(frozen=True, slots=True)
class BackupFile:
    path: str
    name: str  # the <name> part
    kind: str  # "project" | "db"
    timestamp: _dt.datetime  # UTC, from the file name
    seq: int
    compression: str
    size: int
    incremental: bool = False
    encrypted: bool = False

    @property
    def sort_key(self) -> tuple:
        return (self.timestamp, self.seq)


def flock_waiting(fd: int, timeout: float) -> bool:
    """An exclusive flock on ``fd``, waiting up to ``timeout`` seconds for
    it; False when another holder kept it that long."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def parse_backup_name(filename: str) -> dict | None:
    m = _NAME_RE.match(filename)
    if not m:
        return None
    try:
        ts = _dt.datetime.strptime(m["ts"], "%Y%m%d_%H%M%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    return {
        "name": m["name"],
        "kind": m["kind"],
        "timestamp": ts,
        "seq": int(m["seq"] or 0),
        "compression": _EXT_COMPRESSION[m["ext"]],
        "incremental": bool(m["incr"]),
        "encrypted": bool(m["age"]),
    }


def replace_file(path: str, data: bytes, *, mode: int = 0o600, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it
    (never following a link), fsync'd unless ``sync`` is off, renamed over
    ``path``; a reader sees the old file or the new one, never a part.  On
    an OSError the temporary file is removed and the error raised."""
    import threading

    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BackupStore:
    def __init__(self, directory: str, kind: str):
        self.directory = os.path.abspath(directory)
        self.kind = kind

    # -- directory and lock --------------------------------------------------
    def ensure(self) -> None:
        """Create the directory (0700) if needed and check it is writable."""
        if not os.path.isdir(self.directory):
            try:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                os.chmod(self.directory, 0o700)
            except OSError as exc:
                raise BackupError(f"backup dir {self.directory} cannot be created: {exc.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise BackupError(f"backup dir {self.directory} is not writable")

    @contextlib.contextmanager
    def lock(self, timeout: float = 10.0) -> Iterator[None]:
        """One create or cleanup at a time per backup directory."""
        path = os.path.join(self.directory, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise BackupError(f"cannot open lock file {path}: {exc.strerror}") from None
        try:
            if not flock_waiting(fd, timeout):
                raise LockedError(
                    f"backup dir {self.directory} is busy: another create or cleanup is running "
                    f"(waited {timeout:g}s; try again when it finishes)"
                )
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)  # releases the lock

    def remove_leftovers(self) -> list[str]:
        """Remove what interrupted runs left behind (call with the lock held)."""
        import shutil

        removed = []
        archives = set()
        for entry in self._scan():
            if entry.name.startswith(TMP_PREFIX) and entry.name.endswith(TMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed.append(entry.name)
            elif parse_backup_name(entry.name):
                archives.add(entry.name)
        for entry in self._scan():
            if entry.name.endswith(INDEX_SUFFIX) and parse_backup_name(entry.name[: -len(INDEX_SUFFIX)]):
                if entry.name[: -len(INDEX_SUFFIX)] not in archives:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(entry.name)
        return removed

    def _scan(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.directory) as it:
                return list(it)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BackupError(f"backup dir {self.directory} cannot be read: {exc.strerror}") from None

    # -- writing ---------------------------------------------------------------
    @contextlib.contextmanager
    def temp_file(self, final_name: str) -> Iterator[tuple[int, str]]:
        """A new 0600 file under a temporary name; removed on any failure."""
        tmp = os.path.join(self.directory, f"{TMP_PREFIX}{final_name}-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            yield fd, tmp
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def temp_dir(self, label: str) -> str:
        """A private working directory that the next create removes if left over."""
        path = os.path.join(self.directory, f"{TMP_PREFIX}{label}-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
        os.mkdir(path, 0o700)
        return path

    def write_archive(self, *, name: str, compression: str, root: str, entries, metadata_for, now: _dt.datetime, progress=None,
                      keep_records: bool = False, incremental=None, manifest_cache=None, encrypt_to=None) -> tuple[str, dict]:
        """Archive ``entries`` of ``root`` into a new backup, atomically.

        ``metadata_for(report, writer)`` returns the metadata once every
        entry is written (and hashed).  ``incremental``: an
        ``archive.writer.Incremental`` (only what changed is stored, and the
        name gets ``_incr``).  ``manifest_cache``: where the manifest is kept
        for the next incremental.  ``encrypt_to``: age recipients; the
        archive is then ``….age``, encrypted in the same single pass (no
        plaintext byte of it reaches the disk).  Call with the lock held.
        """
        from . import archive as _archive
        from .archive.crypto import AGE_SUFFIX

        suffix = _archive.COMPRESSIONS[compression][0] + (AGE_SUFFIX if encrypt_to else "")
        tag = INCR_TAG if incremental is not None else ""
        try:
            with self.temp_file(f"{name}_{self.kind}{suffix}") as (fd, tmp):
                out = _archive.open_compressed_writer(fd, compression, encrypt_to=encrypt_to)
                writer = _archive.ArchiveWriter(out, progress=progress, keep_records=keep_records, incremental=incremental)
                try:
                    for entry in entries:
                        writer.add(root, entry)
                    metadata = metadata_for(writer.report, writer)
                    if encrypt_to:
                        metadata["encryption"] = {"format": "age", "recipients": list(encrypt_to)}
                    mtime = int(now.timestamp())
                    manifest_sha = writer.add_manifest(mtime=mtime)
                    metadata = writer.add_metadata(metadata, manifest_sha256=manifest_sha, mtime=mtime)
                    writer.close()
                except BaseException:
                    writer.abort()  # its threads (and the age writer) stop before the file is closed
                    raise
                os.fsync(fd)
                os.close(fd)
                final = self.place(tmp, name, now, tag + suffix)
        except OSError as exc:
            if is_disk_full(exc):
                raise BackupError(f"disk full while writing to {self.directory}: the partial archive was removed, earlier backups are untouched") from None
            raise BackupError(f"backup failed: {exc.strerror or exc} ({getattr(exc, 'filename', '') or self.directory})") from None
        self.write_index(final, metadata, archive_sha256=out.ciphertext_sha256)
        if manifest_cache is not None:
            manifest_cache.put(final, writer.compressed_manifest, manifest_sha, encrypt_to=encrypt_to)
        return final, metadata

    def place(self, tmp: str, name: str, stamp: _dt.datetime, suffix: str) -> str:
        """Link the finished temp file to its final, never-overwriting name
        (``suffix`` may start with ``_incr``: the sequence number goes before it)."""
        base = f"{name}_{self.kind}_{stamp:%Y%m%d_%H%M%S}"
        # A full and an incremental of the same second must not share a
        # sequence number: (time, seq) orders the backups.
        taken = [b.seq for b in self.backups(name=name) if b.timestamp == stamp.replace(microsecond=0)]
        seq = max(taken) + 1 if taken else 0
        while True:
            final = os.path.join(self.directory, f"{base}{'_' + str(seq) if seq else ''}{suffix}")
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                seq += 1
        os.unlink(tmp)
        fsync_dir(self.directory)
        return final

    def write_index(self, archive: str, metadata: dict, *, archive_sha256: str | None = None) -> None:
        """The small file beside an archive that listing reads.  Beside an
        encrypted archive it holds only what is safe to read without the
        key (:func:`public_metadata`): never a file name, pattern or path
        from inside the archive."""
        try:
            st = os.stat(archive)
            encrypted = "encryption" in metadata
            record = {"archive_size": st.st_size, "archive_mtime_ns": st.st_mtime_ns,
                      "metadata": public_metadata(metadata) if encrypted else metadata}
            if encrypted:
                record["encrypted"] = True
            if archive_sha256:
                record[ARCHIVE_SHA256] = archive_sha256
            data = json.dumps(record, ensure_ascii=True).encode()
            final = archive + INDEX_SUFFIX
            with self.temp_file(os.path.basename(final)) as (fd, tmp):
                os.write(fd, data)
                os.fsync(fd)
                os.close(fd)
                os.replace(tmp, final)
        except OSError:
            pass  # the index is a cache: the archive stays the truth

    # -- reading ---------------------------------------------------------------
    def backups(self, *, name: str | None = None) -> list[BackupFile]:
        """This store's archives, newest first (by the time in their names)."""
        out = []
        for entry in self._scan():
            info = parse_backup_name(entry.name)
            if not info or info["kind"] != self.kind or (name is not None and info["name"] != name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            out.append(BackupFile(entry.path, info["name"], info["kind"], info["timestamp"], info["seq"], info["compression"], st.st_size,
                                  info["incremental"], info["encrypted"]))
        out.sort(key=lambda b: b.sort_key, reverse=True)
        return out

    def delete(self, archive: str) -> None:
        """Remove a backup and the index beside it."""
        os.unlink(archive)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(archive + INDEX_SUFFIX)

    def metadata(self, archive: str, *, identity_file: str | None = None, write_index: bool = True) -> dict:
        """The archive's metadata: from its index when fresh, else from the
        archive (``write_index=False``: the index is not rewritten then)."""
        return read_metadata(archive, identity_file, write_index=write_index)


# What the index of an encrypted archive shows: when, what kind, how big,
# how many files, how it is packed, to whom it is encrypted, and the links
# of its chain (archive names).  Nothing from inside the archive's tree.
PUBLIC_KEYS = ("format_version", "backup_type", "backup_timestamp", "tool_version", "total_files", "total_size",
               "compression", "encryption", "parent", "base", "chain_depth", "safety_backup", "engine", "metadata_sha256")


def public_metadata(metadata: dict) -> dict:
    return {k: metadata[k] for k in PUBLIC_KEYS if k in metadata}


_INDEX_LIMIT = 65 << 20  # the reader's limit for the metadata inside an archive, and room for the rest


def load_index(path: str):
    """The JSON of an index beside an archive: a regular file of sane size,
    never read through a symlink or from a FIFO (OSError or ValueError
    otherwise; an index is a cache, and the archive itself is read then)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _INDEX_LIMIT:
            raise ValueError(f"{path} is not an index")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return json.loads(fh.read(_INDEX_LIMIT + 1))
    finally:
        os.close(fd)


def read_metadata(archive: str, identity_file: str | None = None, *, write_index: bool = True) -> dict:
    """Metadata of any archive path; uses and refreshes the index beside it.
    An encrypted archive's index holds its public part only; the whole
    metadata needs ``identity_file`` (and a read of the whole archive).
    ``write_index=False`` (a dry run): a missing or stale index is read
    around, never rewritten, so that nothing on disk changes."""
    from .archive import ArchiveReader

    try:
        st = os.stat(archive)
    except FileNotFoundError:
        raise NotFoundError(f"backup {archive} does not exist") from None
    except OSError as exc:
        raise NotFoundError(f"backup {archive}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotABackupError(f"{archive} is not a file")
    index = archive + INDEX_SUFFIX
    cached = None
    try:
        cached = load_index(index)
        if cached.get("archive_size") == st.st_size and cached.get("archive_mtime_ns") == st.st_mtime_ns:
            if not (cached.get("encrypted") and identity_file):
                return cached["metadata"]
        else:
            cached = None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        cached = None
    metadata = ArchiveReader(archive, identity_file=identity_file).read_all_metadata()
    directory = os.path.dirname(os.path.abspath(archive))
    if write_index and cached is None and os.access(directory, os.W_OK):
        BackupStore(directory, metadata.get("backup_type", "")).write_index(archive, metadata)
    return metadata


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


# -- the archive file's own SHA-256 (for remotes) --------------------------------
# Remotes compare and record archives by size and SHA-256.  Hashing a large
# archive takes seconds, so the digest is cached in the index beside it,
# valid while the index is (same size and mtime as the archive).

ARCHIVE_SHA256 = "archive_sha256"


def _fresh_index(archive: str) -> dict | None:
    try:
        st = os.stat(archive)
        cached = load_index(archive + INDEX_SUFFIX)
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("archive_size") != st.st_size or cached.get("archive_mtime_ns") != st.st_mtime_ns:
        return None
    return cached


def cached_archive_sha256(archive: str) -> str | None:
    """The archive's SHA-256 recorded in its fresh index, else None."""
    cached = _fresh_index(archive)
    value = cached.get(ARCHIVE_SHA256) if cached else None
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value
    return None


def record_archive_sha256(archive: str, sha256: str) -> None:
    """Add the archive's SHA-256 to its fresh index (a cache: skipped when
    the index is missing, stale or cannot be written)."""
    cached = _fresh_index(archive)
    if cached is None or cached.get(ARCHIVE_SHA256) == sha256:
        return
    cached[ARCHIVE_SHA256] = sha256
    store = BackupStore(os.path.dirname(os.path.abspath(archive)), "")
    try:
        final = archive + INDEX_SUFFIX
        with store.temp_file(os.path.basename(final)) as (fd, tmp):
            os.write(fd, json.dumps(cached, ensure_ascii=True).encode())
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, final)
    except OSError:
        pass


def archive_sha256(archive: str) -> str:
    """The archive file's SHA-256: from its index when cached there, else
    computed (and cached)."""
    import hashlib

    value = cached_archive_sha256(archive)
    if value:
        return value
    try:
        with open(archive, "rb", buffering=0) as fh:
            value = hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        raise NotFoundError(f"backup {archive} does not exist") from None
    except OSError as exc:
        raise BackupError(f"cannot read {archive}: {exc.strerror}") from None
    record_archive_sha256(archive, value)
    return value
