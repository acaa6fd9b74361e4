"""The storage interface, and what its backends share.

A storage keeps objects under keys (``myapp/project/myapp_project_….tar.gz``),
relative to the remote's own prefix or folder, and knows nothing of what
they hold.  Every object is written whole or not at all: it appears under
its key only when complete, and the SHA-256 of its bytes is recorded with it
(S3 object metadata, a ``sha256sum`` line beside a folder's file).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import queue
import re
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from ..errors import IntegrityError, UsageError

__all__ = [
    "MIN_PART_SIZE",
    "MAX_PARTS",
    "ObjectInfo",
    "Incomplete",
    "ObjectStream",
    "HashingReader",
    "Storage",
    "TransferSettings",
    "check_key",
    "sha256_checksum",
    "composite_checksum",
    "checksums_agree",
    "digest_file",
]

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (except the last)
MAX_PARTS = 10_000  # S3's most parts in one upload
MAX_SINGLE_PUT = 5 * (1 << 30)  # S3's largest single PUT
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object.

    ``sha256``: hex digest recorded at upload (None when the object was
    not written by this toolkit, or a listing does not carry it).
    ``checksum``: the storage's own checksum of the bytes it holds, where
    it keeps one: ``sha256:<base64>`` over the whole object, or
    ``sha256:<base64>-<parts>`` over the parts' SHA-256s (S3 multipart).
    ``etag``: changes whenever the object does.
    ``content_sha256``: hex SHA-256 of the bytes as they are now, read and
    hashed by :meth:`Storage.stat_checksum` on a storage that keeps no
    checksum of its own (a folder); None otherwise."""

    key: str
    size: int
    sha256: str | None = None
    checksum: str | None = None
    etag: str | None = None
    mtime: float | None = None
    content_sha256: str | None = None

    def as_dict(self) -> dict:
        return {"key": self.key, "size": self.size, "sha256": self.sha256, "checksum": self.checksum, "etag": self.etag,
                "mtime": self.mtime, "content_sha256": self.content_sha256}


