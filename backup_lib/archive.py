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

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from dataclasses import dataclass, field
from json import scanner as _json_scanner
from json.encoder import encode_basestring_ascii as _encode_ascii
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
    "iter_manifest",
    "detect_compression",
    "open_compressed_writer",
]

METADATA_NAME = "backup_metadata.json"
MANIFEST_NAME = "backup_manifest.jsonl"
TOOL_MEMBERS = (MANIFEST_NAME, METADATA_NAME)
FORMAT_VERSION = 1
BLOCK = 512
CHUNK = 1 << 20

# --compression value -> (file suffix, metadata "compression" value)
COMPRESSIONS = {"gz": (".tar.gz", "gzip"), "zst": (".tar.zst", "zstd"), "none": (".tar", "none")}
# ISA-L level 2: on real source code about 11% larger than gzip -6 (the
# target is 15%), several times faster; level 3 gains 3 points for 50% more
# time.  Two compression threads beside the one that reads and hashes.
GZIP_LEVEL = 2
GZIP_THREADS = 2
ZSTD_LEVEL = 3
ZSTD_JOB = 4 << 20

_ZERO_BLOCK = bytes(BLOCK)


def _pad(size: int) -> bytes:
    """The zeros that bring a member of ``size`` bytes to a block boundary."""
    return bytes(-size % BLOCK)


# The whole compressed file is sealed too, so that a flipped bit the
# decompressor would ignore (gzip header fields, unused deflate bits) is
# still caught: gzip carries the SHA-256 of every byte after its header in a
# FEXTRA subfield "BK" (RFC 1952; gzip and GNU tar ignore it), zstd in a
# trailing skippable frame (the zstd tool skips it).
GZIP_PREFIX = bytes.fromhex("1f8b 0804 0000 0000 00ff 2400") + b"BK" + bytes.fromhex("2000")
GZIP_HEADER_LEN = len(GZIP_PREFIX) + 32
ZSTD_SEAL_MAGIC = bytes.fromhex("502a4d18") + (36).to_bytes(4, "little") + b"BKSH"
ZSTD_SEAL_LEN = len(ZSTD_SEAL_MAGIC) + 32


_WRITEBACK = 32 << 20


