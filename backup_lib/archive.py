"""Standard tar archives (plain, gzip via ISA-L, zstd), written and read as streams.

Layout of every archive this toolkit writes:

* the selected entries, relative to the root, sorted by path (GNU tar format:
  long names, >8 GiB sizes and non-UTF-8 names all stay readable by GNU tar);
* ``backup_manifest.jsonl``: one JSON object per entry (path, type, size,
  mode, mtime_ns, sha256 or link target);
* ``backup_metadata.json``: the metadata.

The tool's two members are always the last two.  A project that has its own
file of either name at its root keeps it: it is stored in sorted order like
any file, and readers take only the final two members as the tool's.
Every file is read exactly once: hashed as it is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .errors import IntegrityError, NotABackupError, NotFoundError
from .selection import Entry

__all__ = [
    "METADATA_NAME",
    "MANIFEST_NAME",
    "FORMAT_VERSION",
    "COMPRESSIONS",
    "ArchiveWriter",
    "ArchiveReader",
    "detect_compression",
    "open_compressed_writer",
]

METADATA_NAME = "backup_metadata.json"
MANIFEST_NAME = "backup_manifest.jsonl"
TOOL_MEMBERS = (MANIFEST_NAME, METADATA_NAME)
FORMAT_VERSION = 1
BLOCK = 512
RECORD = BLOCK * 20
CHUNK = 1 << 20

# --compression value -> (file suffix, metadata "compression" value)
COMPRESSIONS = {"gz": (".tar.gz", "gzip"), "zst": (".tar.zst", "zstd"), "none": (".tar", "none")}
GZIP_LEVEL = 2  # ISA-L's level 2: about zlib -6's ratio at several times the speed
ZSTD_LEVEL = 3

_ZERO_BLOCK = bytes(BLOCK)


def open_compressed_writer(raw, compression: str):
    """A writable binary stream that compresses into ``raw`` (not closed by it)."""
    if compression == "gz":
        from isal import igzip_threaded

        return igzip_threaded.open(raw, "wb", compresslevel=GZIP_LEVEL, threads=1)
    if compression == "zst":
        import zstandard

        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
        return cctx.stream_writer(raw, closefd=True)
    if compression == "none":
        return io.BufferedWriter(raw, CHUNK)
    raise ValueError(compression)


def detect_compression(path: str) -> str:
    """gz, zst or none, from the file's first bytes."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise NotFoundError(f"{path}: {exc.strerror}") from None
    if magic[:2] == b"\x1f\x8b":
        return "gz"
    if magic == b"\x28\xb5\x2f\xfd":
        return "zst"
    return "none"


def open_decompressed(path: str, compression: str):
    if compression == "gz":
        from isal import igzip_threaded

        return igzip_threaded.open(path, "rb", threads=1)
    if compression == "zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True, read_across_frames=True), CHUNK)
    return open(path, "rb", buffering=CHUNK)


def _header(name: str, kind: bytes, *, mode: int, size: int = 0, mtime: int = 0, uid: int = 0, gid: int = 0, linkname: str = "") -> bytes:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode & 0o7777
    ti.size = size
    ti.mtime = mtime
    ti.uid = uid
    ti.gid = gid
    ti.uname = ti.gname = ""
    ti.linkname = linkname
    return ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


@dataclass
class WriteReport:
    records: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # unreadable: {path, reason}
    changed: list[str] = field(default_factory=list)  # changed while read
    total_files: int = 0
    total_size: int = 0
    file_types: dict[str, int] = field(default_factory=dict)
    project_hash: str = ""


