"""Compression streams: the compressed file written and read around the tar
stream (plain, gzip through ISA-L, zstd), and the seal over the compressed
bytes that each carries.

The whole compressed file is sealed, so that a flipped bit the decompressor
would ignore (gzip header fields, unused deflate bits) is still caught: gzip
carries the SHA-256 of every byte after its header in a FEXTRA subfield "BK"
(RFC 1952; gzip and GNU tar ignore it), zstd in a trailing skippable frame
(the zstd tool skips it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os

from ..errors import NotFoundError

__all__ = [
    "CHUNK",
    "COMPRESSIONS",
    "CompressedOutput",
    "SealedStream",
    "compression_of",
    "open_compressed_writer",
    "open_decompressed",
    "detect_compression",
]

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


class _Plain(io.RawIOBase):
    """Where the compressor writes when an encryption layer follows: no seal
    of its own (age authenticates every chunk and the end of the file)."""

    def __init__(self, target):
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self._target.write(data)

    def close(self) -> None:
        pass

    def seal(self) -> None:
        pass


class CompressedOutput:
    """A binary stream that compresses into ``fd``; ``close()`` seals it.

    With ``encrypt_to`` (age recipients), the compressed stream goes into
    the age layer instead, and ``ciphertext_sha256`` is the SHA-256 of the
    file once closed; the compressed stream then carries no seal of its own."""

    def __init__(self, fd: int, compression: str, *, encrypt_to=None):
        self._age = None
        self.ciphertext_sha256: str | None = None
        if encrypt_to:
            from .crypto import EncryptingSink

            self._age = EncryptingSink(fd, list(encrypt_to))
            self._sink = _Plain(self._age)
        else:
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
            self._stream = io.BufferedWriter(self._sink if self._age is not None else _RawFd(fd), CHUNK)
        else:
            raise ValueError(compression)
        self.write = self._stream.write

    def close(self) -> None:
        self._stream.close()
        self._sink.seal()
        if self._age is not None:
            self._age.close()  # waits for the age writer to finish the file
            self.ciphertext_sha256 = self._age.sha256

    def abort(self) -> None:
        """On failure, before the caller closes the file: isal's gzip writer
        writes from threads of its own, and the age writer from a process of
        its own: neither may outlive the descriptor (its number may be
        reused at once)."""
        with contextlib.suppress(Exception):
            self._stream.close()  # joins those threads, even after an error
        if self._age is not None:
            with contextlib.suppress(Exception):
                self._age.abort()


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


def open_compressed_writer(fd: int, compression: str, *, encrypt_to=None) -> CompressedOutput:
    return CompressedOutput(fd, compression, encrypt_to=encrypt_to)


def compression_of(magic: bytes) -> str:
    """gz, zst or none, from a stream's first bytes."""
    if magic[:2] == b"\x1f\x8b":
        return "gz"
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        return "zst"
    return "none"


