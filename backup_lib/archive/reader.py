"""Reading an archive: one strict streaming pass that checks every header,
every padding byte, the end of the archive and the seals, and hands each
member's data on as it goes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from typing import Iterator

from ..errors import BackupError, IntegrityError, NotABackupError, NotFoundError, UnsafeArchiveError, UsageError
from .manifest import MANIFEST_NAME, METADATA_NAME, TOOL_MEMBERS, parse_metadata
from .seals import metadata_header, seal_ok
from .streams import CHUNK, SealedStream, compression_of, open_decompressed
from .tar import BLOCK, DEVICE_TYPES, LONG_TYPES, ZERO_BLOCK, HeaderError, Member, padded, parse_header

__all__ = ["ArchiveReader", "IdentityNeededError", "Source", "SmallData", "MANIFEST_LIMIT", "METADATA_LIMIT", "LONG_NAME_LIMIT"]

# What the reader holds in memory at most, whatever the input.  The
# manifest takes about 200 bytes an entry (20 MB for 100,000 files), so
# 512 MiB is about 2.5 million entries; the metadata is a few kB, more only
# with long lists of skipped or changed files.  A member named like the
# tool's own but larger is streamed as the project's own file.
MANIFEST_LIMIT = 512 << 20
METADATA_LIMIT = 64 << 20
# A name or link target in a GNU long-name record, in bytes: above every
# PATH_MAX (4096 on Linux); whether a name fits this system is checked later.
LONG_NAME_LIMIT = 8192
_FORMAT = {"gz": "gzip", "zst": "zstd"}


class IdentityNeededError(UsageError):
    """An encrypted archive, and no identity to open it with (exit 2)."""


_KIND = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "directory", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hard link"}


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

    def read_whole(self, n: int) -> bytes | bytearray:
        """``n`` bytes for keeping (the manifest): a large read grows one
        buffer a piece at a time instead of joining pieces into a copy, so
        it costs its own size once, not twice."""
        if n <= CHUNK or self._pos + n <= len(self._buf):
            return self.read(n)
        out = bytearray(self._buf[self._pos :])
        self._base += len(self._buf)
        self._buf, self._pos = b"", 0
        while len(out) < n:
            more = self._pull(min(CHUNK, n - len(out)))
            if not more:
                raise IntegrityError(f"{self.path}: archive is truncated (at byte {self._base} of the tar stream)")
            out += more
            self._base += len(more)
        if len(out) > n:  # (the pull gave more than asked: keep the rest as the buffer)
            self._buf = bytes(out[n:])
            self._base -= len(self._buf)
            del out[n:]
        return out

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
        except (BackupError, PermissionError):  # the archive's own errors, a wrong identity
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

    def __init__(self, path: str, *, stream=None, identity_file: str | None = None):
        """``path`` names the archive (and is read, unless ``stream`` gives
        its bytes: a remote object, say); an archive encrypted with age needs
        ``identity_file``."""
        self.path = path
        self.stream = stream
        self.identity_file = identity_file
        self.compression: str | None = None  # gz, zst or none, once opened
        self.encrypted = False
        self.metadata_bytes: bytes | None = None
        self.manifest_bytes: bytes | None = None
        self.problems: list[str] = []
        self._sealed: SealedStream | None = None
        self._size: int | None = None  # the tar stream's length, when known (uncompressed)

    def _open(self):
        """The tar stream, peeled from the outside in: the file (or stream),
        the age layer, the compression and its seal."""
        from .crypto import AGE_MAGIC, DecryptingSource

        try:
            raw = self.stream if self.stream is not None else open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise NotFoundError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            outer = io.BufferedReader(raw, CHUNK) if not hasattr(raw, "peek") else raw
            if outer.peek(len(AGE_MAGIC))[: len(AGE_MAGIC)] == AGE_MAGIC:
                self.encrypted = True
                if not self.identity_file:
                    raise IdentityNeededError(f"{self.path} is encrypted: give the key with --identity FILE (or backup.identity_file)")
                if self.stream is None:
                    raw.close()  # the age reader reads the file itself
                    source = DecryptingSource(self.path, self.identity_file)
                else:
                    source = DecryptingSource(self.path, self.identity_file, stream=outer)
                inner = io.BufferedReader(source, CHUNK)
            else:
                inner = outer
            self.compression = compression_of(inner.peek(4)[:4])
            if self.compression == "none":
                if not self.encrypted and self.stream is None:
                    self._size = os.fstat(raw.fileno()).st_size
                return inner
            if self.encrypted:
                return open_decompressed(inner, self.compression)  # age authenticates every byte
            self._sealed = SealedStream(inner, self.compression)
            if self.compression == "gz" and self._sealed.expected is None:
                raise IntegrityError(f"{self.path}: the gzip seal is missing or damaged (not written by this toolkit, or altered)")
            return open_decompressed(self._sealed, self.compression)
        except OSError as exc:
            raw.close()
            raise NotFoundError(f"{self.path}: {exc.strerror or exc}") from None
        except BaseException:
            raw.close()
            raise

    def __iter__(self) -> Iterator[tuple[Member, object]]:
        stream = self._open()
        try:
            with stream:
                yield from self._members(Source(stream, self.path))
        except BackupError:  # IntegrityError, NotABackupError, NotFoundError, a wrong identity …
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
        """Each member once, in order.  Memory stays bounded whatever the
        input: member data streams (or comes in one piece of at most CHUNK),
        and of the members named like the tool's own at most the last two
        are held, within MANIFEST_LIMIT and METADATA_LIMIT."""
        structure = hashlib.sha256()
        held: list[tuple[Member, bytes, object, bytes]] = []  # member, data, structure before, header
        oversized = None  # the last member, when it was named like a tool member but too large to be one
        first = True
        while True:
            block = src.read(BLOCK) if not first else self._first_block(src)
            if block == ZERO_BLOCK:
                break
            ti, header = self._header(src, block, first)
            first = False
            name = ti.name
            size = ti.size
            has_data = ti.type == tarfile.REGTYPE
            # A manifest too large to hold, and the metadata after it.
            oversized = oversized if oversized and oversized[0] == MANIFEST_NAME and name == METADATA_NAME else None
            if has_data and name in TOOL_MEMBERS:
                limit = MANIFEST_LIMIT if name == MANIFEST_NAME else METADATA_LIMIT
                if size <= limit and (name == MANIFEST_NAME or (len(held) == 1 and held[0][0].name == MANIFEST_NAME)):
                    if name == MANIFEST_NAME:
                        yield from self._release(held)
                    before = structure.copy()
                    structure.update(header)
                    data = src.read_whole(size)
                    self._padding(src, size, structure)
                    held.append((ti, data, before, header))
                    continue
                if size > limit and oversized is None:
                    oversized = (name, size, limit)
            structure.update(header)
            yield from self._release(held)
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
            if self._sealed.expected is None:
                raise IntegrityError(f"{self.path}: the {self.compression} seal is missing or damaged (not written by this toolkit, or altered)")
            if not self._sealed.ok:
                raise IntegrityError(f"{self.path}: the compressed file does not match its seal (bytes were altered)")
        if [ti.name for ti, *_ in held] == list(TOOL_MEMBERS):
            self.manifest_bytes = held[0][1]
            meta_ti, self.metadata_bytes, meta_before, meta_header = held[1]
            self._check_seals(meta_ti, meta_before, meta_header)
            return
        yield from self._release(held)
        if oversized is not None:
            name, size, limit = oversized
            raise IntegrityError(f"{self.path}: its member {name!r} has {size:,} bytes, over the reader's limit of {limit:,} for the toolkit's own members")

    @staticmethod
    def _release(held: list):
        """Members held as possibly the tool's own turned out to be the
        project's: hand them on."""
        for ti, data, _before, _header in held:
            yield ti, SmallData(data)
        held.clear()

    def _first_block(self, src: Source) -> bytes:
        """The first header: a file that is not a tar at all says so."""
        try:
            block = src.read(BLOCK)
        except IntegrityError:
            if self.compression == "none":
                raise NotABackupError(f"{self.path}: not a gzip, zstd or tar archive") from None
            raise
        return block

    def _parse(self, src: Source, block: bytes, first: bool) -> Member:
        try:
            return parse_header(block)
        except HeaderError as exc:
            if first and exc.kind == "checksum" and self.compression == "none":
                raise NotABackupError(f"{self.path}: not a gzip, zstd or tar archive") from None
            if first and exc.kind == "checksum":
                raise NotABackupError(f"{self.path}: its {_FORMAT[self.compression]} data is not a tar archive") from None
            at = src.offset - BLOCK
            if exc.kind == "format":
                raise NotABackupError(f"{self.path}: not a backup made by this toolkit ({exc}, at byte {at} of the tar stream)") from None
            raise IntegrityError(f"{self.path}: damaged tar header ({exc}, at byte {at} of the tar stream)") from None

    def _header(self, src: Source, block: bytes, first: bool) -> tuple[Member, bytes]:
        """One member's header: its own block and any GNU long-name (``L``)
        and long-link (``K``) records before it, at most one of each.  Every
        size is checked before anything is read, so every read moves on."""
        ti = self._parse(src, block, first)
        headers = [block]
        longname = longlink = None
        while ti.type in LONG_TYPES:
            is_name = ti.type == tarfile.GNUTYPE_LONGNAME
            what = "long-name" if is_name else "long-link"
            if (longname if is_name else longlink) is not None:
                raise NotABackupError(f"{self.path}: not a backup made by this toolkit (two {what} records for one member)")
            if not 2 <= ti.size <= LONG_NAME_LIMIT + 1:
                raise IntegrityError(f"{self.path}: a {what} record of {ti.size} bytes (the limit is {LONG_NAME_LIMIT + 1})")
            data = src.read(padded(ti.size))
            value = data[: ti.size]
            if value.find(b"\0") != ti.size - 1:
                raise NotABackupError(f"{self.path}: not a backup made by this toolkit (a {what} record with a NUL inside or none at its end)")
            if data.count(0, ti.size) != len(data) - ti.size:
                raise IntegrityError(f"{self.path}: damaged padding after a {what} record (byte {src.offset - len(data) + ti.size})")
            text = value[:-1].decode("utf-8", "surrogateescape")
            if is_name:
                longname = text
            else:
                longlink = text
            headers.append(data)
            block = src.read(BLOCK)
            if block == ZERO_BLOCK:
                raise NotABackupError(f"{self.path}: not a backup made by this toolkit (a {what} record with no member after it)")
            headers.append(block)
            ti = self._parse(src, block, False)
        if longname is not None:
            ti.name = longname
        if longlink is not None:
            ti.linkname = longlink
        self._check_member(src, ti, longlink is not None)
        return ti, headers[0] if len(headers) == 1 else b"".join(headers)

    def _check_member(self, src: Source, ti: Member, longlink: bool) -> None:
        """What every tar must read the same way: the type, a size that
        data follows only for files, the name's trailing slash."""
        kind = ti.type
        name = ti.name
        if kind in DEVICE_TYPES:
            raise UnsafeArchiveError(f"{self.path}: member {name!r} is a device or FIFO")
        if ti.size and kind != tarfile.REGTYPE:
            # GNU tar and tarfile read whatever follows as further members.
            raise IntegrityError(f"{self.path}: member {name!r} is a {_KIND[kind]} with a size of {ti.size} bytes (only files have data)")
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            if not ti.linkname:
                raise IntegrityError(f"{self.path}: member {name!r} is a {_KIND[kind]} with an empty target")
        elif ti.linkname or longlink:
            raise NotABackupError(f"{self.path}: not a backup made by this toolkit (member {name!r} is a {_KIND[kind]} with a link target)")
        if kind == tarfile.DIRTYPE:
            if name[-1:] != "/" or name[-2:] == "//":
                raise NotABackupError(f"{self.path}: not a backup made by this toolkit (directory {name!r} does not end in exactly one '/')")
            ti.name = name[:-1]
        elif name[-1:] == "/":
            raise IntegrityError(f"{self.path}: member {name!r} has a trailing slash")
        if self._size is not None and kind == tarfile.REGTYPE and src.offset + ti.size > self._size:
            raise IntegrityError(f"{self.path}: member {name!r} claims {ti.size} bytes, past the end of the archive (archive is truncated)")

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