class ArchiveWriter:
    """Writes a tar stream into a compressor; hashes each file as it goes."""

    def __init__(self, out, *, progress: Callable[[int, int], None] | None = None):
        self._out = out
        self._write = out.write
        self._progress = progress
        self._links: dict[tuple[int, int], tuple[str, str]] = {}  # (dev, ino) -> (path, sha256)
        self.report = WriteReport()
        self._hash_items: list[tuple[bytes, str]] = []

    # -- members -----------------------------------------------------------
    def add(self, root: str, entry: Entry) -> None:
        path = entry.path
        full = os.path.join(root, path)
        rep = self.report
        if entry.kind == "dir":
            self._write(_header(path + "/", tarfile.DIRTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid))
            rep.records.append({"path": path, "type": "dir", "mode": stat.S_IMODE(entry.mode), "mtime_ns": entry.mtime_ns})
            return
        if entry.kind == "symlink":
            try:
                target = os.readlink(full)
            except OSError as exc:
                rep.skipped.append({"path": path, "reason": exc.strerror or str(exc)})
                return
            self._write(_header(path, tarfile.SYMTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid, linkname=target))
            rep.records.append({"path": path, "type": "symlink", "mode": stat.S_IMODE(entry.mode), "mtime_ns": entry.mtime_ns, "target": target})
            self._count(path, 0, "symlink:" + target)
            return
        self._add_file(full, entry)

    def _add_file(self, full: str, entry: Entry) -> None:
        rep = self.report
        path = entry.path
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            rep.skipped.append({"path": path, "reason": exc.strerror or str(exc)})
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return  # replaced by something else since the walk: never read it
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                first, digest = self._links[key]
                self._write(_header(path, tarfile.LNKTYPE, mode=st.st_mode, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid, linkname=first))
                rep.records.append({"path": path, "type": "hardlink", "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns, "target": first, "size": st.st_size, "sha256": digest})
                self._count(path, 0, digest)
                return
            size = st.st_size
            self._write(_header(path, tarfile.REGTYPE, mode=st.st_mode, size=size, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid))
            h = hashlib.sha256()
            remaining = size
            try:
                while remaining > 0:
                    chunk = os.read(fd, min(CHUNK, remaining))
                    if not chunk:
                        break
                    h.update(chunk)
                    self._write(chunk)
                    remaining -= len(chunk)
                    if self._progress:
                        self._progress(0, len(chunk))
            except OSError as exc:
                # The header is out: finish the member with zeros and report it.
                rep.skipped.append({"path": path, "reason": f"read error: {exc.strerror or exc}"})
            changed = remaining > 0
            while remaining > 0:  # the file shrank while read: keep the stream valid
                pad = bytes(min(CHUNK, remaining))
                h.update(pad)
                self._write(pad)
                remaining -= len(pad)
            if size % BLOCK:
                self._write(bytes(BLOCK - size % BLOCK))
            after = os.fstat(fd)
            if changed or after.st_size != size or after.st_mtime_ns != st.st_mtime_ns or os.read(fd, 1):
                rep.changed.append(path)
        finally:
            os.close(fd)
        digest = h.hexdigest()
        if st.st_nlink > 1:
            self._links[key] = (path, digest)
        rep.records.append({"path": path, "type": "file", "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns, "size": size, "sha256": digest})
        rep.total_size += size
        self._count(path, 1, digest)

    def _count(self, path: str, _files: int, content_id: str) -> None:
        rep = self.report
        rep.total_files += 1
        base = path.rsplit("/", 1)[-1]
        dot = base.rfind(".")
        ext = base[dot:].lower() if dot > 0 else "(none)"
        rep.file_types[ext] = rep.file_types.get(ext, 0) + 1
        self._hash_items.append((os.fsencode(path), content_id))
        if self._progress:
            self._progress(1, 0)

    def add_bytes(self, name: str, data: bytes, *, mtime: int) -> None:
        self._write(_header(name, tarfile.REGTYPE, mode=0o600, size=len(data), mtime=mtime))
        self._write(data)
        if len(data) % BLOCK:
            self._write(bytes(BLOCK - len(data) % BLOCK))

    def finish_hash(self) -> str:
        self.report.project_hash = project_hash(self._hash_items)
        return self.report.project_hash

    def close(self) -> None:
        self._write(_ZERO_BLOCK * 2)
        self._out.close()


def project_hash(items: list[tuple[bytes, str]]) -> str:
    """SHA-256 over the sorted (path, content hash) list: equal for equal trees."""
    h = hashlib.sha256()
    for path, content in sorted(items):
        h.update(path + b"\0" + content.encode() + b"\n")
    return h.hexdigest()


def manifest_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n" for r in records).encode()


def parse_manifest(data: bytes) -> list[dict]:
    try:
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"manifest is not valid JSON lines: {exc}") from None


def parse_metadata(data: bytes, path: str) -> dict:
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NotABackupError(f"{path}: {METADATA_NAME} is not valid JSON") from None
    if not isinstance(meta, dict) or "backup_type" not in meta:
        raise NotABackupError(f"{path}: {METADATA_NAME} is not backup metadata")
    return meta


# ---------------------------------------------------------------- reading

_TOOL_BUFFER_LIMIT = 512 << 20


class ArchiveReader:
    """One streaming pass over an archive.

    Iterating yields ``(tarinfo, fileobj_or_None)`` for the project's members
    in archive order; afterwards ``manifest`` and ``metadata`` hold the tool's
    members (None when the archive has none: not a backup).
    """

    def __init__(self, path: str):
        self.path = path
        self.compression = detect_compression(path)
        self.metadata_bytes: bytes | None = None
        self.manifest_bytes: bytes | None = None

    def __iter__(self) -> Iterator[tuple[tarfile.TarInfo, object]]:
        queue: list[tuple[tarfile.TarInfo, bytes]] = []
        try:
            stream = open_decompressed(self.path, self.compression)
        except OSError as exc:
            raise NotFoundError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            with stream, tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tf:
                for ti in tf:
                    if ti.isreg() and ti.name in TOOL_MEMBERS and ti.size <= _TOOL_BUFFER_LIMIT:
                        data = tf.extractfile(ti).read()
                        if len(data) != ti.size:
                            raise IntegrityError(f"{self.path}: archive is truncated")
                        queue.append((ti, data))
                        continue
                    for qti, qdata in queue:
                        yield qti, io.BytesIO(qdata)
                    queue.clear()
                    yield ti, (tf.extractfile(ti) if ti.isreg() else None)
        except tarfile.ReadError as exc:
            raise IntegrityError(f"{self.path}: not a readable tar archive ({_reason(exc)})") from None
        except (EOFError, tarfile.StreamError) as exc:
            raise IntegrityError(f"{self.path}: archive is truncated or corrupt ({_reason(exc)})") from None
        except OSError as exc:
            if isinstance(exc, (PermissionError, FileNotFoundError)):
                raise NotFoundError(f"{self.path}: {exc.strerror}") from None
            raise IntegrityError(f"{self.path}: archive is corrupt ({_reason(exc)})") from None
        except Exception as exc:  # zstd/isal decoder errors have their own types
            if type(exc).__module__.startswith(("zstandard", "isal", "zlib", "gzip")) or "Error" in type(exc).__name__:
                if isinstance(exc, IntegrityError):
                    raise
                raise IntegrityError(f"{self.path}: archive is corrupt ({_reason(exc)})") from None
            raise
        tail = [name for name, _ in ((t.name, d) for t, d in queue)]
        if len(queue) >= 2 and tail[-2:] == list(TOOL_MEMBERS):
            for qti, qdata in queue[:-2]:
                yield qti, io.BytesIO(qdata)
            self.manifest_bytes = queue[-2][1]
            self.metadata_bytes = queue[-1][1]
        else:
            for qti, qdata in queue:
                yield qti, io.BytesIO(qdata)

    def read_all_metadata(self) -> dict:
        """Stream the whole archive for its metadata (the index rebuild path)."""
        for _ti, fobj in self:
            if fobj is not None:
                while fobj.read(CHUNK):
                    pass
        if self.metadata_bytes is None:
            raise NotABackupError(f"{self.path}: not a backup made by this toolkit (no {METADATA_NAME} at its end)")
        return parse_metadata(self.metadata_bytes, self.path)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