def detect_compression(path: str) -> str:
    """gz, zst or none, from the file's first bytes."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise NotFoundError(f"{path}: {exc.strerror}") from None
    return compression_of(magic)


class SealedStream(io.RawIOBase):
    """The compressed stream as the decompressor reads it, hashed on the way;
    ``ok`` tells, once it is read to its end, whether it matched the seal
    written with the data: in the gzip header (read first), or in the
    trailing zstd frame (the last bytes are held back until the end, so that
    a file and a stream from a remote read alike, without seeking)."""

    def __init__(self, raw, compression: str):
        self._raw = raw
        self._hash = hashlib.sha256()
        self.expected: bytes | None = None
        self._zst = compression == "zst"
        self._tail = b""  # zst: the last bytes read, maybe the seal
        self._done = False
        self._pending = b""
        if compression == "gz":
            head = _read_exactly(raw, GZIP_HEADER_LEN)
            if len(head) == GZIP_HEADER_LEN and head.startswith(GZIP_PREFIX):
                self.expected = head[len(GZIP_PREFIX) :]
            self._pending = head  # the decompressor still needs the header

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._pending:
            n = min(len(b), len(self._pending))
            b[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        if self._done:
            return 0
        data = self._raw.read(max(len(b), ZSTD_SEAL_LEN + 1))
        if not self._zst:
            if not data:
                self._done = True
                return 0
            self._hash.update(data)
            self._pending = data
            return self.readinto(b)
        if not data:
            self._done = True
            tail, self._tail = self._tail, b""
            if len(tail) == ZSTD_SEAL_LEN and tail.startswith(ZSTD_SEAL_MAGIC):
                self.expected = tail[len(ZSTD_SEAL_MAGIC) :]
                return 0
            self._hash.update(tail)  # no seal: the decompressor gets every byte
            self._pending = tail
            return self.readinto(b) if tail else 0
        joined = self._tail + data
        out, self._tail = joined[:-ZSTD_SEAL_LEN], joined[-ZSTD_SEAL_LEN:]
        self._hash.update(out)
        self._pending = out
        return self.readinto(b)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def ok(self) -> bool:
        return self.expected is not None and self._hash.digest() == self.expected

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()
        super().close()


def _read_exactly(raw, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        piece = raw.read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def open_decompressed(raw, compression: str):
    """The tar stream from ``raw``, a readable stream of the compressed bytes."""
    if compression == "gz":
        from isal import igzip_threaded

        return igzip_threaded.open(raw, "rb", threads=1)
    if compression == "zst":
        return io.BufferedReader(_ZstdReader(raw), CHUNK)
    return raw


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_BLOCK_MAX = 128 << 10  # no zstd block holds more (RFC 8878, Block_Maximum_Size)
_ZSTD_BLOCKS = 32  # blocks handed to the decompressor at once: at most 4 MiB out


class _ZstdReader(io.RawIOBase):
    """One zstd frame, decoded; unlike zstandard's stream_reader, a frame cut
    short is an error, not a quiet end of file.

    The decompressor returns everything a piece of input makes, and a zstd
    block of 4 bytes can make 128 KiB: a 1 MiB read could have become 32 GB.
    So the frame's block headers are read here and the decompressor gets at
    most _ZSTD_BLOCKS blocks at a time; memory stays bounded whatever the
    ratio."""

    def __init__(self, fh):
        import zstandard

        self._fh = fh
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._in = bytearray()  # compressed bytes read and not yet decompressed
        self._state = "header"  # then "block", "checksum", "done"
        self._checksum = False
        self._buf = memoryview(b"")  # decompressed, handed out from _off on
        self._off = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _have(self, n: int) -> None:
        """At least ``n`` compressed bytes at hand (the frame must hold them)."""
        while len(self._in) < n:
            chunk = self._fh.read(max(CHUNK, n - len(self._in)))
            if not chunk:
                raise EOFError("zstd frame is truncated")
            self._in += chunk

    def _piece(self) -> bytes:
        """The next compressed bytes, up to _ZSTD_BLOCKS whole blocks."""
        end = blocks = 0
        while blocks < _ZSTD_BLOCKS and self._state != "done":
            if self._state == "header":
                self._have(5)
                if self._in[:4] != _ZSTD_MAGIC:
                    raise ValueError("not a zstd frame")
                fhd = self._in[4]
                if fhd & 0x08:
                    raise ValueError("zstd frame header has its reserved bit set")
                single = fhd & 0x20
                fcs = (0, 2, 4, 8)[fhd >> 6] or (1 if single else 0)
                end = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
                self._checksum = bool(fhd & 0x04)
                self._state = "block"
            elif self._state == "block":
                self._have(end + 3)
                head = int.from_bytes(self._in[end : end + 3], "little")
                kind, size = (head >> 1) & 3, head >> 3
                if kind == 3 or size > _ZSTD_BLOCK_MAX:
                    raise ValueError("corrupt zstd block header")
                end += 3 + (1 if kind == 1 else size)  # an RLE block holds one byte
                blocks += 1
                if head & 1:  # the last block
                    self._state = "checksum" if self._checksum else "done"
            else:
                end += 4
                self._state = "done"
        self._have(end)
        piece = bytes(self._in[:end])
        del self._in[:end]
        return piece

    def _rest_is_zeros(self) -> None:
        if self._in.count(0) != len(self._in):
            raise ValueError("data after the end of the zstd frame")
        while chunk := self._fh.read(CHUNK):
            if chunk.count(0) != len(chunk):
                raise ValueError("data after the end of the zstd frame")

    def readinto(self, b) -> int:
        while self._off >= len(self._buf) and not self._eof:
            if self._state == "done":
                if not self._dobj.eof:
                    raise ValueError("zstd frame is corrupt")
                self._rest_is_zeros()
                self._eof = True
                break
            self._buf = memoryview(self._dobj.decompress(self._piece()))
            self._off = 0
        n = min(len(b), len(self._buf) - self._off)
        b[:n] = self._buf[self._off : self._off + n]
        self._off += n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()