@dataclass(frozen=True, slots=True)
class Incomplete:
    """An upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: float | None  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """How large files travel: the same knobs as boto3's TransferConfig."""

    multipart_threshold: int = 16 * MiB
    part_size: int = 16 * MiB
    max_concurrency: int = 8

    def __post_init__(self):
        if not isinstance(self.part_size, int) or self.part_size < MIN_PART_SIZE:
            raise UsageError(f"part_size must be at least {MIN_PART_SIZE} bytes (5 MiB, S3's smallest part), got {self.part_size!r}")
        if not isinstance(self.multipart_threshold, int) or not 0 <= self.multipart_threshold <= MAX_SINGLE_PUT:
            raise UsageError(f"multipart_threshold must be between 0 and 5 GiB, got {self.multipart_threshold!r}")
        if not isinstance(self.max_concurrency, int) or not 1 <= self.max_concurrency <= 64:
            raise UsageError(f"max_concurrency must be between 1 and 64, got {self.max_concurrency!r}")

    def part_size_for(self, size: int) -> int:
        """The configured part size, grown (in whole MiB) to fit S3's 10,000 parts."""
        part = self.part_size
        if -(-size // part) > MAX_PARTS:
            part = -(-size // MAX_PARTS)
            part = -(-part // MiB) * MiB
        return part


def check_key(key: str) -> str:
    """A relative key of plain segments: no '', '.', '..', NUL or leading '/'."""
    if not isinstance(key, str) or not key or len(key.encode()) > 900 or "\0" in key or "\\" in key:
        raise UsageError(f"invalid object key {key!r}")
    for seg in key.split("/"):
        if seg in ("", ".", ".."):
            raise UsageError(f"invalid object key {key!r}")
    return key


def sha256_checksum(digest: bytes) -> str:
    """The storage-checksum form of a whole object's SHA-256."""
    return "sha256:" + base64.b64encode(digest).decode()


def composite_checksum(part_digests: list[bytes]) -> str:
    """S3's checksum of a multipart object: the SHA-256 of its parts' SHA-256s."""
    return sha256_checksum(hashlib.sha256(b"".join(part_digests)).digest()) + f"-{len(part_digests)}"


def _checksum_value(checksum: str) -> str:
    value = checksum.split(":", 1)[-1]
    return value.split("-", 1)[0]  # some servers leave out the "-<parts>" suffix


def checksums_agree(a: str | None, b: str | None) -> bool | None:
    """True or False when both are known, None when either is not."""
    if not a or not b:
        return None
    return _checksum_value(a) == _checksum_value(b)


def is_sha256_hex(value) -> bool:
    return isinstance(value, str) and bool(_HEX64.match(value))


def digest_file(fd: int, size: int, part_size: int | None = None, *, chunk: int = 4 * MiB,
                stop: threading.Event | None = None) -> tuple[str, list[bytes] | None]:
    """SHA-256 of the first ``size`` bytes of ``fd`` (read with pread), and
    with ``part_size`` also each part's SHA-256, hashed on a second thread
    (hashlib releases the GIL) so both take the time of one.  ``stop``:
    raise KeyboardInterrupt as soon as it is set."""
    whole = hashlib.sha256()
    chunks: queue.Queue | None = None
    parts: list[bytes] | None = None
    worker = None
    if part_size:
        chunks, parts = queue.Queue(maxsize=2), []

        def hash_parts() -> None:
            h, filled = hashlib.sha256(), 0
            while True:
                data = chunks.get()
                if data is None:
                    break
                view = memoryview(data)
                while view:
                    take = min(len(view), part_size - filled)
                    h.update(view[:take])
                    filled += take
                    view = view[take:]
                    if filled == part_size:
                        parts.append(h.digest())
                        h, filled = hashlib.sha256(), 0
            if filled:
                parts.append(h.digest())

        worker = threading.Thread(target=hash_parts, name="part-hasher", daemon=True)
        worker.start()
    try:
        offset = 0
        while offset < size:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            data = os.pread(fd, min(chunk, size - offset), offset)
            if not data:
                raise IntegrityError(f"the file shrank while it was read ({offset} of {size} bytes)")
            if chunks is not None:
                chunks.put(data)
            whole.update(data)
            offset += len(data)
    finally:
        if worker is not None:
            chunks.put(None)
            worker.join()
    return whole.hexdigest(), parts


class ObjectStream(io.RawIOBase):
    """An object opened for reading: ``size`` and the ``sha256`` recorded
    at upload are known before the first byte.  Errors while reading are
    the storage's one-line errors."""

    def __init__(self, raw, *, key: str, size: int, sha256: str | None, translate: Callable[[BaseException], BaseException] | None = None):
        super().__init__()
        self._raw = raw
        self.key = key
        self.size = size
        self.sha256 = sha256
        self._translate = translate
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        want = len(b)
        try:
            data = self._raw.read(want)
        except Exception as exc:
            if self._translate is None:
                raise
            raise self._translate(exc) from None
        n = len(data)
        b[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            except Exception:
                pass
        super().close()


class HashingReader(io.RawIOBase):
    """Hashes what passes through it; ``finish()`` reads what is left and
    checks size and SHA-256 against the expected ones."""

    def __init__(self, raw: BinaryIO, *, size: int | None, sha256: str | None, what: str):
        super().__init__()
        self._raw = raw
        self._hash = hashlib.sha256()
        self.count = 0
        self.size = size
        self.sha256 = sha256
        self.what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._raw.readinto(b)
        if n:
            self._hash.update(memoryview(b)[:n])
            self.count += n
        return n or 0

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> list[str]:
        """Drain the rest; the problems found (empty when all agree)."""
        buf = bytearray(1 << 20)
        while self.readinto(buf):
            pass
        problems = []
        if self.size is not None and self.count != self.size:
            problems.append(f"{self.what}: {self.count} bytes read, {self.size} expected")
        if self.sha256 and self._hash.hexdigest() != self.sha256:
            problems.append(f"{self.what}: SHA-256 of the bytes read is {self._hash.hexdigest()}, {self.sha256} was recorded at upload")
        return problems


class Storage:
    """What every backend offers.  Keys are relative to the remote's prefix
    (S3) or folder; errors are :class:`~backup_lib.errors.RemoteError`\\ s
    whose one-line message names the remote (``label``) and the cause."""

    kind = "?"
    url = ""
    label = ""

    @property
    def stopping(self) -> threading.Event:
        """Set by :meth:`interrupt`: every upload in flight stops and is
        aborted (nothing partial stays visible)."""
        event = self.__dict__.get("_stopping")
        if event is None:
            event = self.__dict__.setdefault("_stopping", threading.Event())
        return event

    def interrupt(self, on: bool = True) -> None:
        if on:
            self.stopping.set()
        else:
            self.stopping.clear()

    # -- writing -------------------------------------------------------------
    def put_file(self, key: str, path: str, *, size: int | None = None, sha256: str | None = None, progress: Progress | None = None) -> ObjectInfo:
        """Store a local file.  ``sha256``: its digest when already known
        (else computed here, and returned in the ObjectInfo); ``size``: the
        size the caller expects (a file that no longer has it is refused)."""
        raise NotImplementedError

    def put_stream(self, key: str, stream: BinaryIO, *, size: int, sha256: str, progress: Progress | None = None) -> ObjectInfo:
        """Store ``size`` bytes read from ``stream``; nothing is stored unless
        they have exactly that size and SHA-256."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self.put_stream(key, io.BytesIO(data), size=len(data), sha256=hashlib.sha256(data).hexdigest())

    # -- reading -------------------------------------------------------------
    def open(self, key: str) -> ObjectStream:
        """The object as a readable stream with its size (the hook that a
        streaming verify or restore reads from)."""
        raise NotImplementedError

    def get_bytes(self, key: str, *, limit: int | None = None) -> bytes:
        """The whole object; with ``limit``, one larger than that is an
        IntegrityError (exit 4), found before it is read into memory."""
        with self.open(key) as stream:
            if limit is None:
                return stream.read()
            if stream.size > limit:
                raise IntegrityError(f"{self.label}: {key} is {stream.size} bytes, more than the {limit} it may have: not a backup's")
            data = bytearray()
            while True:  # a read may return less than asked: read to the end, never past the limit
                chunk = stream.read(min(1 << 20, limit + 1 - len(data)))
                if not chunk:
                    return bytes(data)
                data += chunk
                if len(data) > limit:
                    raise IntegrityError(f"{self.label}: {key} is more than the {limit} bytes it may have: not a backup's")

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, recorded SHA-256 and the storage's checksum; None when absent."""
        raise NotImplementedError

    def stat_checksum(self, key: str) -> ObjectInfo | None:
        """:meth:`stat`, with the storage's own evidence of the bytes it holds
        now.  S3 keeps a checksum per object (``checksum``, from the same
        HEAD request); a folder keeps none, so it reads and hashes the file
        (``content_sha256``): the cost of reading the whole copy."""
        return self.stat(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, page by page, in
        key order (without ``sha256``: use stat for it)."""
        raise NotImplementedError

    # -- removing ------------------------------------------------------------
    def delete(self, key: str) -> None:
        """Remove an object (absent already is fine)."""
        raise NotImplementedError

    def incomplete_uploads(self, prefix: str) -> list[Incomplete]:
        """Uploads under ``prefix`` that were started and never finished."""
        raise NotImplementedError

    def abort_upload(self, upload: Incomplete) -> None:
        raise NotImplementedError

    # -- the remote itself ---------------------------------------------------
    def check(self) -> None:
        """Raise the storage's error when the bucket or folder cannot be used."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
