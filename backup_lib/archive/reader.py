"""Reading an archive: one strict streaming pass that checks every header,
every padding byte, the end of the archive and the seals, and hands each
member's data on as it goes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Iterator

from ..errors import IntegrityError, NotABackupError, NotFoundError
from .manifest import MANIFEST_NAME, METADATA_NAME, TOOL_MEMBERS, parse_metadata
from .seals import metadata_header, seal_ok
from .streams import CHUNK, SealedFile, detect_compression, open_decompressed
from .tar import BLOCK, DATA_TYPES, ZERO_BLOCK, Member, padded, parse_header

__all__ = ["ArchiveReader", "Source", "SmallData"]

_TOOL_BUFFER_LIMIT = 512 << 20


class Source:
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

    def __init__(self, src: Source, size: int):
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


class SmallData:
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
        self._sealed: SealedFile | None = None

    def _open(self):
        try:
            if self.compression != "none":
                self._sealed = SealedFile(self.path, self.compression)
                if self._sealed.expected is None:
                    raise IntegrityError(f"{self.path}: the {self.compression} seal is missing or damaged (not written by this toolkit, or altered)")
            return open_decompressed(self.path, self.compression, self._sealed)
        except OSError as exc:
            raise NotFoundError(f"{self.path}: {exc.strerror or exc}") from None

    def __iter__(self) -> Iterator[tuple[Member, object]]:
        stream = self._open()
        try:
            with stream:
                yield from self._members(Source(stream, self.path))
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

    def _members(self, src: Source):
        structure = hashlib.sha256()
        queue: list[tuple[Member, bytes, object, bytes]] = []  # member, data, structure before, header
        while True:
            block = src.read(BLOCK)
            if block == ZERO_BLOCK:
                break
            headers = [block]
            ti = parse_header(block)
            longname = longlink = None
            while ti.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                if ti.size > 1 << 20:
                    raise IntegrityError(f"{self.path}: implausible long-name header")
                data = src.read(padded(ti.size))
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
            has_data = ti.type in DATA_TYPES
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
                yield qti, SmallData(qdata)
            queue.clear()
            if has_data and size <= CHUNK:
                piece = src.read(padded(size))  # data and padding in one piece
                if len(piece) > size:
                    self._check_padding(piece[size:], src, structure)
                    piece = piece[:size]
                yield ti, SmallData(piece)
            elif has_data:
                member = _MemberData(src, size)
                yield ti, member
                member.drain()
                self._padding(src, size, structure)
            else:
                if ti.size and ti.type not in (tarfile.LNKTYPE,):
                    src.read(padded(ti.size))  # device etc.: the caller refuses it
                yield ti, None
        # End of archive: a second zero block, then only zeros to EOF.
        if src.read(BLOCK) != ZERO_BLOCK:
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
                yield qti, SmallData(qdata)
            self.manifest_bytes = queue[-2][1]
            meta_ti, self.metadata_bytes, meta_before, meta_header = queue[-1]
            self._check_seals(meta_ti, meta_before, meta_header)
        else:
            for qti, qdata, _b, _h in queue:
                yield qti, SmallData(qdata)

    def _padding(self, src: Source, size: int, structure) -> None:
        if size % BLOCK:
            self._check_padding(src.read(-size % BLOCK), src, structure)

    def _check_padding(self, pad: bytes, src: Source, structure) -> None:
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



def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