class _Writeback:
    """Starts the disk writes of each finished 32 MiB of the archive while
    the rest is produced, so that the final fsync() waits for the tail only
    (the kernel would otherwise hold it all dirty until then), and lets the
    written pages go: an archive is not read back soon."""

    def __init__(self, fd: int):
        self._fd = fd
        self._written = 0
        self._kicked = 0  # bytes whose writeback was started
        self._dropped = 0

    def wrote(self, n: int) -> None:
        self._written += n
        if self._written - self._kicked >= _WRITEBACK:
            try:
                # DONTNEED starts writeback of dirty pages and drops the
                # clean ones: the window before the last is clean by now.
                os.posix_fadvise(self._fd, self._dropped, self._kicked - self._dropped, os.POSIX_FADV_DONTNEED)
                os.posix_fadvise(self._fd, self._kicked, self._written - self._kicked, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass  # an advice, nothing more
            self._dropped = self._kicked
            self._kicked = self._written


class _SealingSink(io.RawIOBase):
    """Where the compressor writes: hashes what follows the gzip header."""

    def __init__(self, fd: int, compression: str):
        self._fd = fd
        self._compression = compression
        self._hash = hashlib.sha256()
        self._first = compression == "gz"
        self._writeback = _Writeback(fd)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = len(data)
        if self._first:
            self._first = False
            if n != 10:
                raise ValueError("unexpected gzip header from the compressor")
            data = GZIP_PREFIX + bytes(32)  # patched by seal()
        else:
            self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._writeback.wrote(len(data))
        return n

    def close(self) -> None:  # the file descriptor belongs to the caller
        pass

    def seal(self) -> None:
        digest = self._hash.digest()
        if self._compression == "gz":
            os.pwrite(self._fd, digest, len(GZIP_PREFIX))
        elif self._compression == "zst":
            os.write(self._fd, ZSTD_SEAL_MAGIC + digest)


class CompressedOutput:
    """A binary stream that compresses into ``fd``; ``close()`` seals it."""

    def __init__(self, fd: int, compression: str):
        self._sink = _SealingSink(fd, compression)
        if compression == "gz":
            from isal import igzip_threaded

            self._stream = igzip_threaded.open(self._sink, "wb", compresslevel=GZIP_LEVEL, threads=GZIP_THREADS)
        elif compression == "zst":
            import zstandard

            # 4 MiB jobs with a whole-window overlap, not libzstd's 8 MiB
            # default: with large writes the default queued enough jobs to
            # take 40 MB more (163 MB peak on 100,000 files, against 120),
            # and the overlap makes the output 2% smaller than the zstd
            # tool's instead of 3.5% larger.  Decoding is unchanged.
            params = zstandard.ZstdCompressionParameters.from_level(
                ZSTD_LEVEL, threads=-1, write_checksum=True, job_size=ZSTD_JOB, overlap_log=9
            )
            cctx = zstandard.ZstdCompressor(compression_params=params)
            # Whole pieces for the compressor: three calls per file, each
            # through its multithreading bookkeeping, cost more than a copy.
            self._stream = io.BufferedWriter(cctx.stream_writer(self._sink, closefd=False), CHUNK)
        elif compression == "none":
            self._stream = io.BufferedWriter(_RawFd(fd), CHUNK)
        else:
            raise ValueError(compression)
        self.write = self._stream.write

    def close(self) -> None:
        self._stream.close()
        self._sink.seal()

    def abort(self) -> None:
        """On failure, before the caller closes the file: isal's gzip writer
        writes from threads of its own, which must not outlive the
        descriptor (its number may be reused at once)."""
        with contextlib.suppress(Exception):
            self._stream.close()  # joins those threads, even after an error


class _RawFd(io.RawIOBase):
    def __init__(self, fd: int):
        self._fd = fd
        self._writeback = _Writeback(fd)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = os.write(self._fd, data)
        self._writeback.wrote(n)
        return n

    def close(self) -> None:
        pass


def open_compressed_writer(fd: int, compression: str) -> CompressedOutput:
    return CompressedOutput(fd, compression)


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


class _SealedFile(io.RawIOBase):
    """The compressed file as the decompressor reads it, hashed on the way;
    ``ok`` tells whether it matched the seal written beside the data."""

    def __init__(self, path: str, compression: str):
        self._fh = open(path, "rb", buffering=0)
        size = os.fstat(self._fh.fileno()).st_size
        self._hash = hashlib.sha256()
        self.expected: bytes | None = None
        self._left = size
        if compression == "gz":
            head = self._fh.read(GZIP_HEADER_LEN)
            if len(head) == GZIP_HEADER_LEN and head.startswith(GZIP_PREFIX):
                self.expected = head[len(GZIP_PREFIX) :]
            self._pending = head  # the decompressor still needs the header
            self._left = size - len(head)
        else:  # zst: the seal is a trailing skippable frame
            self._pending = b""
            if size >= ZSTD_SEAL_LEN:
                self._fh.seek(size - ZSTD_SEAL_LEN)
                tail = self._fh.read(ZSTD_SEAL_LEN)
                self._fh.seek(0)
                if tail.startswith(ZSTD_SEAL_MAGIC):
                    self.expected = tail[len(ZSTD_SEAL_MAGIC) :]
                    self._left = size - ZSTD_SEAL_LEN

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._pending:
            n = min(len(b), len(self._pending))
            b[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        if self._left <= 0:
            return 0
        data = self._fh.read(min(len(b), self._left))
        self._left -= len(data)
        self._hash.update(data)
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self._left > 0 and self.read(CHUNK):
            pass

    @property
    def ok(self) -> bool:
        return self.expected is not None and self._hash.digest() == self.expected

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_decompressed(path: str, compression: str, sealed: "_SealedFile | None"):
    """The tar stream; ``sealed`` is the compressed file (None when plain)."""
    if compression == "gz":
        from isal import igzip_threaded

        return igzip_threaded.open(sealed, "rb", threads=1)
    if compression == "zst":
        return io.BufferedReader(_ZstdReader(sealed), CHUNK)
    return open(path, "rb", buffering=CHUNK)


class _ZstdReader(io.RawIOBase):
    """zstd frames, decoded; unlike zstandard's stream_reader, a frame cut
    short is an error, not a quiet end of file."""

    def __init__(self, fh):
        import zstandard

        self._fh = fh
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf and not self._eof:
            chunk = self._fh.read(CHUNK)
            if not chunk:
                if not self._dobj.eof:
                    raise EOFError("zstd frame is truncated")
                self._eof = True
                break
            if self._dobj.eof:
                if chunk.strip(b"\0"):
                    raise ValueError("data after the end of the zstd frame")
                continue
            self._buf = self._dobj.decompress(chunk)
            if self._dobj.eof and self._dobj.unused_data.strip(b"\0"):
                raise ValueError("data after the end of the zstd frame")
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


_NUL = b"\0"
_GNU_MAGIC = b"ustar  \0"


# GNU tar headers, byte for byte what tarfile's TarInfo.tobuf(GNU_FORMAT)
# writes (a test holds them equal), at a fraction of its cost per file.


def _itn(n: int, digits: int, gnu: bool = True) -> bytes:
    if 0 <= n < 8 ** (digits - 1):
        return b"%0*o\0" % (digits - 1, n)
    if not gnu:
        raise ValueError("number too large for ustar")
    return b"\x80" + n.to_bytes(digits - 1, "big") if n >= 0 else b"\xff" + (n + (1 << (8 * (digits - 1)))).to_bytes(digits - 1, "big")


def _stn(s: bytes, length: int) -> bytes:
    s = s[:length]
    return s + _NUL * (length - len(s))


def _block(name: bytes, kind: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, linkname: bytes, gnu: bool) -> bytes:
    buf = b"".join((
        _stn(name, 100), _itn(mode & 0o7777, 8, gnu), _itn(uid, 8, gnu), _itn(gid, 8, gnu),
        _itn(size, 12, gnu), _itn(mtime, 12, gnu), b"        ", kind, _stn(linkname, 100), _GNU_MAGIC,
        bytes(32), bytes(32), bytes(8), bytes(8), bytes(155),  # no device fields: we never write devices
    ))
    buf += bytes(512 - len(buf))
    chksum = sum(buf)
    return buf[:148] + b"%06o\0" % chksum + buf[155:]


def _long(value: bytes, kind: bytes) -> bytes:
    value += _NUL
    head = _block(b"././@LongLink", kind, 0, 0, 0, len(value), 0, b"", False)
    return head + value + _pad(len(value))


# The common header in one formatting step: a name and link of at most 100
# bytes, numbers that fit their octal fields.
_SIMPLE = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0        %s%s" + _GNU_MAGIC + bytes(247)
_OCTAL7, _OCTAL11 = 8**7, 8**11


def _header(name: str, kind: bytes, *, mode: int, size: int = 0, mtime: int = 0, uid: int = 0, gid: int = 0, linkname: str = "") -> bytes:
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    bname = name.encode("utf-8", "surrogateescape")
    blink = linkname.encode("utf-8", "surrogateescape") if linkname else b""
    if len(bname) <= 100 and len(blink) <= 100 and 0 <= uid < _OCTAL7 and 0 <= gid < _OCTAL7 and 0 <= size < _OCTAL11 and 0 <= mtime < _OCTAL11:
        buf = _SIMPLE % (bname.ljust(100, _NUL), mode & 0o7777, uid, gid, size, mtime, kind, blink.ljust(100, _NUL))
        return buf[:148] + b"%06o\0" % sum(buf) + buf[155:]
    out = b""
    if len(blink) > 100:
        out += _long(blink, tarfile.GNUTYPE_LONGLINK)
    if len(bname) > 100:
        out += _long(bname, tarfile.GNUTYPE_LONGNAME)
    return out + _block(bname, kind, mode, uid, gid, size, mtime, blink, True)


@dataclass
class WriteReport:
    records: dict[str, dict] = field(default_factory=dict)  # path -> record, only with keep_records
    skipped: list[dict] = field(default_factory=list)  # unreadable: {path, reason}
    changed: list[str] = field(default_factory=list)  # changed while read
    total_files: int = 0
    total_size: int = 0
    file_types: dict[str, int] = field(default_factory=dict)


def _json_str(text: str) -> bytes:
    """json.dumps(text) for a str, without its dispatch."""
    return _encode_ascii(text).encode()


class ArchiveWriter:
    """Writes a tar stream into a compressor; hashes each file as it goes."""

    def __init__(self, out, *, progress: Callable[[int, int], None] | None = None, keep_records: bool = False):
        import tempfile

        self._out = out
        self._write = out.write
        self._progress = progress
        self._links: dict[tuple[int, int], tuple[str, str]] = {}  # (dev, ino) -> (path, sha256)
        self._structure = hashlib.sha256()  # every byte but member data: headers, padding
        self.report = WriteReport()
        # Memory stays flat whatever the file count: manifest lines go to an
        # anonymous temporary file, project_hash is computed as entries come
        # (they come sorted, the order project_hash is defined in).
        self._spool = tempfile.TemporaryFile()
        self._project = hashlib.sha256()
        self._last_path = b""
        self._keep = keep_records

    def _record(self, rec: dict) -> None:
        self._spool.write(json.dumps(rec, ensure_ascii=True, separators=(",", ":")).encode() + b"\n")
        if self._keep:
            self.report.records[rec["path"]] = rec

    def _file_record(self, path: str, mode: int, mtime_ns: int, size: int, digest: str) -> None:
        """The common record, formatted directly (json.dumps per file costs)."""
        if self._keep:
            self._record({"path": path, "type": "file", "mode": mode, "mtime_ns": mtime_ns, "size": size, "sha256": digest})
            return
        self._spool.write(
            b'{"path":%s,"type":"file","mode":%d,"mtime_ns":%d,"size":%d,"sha256":"%s"}\n'
            % (_json_str(path), mode, mtime_ns, size, digest.encode())
        )

    def _struct(self, data: bytes) -> None:
        self._structure.update(data)
        self._write(data)

    # -- members -----------------------------------------------------------
    def add(self, root: str, entry: Entry) -> None:
        path = entry.path
        full = (root if root.endswith("/") else root + "/") + path
        rep = self.report
        if entry.kind == "dir":
            self._struct(_header(path, tarfile.DIRTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid))
            self._record({"path": path, "type": "dir", "mode": stat.S_IMODE(entry.mode), "mtime_ns": entry.mtime_ns})
            return
        if entry.kind == "symlink":
            try:
                target = os.readlink(full)
            except OSError as exc:
                rep.skipped.append({"path": path, "reason": exc.strerror or str(exc)})
                return
            self._struct(_header(path, tarfile.SYMTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid, linkname=target))
            self._record({"path": path, "type": "symlink", "mode": stat.S_IMODE(entry.mode), "mtime_ns": entry.mtime_ns, "target": target})
            self._count(path, "symlink:" + target)
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
                self._struct(_header(path, tarfile.LNKTYPE, mode=st.st_mode, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid, linkname=first))
                self._record({"path": path, "type": "hardlink", "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns, "target": first, "size": st.st_size, "sha256": digest})
                self._count(path, digest)
                return
            size = st.st_size
            self._struct(_header(path, tarfile.REGTYPE, mode=st.st_mode, size=size, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid))
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
            self._struct(_pad(size))
            after = os.fstat(fd)
            if changed or after.st_size != size or after.st_mtime_ns != st.st_mtime_ns:
                rep.changed.append(path)
        finally:
            os.close(fd)
        digest = h.hexdigest()
        if st.st_nlink > 1:
            self._links[key] = (path, digest)
        self._file_record(path, stat.S_IMODE(st.st_mode), st.st_mtime_ns, size, digest)
        rep.total_size += size
        self._count(path, digest)

    def _count(self, path: str, content_id: str) -> None:
        rep = self.report
        rep.total_files += 1
        base = path.rsplit("/", 1)[-1]
        dot = base.rfind(".")
        ext = base[dot:].lower() if dot > 0 else "(none)"
        rep.file_types[ext] = rep.file_types.get(ext, 0) + 1
        bpath = os.fsencode(path)
        if bpath <= self._last_path:
            raise ValueError(f"entries must come sorted by path: {path!r}")
        self._last_path = bpath
        self._project.update(project_hash_line(bpath, content_id))
        if self._progress:
            self._progress(1, 0)

    def add_manifest(self, *, mtime: int) -> str:
        """The manifest member, from the spool; returns its SHA-256."""
        spool = self._spool
        size = spool.tell()
        spool.seek(0)
        self._struct(_header(MANIFEST_NAME, tarfile.REGTYPE, mode=0o600, size=size, mtime=mtime))
        h = hashlib.sha256()
        while chunk := spool.read(CHUNK):
            h.update(chunk)
            self._write(chunk)
        spool.close()
        self._struct(_pad(size))
        return h.hexdigest()

    def add_metadata(self, metadata: dict, *, manifest_sha256: str, mtime: int) -> dict:
        """The last member: the metadata, sealed with the archive's structure
        hash, the manifest's hash and its own hash (see :func:`seal`)."""
        metadata = dict(metadata, manifest_sha256=manifest_sha256, structure_sha256=self._structure.hexdigest())
        data, metadata = seal(metadata)
        self._write(metadata_header(len(data), mtime))
        self._write(data + _pad(len(data)))
        return metadata

    def finish_hash(self) -> str:
        return self._project.hexdigest()

    def close(self) -> None:
        self._write(_ZERO_BLOCK * 2)
        self._out.close()

    def abort(self) -> None:
        self._out.abort()
        self._spool.close()


def metadata_header(size: int, mtime: int) -> bytes:
    return _header(METADATA_NAME, tarfile.REGTYPE, mode=0o600, size=size, mtime=mtime)


_SEAL_PLACEHOLDER = "0" * 64


def _dump_metadata(metadata: dict) -> bytes:
    return json.dumps(metadata, indent=2, ensure_ascii=True).encode("ascii")


def seal(metadata: dict) -> tuple[bytes, dict]:
    """Serialize with ``metadata_sha256``: the hash of the document in which
    that field holds 64 zeros.  Any changed byte fails :func:`seal_ok`."""
    metadata = dict(metadata, metadata_sha256=_SEAL_PLACEHOLDER)
    metadata["metadata_sha256"] = hashlib.sha256(_dump_metadata(metadata)).hexdigest()
    return _dump_metadata(metadata), metadata


def seal_ok(data: bytes, metadata: dict) -> bool:
    claimed = metadata.get("metadata_sha256")
    if not isinstance(claimed, str):
        return False
    unsealed = _dump_metadata(dict(metadata, metadata_sha256=_SEAL_PLACEHOLDER))
    return unsealed == data.replace(claimed.encode(), _SEAL_PLACEHOLDER.encode(), 1) and (
        hashlib.sha256(unsealed).hexdigest() == claimed
    )


def project_hash_line(path: bytes, content_id: str) -> bytes:
    """project_hash is SHA-256 over these lines, in sorted path order: equal
    for equal trees, whatever the time or compression."""
    return path + b"\0" + content_id.encode() + b"\n"


_BLANK = re.compile(r"[ \t\r]*")  # what json.loads allows around a value on one line


def iter_manifest(data: bytes):
    """The manifest's records one at a time (no list of them all).  Each
    line must be one JSON object, exactly as ``json.loads(line)`` reads it;
    the text is decoded a megabyte at a time and scanned in place rather
    than cut into lines first."""
    blank = _BLANK.match
    scan = _json_scanner.make_scanner(json.JSONDecoder())
    at = 0
    while at < len(data):
        cut = data.find(b"\n", at + CHUNK)
        cut = len(data) if cut < 0 else cut + 1
        try:
            text = data[at:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IntegrityError(f"manifest is not valid JSON lines: {exc}") from None
        base, at = at, cut
        find = text.find
        pos, n = 0, len(text)
        while pos < n:
            nl = find("\n", pos)
            if nl < 0:
                nl = n
            start = blank(text, pos).end()
            if start == nl:
                pos = nl + 1
                continue
            try:
                rec, end = scan(text, start)
            except StopIteration:
                raise IntegrityError(f"manifest is not valid JSON lines: no value at byte {base + start}") from None
            except ValueError as exc:
                raise IntegrityError(f"manifest is not valid JSON lines: {exc}") from None
            if blank(text, end).end() != nl:  # a second value, or one over two lines
                raise IntegrityError(f"manifest is not valid JSON lines: extra data at byte {base + end}")
            if not isinstance(rec, dict):
                raise IntegrityError("manifest holds something other than JSON objects")
            yield rec
            pos = nl + 1


def parse_metadata(data: bytes, path: str) -> dict:
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NotABackupError(f"{path}: {METADATA_NAME} is not valid JSON") from None
    if not isinstance(meta, dict) or "backup_type" not in meta:
        raise NotABackupError(f"{path}: {METADATA_NAME} is not backup metadata")
    return meta


# ---------------------------------------------------------------- reading

_DATA_TYPES = frozenset(tarfile.REGULAR_TYPES)

_TOOL_BUFFER_LIMIT = 512 << 20


class Member:
    """A parsed tar header: what the readers need of tarfile.TarInfo, at a
    fraction of ``TarInfo.frombuf``'s cost.  ``to_tarinfo()`` gives the real
    thing (for tarfile's data filter)."""

    __slots__ = ("name", "linkname", "type", "mode", "size", "mtime", "uid", "gid")

    def isreg(self) -> bool:
        return self.type in _DATA_TYPES

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE

    def issym(self) -> bool:
        return self.type == tarfile.SYMTYPE

    def islnk(self) -> bool:
        return self.type == tarfile.LNKTYPE

    def ischr(self) -> bool:
        return self.type == tarfile.CHRTYPE

    def isblk(self) -> bool:
        return self.type == tarfile.BLKTYPE

    def isfifo(self) -> bool:
        return self.type == tarfile.FIFOTYPE

    def to_tarinfo(self) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(self.name)
        for attr in ("linkname", "type", "mode", "size", "mtime", "uid", "gid"):
            setattr(ti, attr, getattr(self, attr))
        return ti


def _number(field: bytes) -> int:
    if field[-1:] == _NUL:  # the common case: octal digits and a NUL
        try:
            return int(field[:-1], 8)
        except ValueError:
            pass
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 (sizes over 8 GiB)
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if field[:1] == b"\xff" else n
    text = field.split(b"\0", 1)[0].strip(b" ")
    return int(text, 8) if text else 0


def parse_header(block: bytes) -> Member:
    """One 512-byte header; the checksum must match (any bit flip fails)."""
    if len(block) != BLOCK:
        raise tarfile.TruncatedHeaderError("truncated header")
    try:
        stored = _number(block[148:156])
    except ValueError:
        raise tarfile.InvalidHeaderError("bad checksum field") from None
    unsigned = sum(block) - sum(block[148:156]) + 256
    if stored != unsigned:
        raise tarfile.InvalidHeaderError("bad checksum")
    m = Member()
    try:
        m.mode = _number(block[100:108])
        m.uid = _number(block[108:116])
        m.gid = _number(block[116:124])
        m.size = _number(block[124:136])
        m.mtime = _number(block[136:148])
    except ValueError:
        raise tarfile.InvalidHeaderError("bad number field") from None
    m.type = block[156:157] or tarfile.REGTYPE
    if m.type == b"\0":
        m.type = tarfile.REGTYPE
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:265] == b"ustar\x0000":  # POSIX ustar: a name prefix
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    m.name = name.decode("utf-8", "surrogateescape")
    m.linkname = block[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return m


class _Source:
    """The decompressed tar stream, read in large pieces and cut in place:
    a member costs a few slices, not a chain of small reads.  A short read
    is truncation; whatever the decompressor raises means a corrupt archive."""

    def __init__(self, stream, path: str):
        self._read = stream.read
        self.path = path
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def read(self, n: int) -> bytes:
        pos = self._pos
        end = pos + n
        if end <= len(self._buf):
            self._pos = end
            return self._buf[pos:end]
        return self._refill(n)

    def _refill(self, n: int) -> bytes:
        rest = self._buf[self._pos :]
        base = self._base + self._pos  # stream offset of rest[0]
        parts = [rest]
        got = len(rest)
        while got < n:
            more = self._pull(max(CHUNK, n - got))
            if not more:
                raise IntegrityError(f"{self.path}: archive is truncated (at byte {base + got} of the tar stream)")
            parts.append(more)
            got += len(more)
        self._buf = rest if len(parts) == 1 else b"".join(parts)
        self._base = base
        self._pos = n
        return self._buf[:n]

    def raw_read(self, n: int) -> bytes:
        """Up to ``n`` bytes, whatever is there (the end-of-archive check)."""
        if self._pos < len(self._buf):
            data = self._buf[self._pos : self._pos + n]
            self._pos += len(data)
            return data
        data = self._pull(n)
        self._base += len(self._buf) + len(data)
        self._buf = b""
        self._pos = 0
        return data

    def _pull(self, n: int) -> bytes:
        try:
            return self._read(n)
        except (IntegrityError, PermissionError):
            raise
        except Exception as exc:
            raise IntegrityError(f"{self.path}: archive is corrupt ({_reason(exc)})") from None


class _MemberData(io.RawIOBase):
    """The data of one member: exactly ``size`` bytes of the stream."""

    def __init__(self, src: _Source, size: int):
        self._src = src
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._src.read(n)
        self._left -= n
        return data

    def drain(self) -> None:
        while self._left > 0:
            self.read(min(CHUNK, self._left))


class _SmallData:
    """The data of a member already in memory."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        data, pos = self._data, self._pos
        if n is None or n < 0 or pos + n >= len(data):
            self._pos = len(data)
            return data if pos == 0 else data[pos:]
        self._pos = pos + n
        return data[pos : pos + n]


class ArchiveReader:
    """One strict streaming pass over an archive written by this toolkit.

    Iterating yields ``(tarinfo, fileobj_or_None)`` for the project's members
    in archive order.  Every header's checksum, every padding byte and the
    end of the archive are checked on the way; afterwards ``manifest_bytes``
    and ``metadata_bytes`` hold the tool's two members (None: not a backup)
    and ``problems`` lists what does not match the metadata's seals.
    """

    def __init__(self, path: str):
        self.path = path
        self.compression = detect_compression(path)
        self.metadata_bytes: bytes | None = None
        self.manifest_bytes: bytes | None = None
        self.problems: list[str] = []
        self._sealed: _SealedFile | None = None

    def _open(self):
        try:
            if self.compression != "none":
                self._sealed = _SealedFile(self.path, self.compression)
                if self._sealed.expected is None:
                    raise IntegrityError(f"{self.path}: the {self.compression} seal is missing or damaged (not written by this toolkit, or altered)")
            return open_decompressed(self.path, self.compression, self._sealed)
        except OSError as exc:
            raise NotFoundError(f"{self.path}: {exc.strerror or exc}") from None

    def __iter__(self) -> Iterator[tuple["Member", object]]:
        stream = self._open()
        try:
            with stream:
                yield from self._members(_Source(stream, self.path))
        except (IntegrityError, NotFoundError):  # NotABackupError included
            raise
        except tarfile.TarError as exc:
            raise IntegrityError(f"{self.path}: damaged tar header ({_reason(exc)})") from None
        except (EOFError, ValueError) as exc:
            raise IntegrityError(f"{self.path}: archive is truncated or corrupt ({_reason(exc)})") from None
        except OSError as exc:
            if isinstance(exc, (PermissionError, FileNotFoundError)):
                raise NotFoundError(f"{self.path}: {exc.strerror}") from None
            raise IntegrityError(f"{self.path}: archive is corrupt ({_reason(exc)})") from None
        finally:
            if self._sealed is not None:
                self._sealed.close()

    def _members(self, src: _Source):
        structure = hashlib.sha256()
        queue: list[tuple[Member, bytes, object, bytes]] = []  # member, data, structure before, header
        while True:
            block = src.read(BLOCK)
            if block == _ZERO_BLOCK:
                break
            headers = [block]
            ti = parse_header(block)
            longname = longlink = None
            while ti.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                if ti.size > 1 << 20:
                    raise IntegrityError(f"{self.path}: implausible long-name header")
                data = src.read(_padded(ti.size))
                headers.append(data)
                value = data[: ti.size].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                if ti.type == tarfile.GNUTYPE_LONGNAME:
                    longname = value
                else:
                    longlink = value
                block = src.read(BLOCK)
                headers.append(block)
                ti = parse_header(block)
            if longname is not None:
                ti.name = longname
            if longlink is not None:
                ti.linkname = longlink
            if ti.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_SPARSE):
                raise NotABackupError(f"{self.path}: not a backup made by this toolkit (member {ti.name!r} uses a tar extension it never writes)")
            header = headers[0] if len(headers) == 1 else b"".join(headers)
            has_data = ti.type in _DATA_TYPES
            name = ti.name
            if name[-1:] == "/":
                if ti.type != tarfile.DIRTYPE:
                    raise IntegrityError(f"{self.path}: member {name!r} has a trailing slash")
                ti.name = name = name.rstrip("/")
            size = ti.size if has_data else 0
            if has_data and name in TOOL_MEMBERS and size <= _TOOL_BUFFER_LIMIT:
                before = structure.copy()
                structure.update(header)
                data = src.read(size)
                self._padding(src, size, structure)
                queue.append((ti, data, before, header))
                continue
            structure.update(header)
            for qti, qdata, _b, _h in queue:
                yield qti, _SmallData(qdata)
            queue.clear()
            if has_data and size <= CHUNK:
                padded = src.read(_padded(size))  # data and padding in one piece
                if len(padded) > size:
                    self._check_padding(padded[size:], src, structure)
                    padded = padded[:size]
                yield ti, _SmallData(padded)
            elif has_data:
                member = _MemberData(src, size)
                yield ti, member
                member.drain()
                self._padding(src, size, structure)
            else:
                if ti.size and ti.type not in (tarfile.LNKTYPE,):
                    src.read(_padded(ti.size))  # device etc.: the caller refuses it
                yield ti, None
        # End of archive: a second zero block, then only zeros to EOF.
        if src.read(BLOCK) != _ZERO_BLOCK:
            raise IntegrityError(f"{self.path}: damaged end-of-archive marker")
        while True:
            rest = src.raw_read(CHUNK)
            if not rest:
                break
            if rest.count(0) != len(rest):
                raise IntegrityError(f"{self.path}: unexpected data after the end of the archive")
        if self._sealed is not None:
            self._sealed.drain()
            if not self._sealed.ok:
                raise IntegrityError(f"{self.path}: the compressed file does not match its seal (bytes were altered)")
        names = [ti.name for ti, *_ in queue]
        if len(queue) >= 2 and names[-2:] == list(TOOL_MEMBERS):
            for qti, qdata, _b, _h in queue[:-2]:
                yield qti, _SmallData(qdata)
            self.manifest_bytes = queue[-2][1]
            meta_ti, self.metadata_bytes, meta_before, meta_header = queue[-1]
            self._check_seals(meta_ti, meta_before, meta_header)
        else:
            for qti, qdata, _b, _h in queue:
                yield qti, _SmallData(qdata)

    def _padding(self, src: _Source, size: int, structure) -> None:
        if size % BLOCK:
            self._check_padding(src.read(-size % BLOCK), src, structure)

    def _check_padding(self, pad: bytes, src: _Source, structure) -> None:
        """The padding ``src`` has just passed: zeros, part of the structure."""
        if pad.count(0) != len(pad):
            raise IntegrityError(f"{self.path}: damaged padding after a member (byte {src.offset - len(pad)})")
        structure.update(pad)

    def _check_seals(self, meta_ti, structure_before, header: bytes) -> None:
        try:
            meta = json.loads(self.metadata_bytes)
        except ValueError:
            self.problems.append(f"{METADATA_NAME} is not valid JSON")
            return
        if not isinstance(meta, dict):
            self.problems.append(f"{METADATA_NAME} is not a JSON object")
            return
        # Every archive this toolkit writes is sealed: a missing seal (a key
        # name altered by one bit, say) is a problem like a wrong one.
        if not seal_ok(self.metadata_bytes, meta):
            self.problems.append(f"{METADATA_NAME} does not match its own metadata_sha256 (it was altered)")
        if header != metadata_header(len(self.metadata_bytes), meta_ti.mtime):
            self.problems.append(f"the tar header of {METADATA_NAME} is damaged")
        if meta.get("structure_sha256") != structure_before.hexdigest():
            self.problems.append("tar headers or padding differ from what was written (structure_sha256)")
        if meta.get("manifest_sha256") != hashlib.sha256(self.manifest_bytes or b"").hexdigest():
            self.problems.append(f"{MANIFEST_NAME} does not match manifest_sha256 (it was altered)")

    def read_all_metadata(self) -> dict:
        """Stream the whole archive for its metadata (the index rebuild path)."""
        for _ti, fobj in self:
            if fobj is not None:
                while fobj.read(CHUNK):
                    pass
        if self.metadata_bytes is None:
            raise NotABackupError(f"{self.path}: not a backup made by this toolkit (no {METADATA_NAME} at its end)")
        return parse_metadata(self.metadata_bytes, self.path)


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
