"""A folder remote: a NAS mount, a USB disk, any path (``/mnt/nas/backups``).

The key layout is the S3 one, as folders.  An object is written as
``.tmp-<name>-<pid>-<random>.partial`` beside its final name, fsynced, then
renamed into place (and the folder fsynced): a reader never sees half a
file.  Its SHA-256 lives beside it in ``<name>.sha256``, one
``sha256sum`` line, so ``sha256sum -c`` checks a copy without this tool;
the sidecar is in place before the object appears.

Files are only ever read when they are regular files, opened without
following a symlink and without blocking (a FIFO or a device in the remote
folder is an IntegrityError, exit 4, never a hang or an endless read).  A
folder keeps no checksum of its own: :meth:`FolderStorage.stat_checksum`
reads and hashes the file, which is what ``verify --remote`` compares with
the SHA-256 recorded at upload.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat as _stat
from typing import BinaryIO, Iterator

from ..errors import (
    BackupError,
    IntegrityError,
    ObjectNotFoundError,
    RemoteAccessError,
    RemoteError,
    RemoteFullError,
    RemoteMissingError,
    UsageError,
)
from .base import Incomplete, ObjectInfo, ObjectStream, Progress, Storage, check_key, digest_file, is_sha256_hex

__all__ = ["FolderStorage", "SIDECAR_SUFFIX"]

SIDECAR_SUFFIX = ".sha256"
TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".partial"
_CHUNK = 1 << 20


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderStorage(Storage):
    kind = "folder"

    def __init__(self, root: str, *, label: str | None = None):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root
        self.label = label or f"remote {self.root}"

    # -- helpers ---------------------------------------------------------------
    def _path(self, key: str) -> str:
        check_key(key)
        leaf = key.rsplit("/", 1)[-1]
        if leaf.endswith(SIDECAR_SUFFIX) or leaf.startswith(TMP_PREFIX):
            raise UsageError(f"{self.label}: a key must not end in {SIDECAR_SUFFIX} or start with {TMP_PREFIX} ({key!r})")
        return os.path.join(self.root, *key.split("/"))

    def _error(self, exc: OSError, doing: str, path: str | None = None) -> BackupError:
        where = path or self.root
        code = exc.errno
        if code == errno.EROFS:
            return RemoteAccessError(f"{self.label}: read-only file system ({doing} {where})")
        if code in (errno.EACCES, errno.EPERM):
            return RemoteAccessError(f"{self.label}: permission denied ({doing} {where})")
        if code in (errno.ENOSPC, errno.EDQUOT):
            return RemoteFullError(f"{self.label}: disk full ({doing} {where}): the partial copy was removed, earlier copies are untouched")
        if code in (errno.ENOENT, errno.ENOTDIR) and not os.path.isdir(self.root):
            return RemoteMissingError(f"{self.label}: folder {self.root} does not exist (is it mounted?)")
        return RemoteError(f"{self.label}: {doing} {where}: {exc.strerror or exc}")

    def check(self) -> None:
        if not os.path.isdir(self.root):
            raise RemoteMissingError(f"{self.label}: folder {self.root} does not exist (is it mounted?)")

    # -- writing ---------------------------------------------------------------
    def put_file(self, key: str, path: str, *, size: int | None = None, sha256: str | None = None, progress: Progress | None = None) -> ObjectInfo:
        try:
            src = open(path, "rb", buffering=0)
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror}") from None
        with src:
            actual = os.fstat(src.fileno()).st_size
            if size is not None and actual != size:
                raise IntegrityError(f"{path} is {actual} bytes, {size} were expected: it changed since it was listed")
            return self._put(key, src, actual, sha256, progress, what=path)

    def put_stream(self, key: str, stream: BinaryIO, *, size: int, sha256: str, progress: Progress | None = None) -> ObjectInfo:
        return self._put(key, stream, size, sha256, progress, what=f"the stream for {key}")

    def _put(self, key: str, src, size: int, sha256: str | None, progress, *, what: str) -> ObjectInfo:
        dest = self._path(key)
        self.check()
        folder = os.path.dirname(dest)
        name = os.path.basename(dest)
        tmp = os.path.join(folder, f"{TMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
        side = dest + SIDECAR_SUFFIX
        side_tmp = tmp + SIDECAR_SUFFIX
        placed_sidecar = False
        fd = -1
        try:
            try:
                os.makedirs(folder, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                digest = hashlib.sha256()
                buf = bytearray(_CHUNK)
                view = memoryview(buf)
                done = 0
                stopping = self.stopping
                while True:
                    if stopping.is_set():
                        raise KeyboardInterrupt
                    n = src.readinto(buf)
                    if not n:
                        break
                    digest.update(view[:n])
                    written = 0
                    while written < n:
                        written += os.write(fd, view[written:n])
                    done += n
                    if progress is not None:
                        progress(n)
                os.fsync(fd)
                os.close(fd)
                fd = -1
            except OSError as exc:
                raise self._error(exc, "writing", dest) from None
            hexdigest = digest.hexdigest()
            if done != size:
                raise IntegrityError(f"{what} gave {done} bytes, {size} were expected: nothing was stored")
            if sha256 is not None and hexdigest != sha256:
                raise IntegrityError(f"{what} does not have the SHA-256 it was listed with (changed since?): nothing was stored")
            try:
                sfd = os.open(side_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    os.write(sfd, f"{hexdigest}  {name}\n".encode())
                    os.fsync(sfd)
                finally:
                    os.close(sfd)
                os.replace(side_tmp, side)
                placed_sidecar = True
                os.replace(tmp, dest)
                _fsync_dir(folder)
            except OSError as exc:
                raise self._error(exc, "writing", dest) from None
        except BaseException:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
            for leftover in (tmp, side_tmp):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
            if placed_sidecar and not os.path.exists(dest):
                with contextlib.suppress(OSError):
                    os.unlink(side)
            raise
        st = os.stat(dest)
        return ObjectInfo(key, st.st_size, hexdigest, None, f"{st.st_size}-{st.st_mtime_ns}", st.st_mtime)

    # -- reading ---------------------------------------------------------------
    def _open_file(self, path: str, key: str) -> int:
        """A descriptor on the regular file at ``path``, never through a
        symlink and never blocking on a FIFO or a device (O_NOFOLLOW,
        O_NONBLOCK, then blocking again).  Anything else than a regular file
        is an IntegrityError (exit 4): not something this toolkit wrote."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            self.check()
            raise ObjectNotFoundError(f"{self.label}: {key} is not on the remote") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IntegrityError(f"{self.label}: {key} is a symlink, not a file this toolkit wrote: not a backup") from None
            raise self._error(exc, "reading", path) from None
        try:
            st = os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                raise IntegrityError(f"{self.label}: {key} is not a regular file (a FIFO, device or folder): not a backup")
            os.set_blocking(fd, True)
        except OSError as exc:
            os.close(fd)
            raise self._error(exc, "reading", path) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def stat_checksum(self, key: str) -> ObjectInfo | None:
        """The file's size and recorded SHA-256, and the SHA-256 of its
        bytes, read now (streamed: constant memory)."""
        path = self._path(key)
        try:
            fd = self._open_file(path, key)
        except ObjectNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            content_sha256, _ = digest_file(fd, st.st_size, chunk=_CHUNK, stop=self.stopping)
        except OSError as exc:
            raise self._error(exc, "reading", path) from None
        finally:
            os.close(fd)
        return ObjectInfo(key, st.st_size, self._recorded(path), None, f"{st.st_size}-{st.st_mtime_ns}", st.st_mtime,
                          content_sha256=content_sha256)

    def _recorded(self, path: str) -> str | None:
        """The SHA-256 in the sidecar (None: missing, unreadable, not a
        regular file, or not a sha256sum line naming this file)."""
        try:
            fd = self._open_file(path + SIDECAR_SUFFIX, os.path.basename(path) + SIDECAR_SUFFIX)
        except (BackupError, OSError):
            return None
        try:
            line = os.read(fd, 4096).decode("utf-8", "replace").strip()
        except OSError:
            return None
        finally:
            os.close(fd)
        digest, _, name = line.partition("  ")
        if is_sha256_hex(digest) and name.lstrip("*") == os.path.basename(path):
            return digest
        return None

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = os.lstat(path)  # a symlink is not an object (the listing skips them too)
        except FileNotFoundError:
            self.check()
            return None
        except OSError as exc:
            raise self._error(exc, "reading", path) from None
        if not _stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, self._recorded(path), None, f"{st.st_size}-{st.st_mtime_ns}", st.st_mtime)

    def open(self, key: str) -> ObjectStream:
        path = self._path(key)
        fd = self._open_file(path, key)
        fh = open(fd, "rb", buffering=0)
        st = os.fstat(fd)
        return ObjectStream(fh, key=key, size=st.st_size, sha256=self._recorded(path),
                            translate=lambda exc: self._error(exc, "reading", path) if isinstance(exc, OSError) else exc)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self.check()
        head, _, leaf = prefix.rpartition("/")
        start = os.path.join(self.root, *head.split("/")) if head else self.root
        base = head + "/" if head else ""
        yield from self._walk(start, base, leaf)

    def _walk(self, folder: str, base: str, leaf_prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._error(exc, "listing", folder) from None
        for entry in entries:
            if not entry.name.startswith(leaf_prefix):
                continue
            if entry.name.startswith(TMP_PREFIX) or entry.name.endswith(SIDECAR_SUFFIX):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(entry.path, base + entry.name + "/", "")
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            yield ObjectInfo(base + entry.name, st.st_size, None, None, f"{st.st_size}-{st.st_mtime_ns}", st.st_mtime)

    # -- removing --------------------------------------------------------------
    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            for p in (path, path + SIDECAR_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
            if os.path.isdir(os.path.dirname(path)):
                _fsync_dir(os.path.dirname(path))
        except OSError as exc:
            raise self._error(exc, "deleting", path) from None

    def incomplete_uploads(self, prefix: str) -> list[Incomplete]:
        self.check()
        head = prefix.rpartition("/")[0]
        start = os.path.join(self.root, *head.split("/")) if head else self.root
        out = []
        for dirpath, _dirs, files in os.walk(start):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel = "" if rel == "." else rel + "/"
            for f in files:
                if not (f.startswith(TMP_PREFIX) and (f.endswith(TMP_SUFFIX) or f.endswith(TMP_SUFFIX + SIDECAR_SUFFIX))):
                    continue
                target = f[len(TMP_PREFIX):].split(TMP_SUFFIX)[0].rsplit("-", 2)[0]
                if not (rel + target).startswith(prefix):
                    continue
                try:
                    mtime = os.stat(os.path.join(dirpath, f)).st_mtime
                except OSError:
                    continue
                out.append(Incomplete(rel + target, rel + f, mtime))
        return sorted(out, key=lambda u: u.upload_id)

    def abort_upload(self, upload: Incomplete) -> None:
        path = os.path.join(self.root, *upload.upload_id.split("/"))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error(exc, "removing", path) from None
