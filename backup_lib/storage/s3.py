"""S3 and everything that speaks its protocol (MinIO, R2, B2, Wasabi, GCS's
XML API), through boto3.

* Credentials come only from boto3's standard chain (environment, ``~/.aws``
  profiles, instance roles); ``endpoint_url``, ``region``, ``profile`` and
  ``storage_class`` from the remote's configuration.
* The SHA-256 of the whole object is stored as object metadata
  (``x-amz-meta-sha256``).  Small objects are one PUT whose
  ``x-amz-checksum-sha256`` is that same digest, so S3 refuses any byte
  that differs.  Large ones are a multipart upload with a SHA-256 per part
  (S3 refuses a part whose bytes differ, and keeps the composite
  checksum); the parts go up in parallel, each read from the file by the
  worker that sends it, so memory stays flat whatever the size.
* An object exists under its key only once complete: a failed or
  interrupted upload (KeyboardInterrupt included) is aborted, so that no
  multipart upload is left behind; when the abort itself cannot reach the
  server, the next push of the same key aborts what is left.
* botocore's errors become the toolkit's one-line ``RemoteError``\\ s here,
  in :meth:`S3Storage._error`, and nowhere else.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import BinaryIO, Iterator

from ..errors import (
    BackupError,
    IntegrityError,
    ObjectNotFoundError,
    RemoteAccessError,
    RemoteError,
    RemoteMissingError,
    RemoteUnreachableError,
    UsageError,
)
from .base import (
    Incomplete,
    ObjectInfo,
    ObjectStream,
    Progress,
    Storage,
    TransferSettings,
    check_key,
    composite_checksum,
    digest_file,
    is_sha256_hex,
    sha256_checksum,
)

__all__ = ["S3Storage", "translate_error"]

_READ_AHEAD = 1 << 20
META_SHA256 = "sha256"  # x-amz-meta-sha256


class _Cancelled(BaseException):
    """Raised inside a part's body read to stop it at once; a BaseException so
    that neither urllib3 nor botocore catches and retries it."""


class _Cancel:
    """An upload's own stop, or its storage's (interrupt)."""

    __slots__ = ("own", "storage")

    def __init__(self, storage: threading.Event):
        self.own = threading.Event()
        self.storage = storage

    def is_set(self) -> bool:
        return self.own.is_set() or self.storage.is_set()

    def set(self) -> None:
        self.own.set()


class _Slice(io.RawIOBase):
    """``length`` bytes of a file from ``offset``, read with pread as the HTTP
    client asks (1 MiB at a time); seekable so botocore can retry a part."""

    def __init__(self, fd: int, offset: int, length: int, cancel: _Cancel):
        super().__init__()
        self._fd, self._offset, self._length, self._cancel = fd, offset, length, cancel
        self._pos = 0
        self._buf = b""
        self._buf_at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence == 2:
            pos += self._length
        self._pos = max(0, min(pos, self._length))
        return self._pos

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled()
        left = self._length - self._pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        start = self._pos - self._buf_at
        if not 0 <= start or start + n > len(self._buf):
            want = max(n, min(_READ_AHEAD, left))
            self._buf = os.pread(self._fd, want, self._offset + self._pos)
            self._buf_at = self._pos
            start = 0
            if len(self._buf) < n:
                raise IntegrityError("the file shrank while it was uploaded")
        out = self._buf[start:start + n]
        self._pos += n
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def sha256(self) -> bytes:
        h = hashlib.sha256()
        self.seek(0)
        while True:
            data = self.read(_READ_AHEAD)
            if not data:
                break
            h.update(data)
        self.seek(0)
        return h.digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def translate_error(exc: BaseException, *, label: str, bucket: str, endpoint: str, region: str | None, doing: str, key: str | None = None) -> BackupError:
    """One botocore (or connection) error as a one-line RemoteError naming the
    remote and the cause.  A pure function of the exception."""
    if isinstance(exc, BackupError):
        return exc
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return RemoteError(f"{label}: {doing}: {exc}")
    what = f"{doing} {key}" if key else doing
    if isinstance(exc, bx.NoCredentialsError):
        return RemoteAccessError(f"{label}: no credentials found (boto3 reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                                 f"AWS_PROFILE, ~/.aws/credentials and instance roles)")
    if isinstance(exc, bx.ProfileNotFound):
        return RemoteAccessError(f"{label}: {exc}")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError,
                        bx.ConnectionError, bx.HTTPClientError)):
        cause = str(exc)
        inner = getattr(exc, "kwargs", {}).get("error")
        if inner is not None:
            cause = str(inner)
        for marker in ("Connection refused", "timed out", "Name or service not known", "No route to host",
                       "Connection reset by peer", "Remote end closed connection", "Connection aborted", "Temporary failure in name resolution"):
            if marker.lower() in cause.lower():
                cause = marker.lower()
                break
        return RemoteUnreachableError(f"{label}: cannot reach {endpoint} ({what}): {cause}")
    if isinstance(exc, bx.ClientError):
        resp = getattr(exc, "response", {}) or {}
        err = resp.get("Error", {}) or {}
        code = str(err.get("Code", "") or "")
        message = str(err.get("Message", "") or "")
        meta = resp.get("ResponseMetadata", {}) or {}
        status = meta.get("HTTPStatusCode")
        headers = {k.lower(): v for k, v in (meta.get("HTTPHeaders") or {}).items()}
        bucket_region = headers.get("x-amz-bucket-region") or err.get("Region") or err.get("ExpectedRegion")
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301", "TemporaryRedirect") or (
            bucket_region and region and bucket_region != region and status in (301, 400, 403)
        ):
            where = f": the bucket is in {bucket_region}, not {region or 'the default region'} (set region: {bucket_region})" if bucket_region else \
                f": {message or code} (set region: to the bucket's region)"
            return RemoteAccessError(f"{label}: wrong region for bucket {bucket}{where}")
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and key is None):
            return RemoteMissingError(f"{label}: bucket {bucket} does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFoundError(f"{label}: {key or '?'} is not on the remote")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
                    "InvalidClientTokenId", "RequestExpired"):
            return RemoteAccessError(f"{label}: credentials rejected ({code}: {message or 'check the access key and secret'})")
        if code in ("AccessDenied", "AllAccessDisabled", "403", "Forbidden") or status == 403:
            return RemoteAccessError(f"{label}: access denied ({what})")
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch") or "checksum" in message.lower():
            return RemoteError(f"{label}: the server refused {key or 'an upload'}: its bytes do not match the checksum sent ({code}); nothing was stored")
        if code == "NoSuchUpload":
            return RemoteError(f"{label}: the upload of {key} was aborted by someone else ({code})")
        return RemoteError(f"{label}: {what} failed: {code or status}{': ' + message if message else ''}")
    if isinstance(exc, bx.BotoCoreError):
        return RemoteError(f"{label}: {what}: {exc}")
    if isinstance(exc, OSError):
        return RemoteError(f"{label}: {what}: {exc.strerror or exc}")
    return RemoteError(f"{label}: {what}: {type(exc).__name__}: {exc}")


class S3Storage(Storage):
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        label: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        storage_class: str | None = None,
        addressing_style: str | None = None,
        checksums: bool = True,
        transfer: TransferSettings | None = None,
        max_attempts: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        page_size: int = 1000,
    ):
        if not bucket:
            raise UsageError("an s3:// remote needs a bucket (s3://bucket/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.label = label or f"remote {self.url}"
        self.endpoint_url = endpoint_url
        self.region = region
        self.profile = profile
        self.storage_class = storage_class
        self.addressing_style = addressing_style
        self.checksums = checksums
        self.transfer = transfer or TransferSettings()
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.page_size = page_size
        self._client = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self.endpoint_url:
            return self.endpoint_url
        return f"s3.{self.region}.amazonaws.com" if self.region else "s3.amazonaws.com"

    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self):
        try:
            # botocore's own session: the same credential chain and client
            # as boto3's, without importing boto3 and s3transfer, which
            # nothing here uses.
            import botocore.session
            from botocore.config import Config
        except ImportError:  # pragma: no cover - boto3 is a dependency
            raise RemoteError(f"{self.label}: boto3 is not installed (pip install boto3)") from None
        options: dict = {
            "max_pool_connections": max(16, self.transfer.max_concurrency + 8),
            "retries": {"mode": "standard", **({"max_attempts": self.max_attempts} if self.max_attempts else {})},
            "user_agent_extra": "backup-toolkit",
        }
        if self.connect_timeout is not None:
            options["connect_timeout"] = self.connect_timeout
        if self.read_timeout is not None:
            options["read_timeout"] = self.read_timeout
        s3opts: dict = {}
        if self.addressing_style:
            s3opts["addressing_style"] = self.addressing_style
        if self.checksums:
            # The x-amz-checksum-sha256 header (signed) covers the body: no
            # second SHA-256 of every part for the signature.
            s3opts["payload_signing_enabled"] = False
        else:
            # Services without flexible checksums: send none (boto3 would
            # otherwise add a CRC32 they refuse).
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        if s3opts:
            options["s3"] = s3opts
        try:
            session = botocore.session.Session(profile=self.profile) if self.profile else botocore.session.Session()
            return session.create_client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=Config(**options))
        except Exception as exc:
            raise self._error(exc, "connecting") from None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.transfer.max_concurrency, thread_name_prefix="s3-part")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _error(self, exc: BaseException, doing: str, key: str | None = None) -> BackupError:
        return translate_error(exc, label=self.label, bucket=self.bucket, endpoint=self.endpoint, region=self.region, doing=doing, key=key)

    def _call(self, doing: str, key: str | None, fn, **kw):
        try:
            return fn(**kw)
        except Exception as exc:
            raise self._error(exc, doing, key) from None

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def _extra(self, sha256: str) -> dict:
        extra = {"Metadata": {META_SHA256: sha256}}
        if self.storage_class:
            extra["StorageClass"] = self.storage_class
        return extra

    # -- the remote ------------------------------------------------------------
    def check(self) -> None:
        self._call("checking bucket", None, self.client.head_bucket, Bucket=self.bucket)

    # -- writing ---------------------------------------------------------------
    def put_file(self, key: str, path: str, *, size: int | None = None, sha256: str | None = None, progress: Progress | None = None) -> ObjectInfo:
        full = self._full(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror}") from None
        try:
            actual = os.fstat(fd).st_size
            if size is not None and actual != size:
                raise IntegrityError(f"{path} is {actual} bytes, {size} were expected: it changed since it was listed")
            size = actual
            if size <= self.transfer.multipart_threshold:
                # Small: hashed here even when the digest is known, so that a
                # server that does not check x-amz-checksum-sha256 cannot
                # end up with metadata that lies.
                hexdigest, _ = digest_file(fd, size, stop=self.stopping)
                if sha256 is not None and hexdigest != sha256:
                    raise IntegrityError(f"{path} does not have the SHA-256 it was listed with (changed since?): nothing was stored")
                whole = bytes.fromhex(hexdigest)
                body = _Slice(fd, 0, size, _Cancel(self.stopping))
                return self._put_single(key, full, body, size, whole, progress)
            part_size = self.transfer.part_size_for(size)
            digests = None
            if sha256 is None:
                # One sequential pass for the whole file's SHA-256 (needed
                # before the upload starts: it is the object's metadata) and
                # each part's, on two threads; the upload then hashes nothing.
                sha256, digests = digest_file(fd, size, part_size if self.checksums else None, stop=self.stopping)
            count = max(1, -(-size // part_size))

            def body_for(n: int, cancel: _Cancel):
                offset = n * part_size
                return _Slice(fd, offset, min(part_size, size - offset), cancel), (digests[n] if digests else None)

            return self._multipart(key, full, size, sha256, count, body_for, progress)
        finally:
            os.close(fd)

    def put_stream(self, key: str, stream: BinaryIO, *, size: int, sha256: str, progress: Progress | None = None) -> ObjectInfo:
        full = self._full(key)
        if not is_sha256_hex(sha256):
            raise UsageError(f"put_stream needs the SHA-256 of what it stores (got {sha256!r})")
        if size <= self.transfer.multipart_threshold:
            data = _read_exactly(stream, size, key)
            if hashlib.sha256(data).hexdigest() != sha256:
                raise IntegrityError(f"the stream for {key} does not have the SHA-256 it was announced with: nothing was stored")
            return self._put_single(key, full, io.BytesIO(data), size, bytes.fromhex(sha256), progress)
        return self._multipart_stream(key, full, stream, size, sha256, progress)

    def _put_single(self, key: str, full: str, body, size: int, digest: bytes, progress) -> ObjectInfo:
        kw = dict(Bucket=self.bucket, Key=full, Body=body, ContentLength=size, **self._extra(digest.hex()))
        if self.checksums:
            kw["ChecksumAlgorithm"] = "SHA256"
            kw["ChecksumSHA256"] = _b64(digest)
        resp = self._call("uploading", key, self.client.put_object, **kw)
        if progress is not None:
            progress(size)
        checksum = sha256_checksum(digest) if self.checksums else None
        return ObjectInfo(key, size, digest.hex(), checksum, resp.get("ETag"), None)

    def _upload_part(self, key: str, full: str, upload_id: str, number: int, body, digest: bytes | None, progress) -> dict:
        kw = dict(Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body, ContentLength=len(body))
        if self.checksums:
            if digest is None:
                digest = body.sha256()
            kw["ChecksumAlgorithm"] = "SHA256"
            kw["ChecksumSHA256"] = _b64(digest)
        resp = self.client.upload_part(**kw)
        if progress is not None:
            progress(len(body))
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if self.checksums:
            part["ChecksumSHA256"] = kw["ChecksumSHA256"]
        return part

    def _start(self, key: str, full: str, sha256: str) -> str:
        kw = dict(Bucket=self.bucket, Key=full, **self._extra(sha256))
        if self.checksums:
            kw["ChecksumAlgorithm"] = "SHA256"
        return self._call("starting the upload of", key, self.client.create_multipart_upload, **kw)["UploadId"]

    def _finish(self, key: str, full: str, upload_id: str, parts: list[dict], size: int, sha256: str) -> ObjectInfo:
        resp = self._call("completing the upload of", key, self.client.complete_multipart_upload, Bucket=self.bucket, Key=full,
                          UploadId=upload_id, MultipartUpload={"Parts": parts})
        checksum = None
        if self.checksums:
            checksum = composite_checksum([base64.b64decode(p["ChecksumSHA256"]) for p in parts])
        return ObjectInfo(key, size, sha256, checksum, resp.get("ETag"), None)

    def _abort(self, key: str, full: str, upload_id: str) -> str:
        """Abort; '' when done, else why it could not be (for the message)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            return ""
        except Exception as exc:
            if "NoSuchUpload" in str(exc):
                return ""
            return f" (the incomplete upload could not be aborted: {self._error(exc, 'aborting', key).args[0].split(': ', 1)[-1]}; the next push of it removes it)"

    def _multipart(self, key: str, full: str, size: int, sha256: str, count: int, body_for, progress) -> ObjectInfo:
        upload_id = self._start(key, full, sha256)
        cancel = _Cancel(self.stopping)
        futures = []
        try:
            for n in range(count):
                body, digest = body_for(n, cancel)
                futures.append(self.pool.submit(self._upload_part, key, full, upload_id, n + 1, body, digest, progress))
            wait(futures, return_when=FIRST_EXCEPTION)
            parts = [f.result() for f in futures]
            return self._finish(key, full, upload_id, parts, size, sha256)
        except BaseException as exc:
            self._failed(exc, futures, cancel, key, full, upload_id)
            raise

    def _multipart_stream(self, key: str, full: str, stream: BinaryIO, size: int, sha256: str, progress) -> ObjectInfo:
        part_size = self.transfer.part_size_for(size)
        upload_id = self._start(key, full, sha256)
        cancel = _Cancel(self.stopping)
        slots = threading.BoundedSemaphore(self.transfer.max_concurrency)
        futures = []
        whole = hashlib.sha256()

        def send(number: int, data: bytes) -> dict:
            try:
                body = _Bytes(data, cancel)
                digest = hashlib.sha256(data).digest() if self.checksums else None
                return self._upload_part(key, full, upload_id, number, body, digest, progress)
            finally:
                slots.release()

        try:
            done = 0
            number = 0
            while done < size:
                while not slots.acquire(timeout=0.2):
                    for f in futures:
                        if f.done() and f.exception() is not None:
                            f.result()
                data = _read_exactly(stream, min(part_size, size - done), key)
                whole.update(data)
                done += len(data)
                number += 1
                futures.append(self.pool.submit(send, number, data))
            if stream.read(1):
                raise IntegrityError(f"the stream for {key} is longer than the {size} bytes announced: nothing was stored")
            if whole.hexdigest() != sha256:
                raise IntegrityError(f"the stream for {key} does not have the SHA-256 it was announced with: nothing was stored")
            wait(futures, return_when=FIRST_EXCEPTION)
            parts = [f.result() for f in futures]
            return self._finish(key, full, upload_id, parts, size, sha256)
        except BaseException as exc:
            self._failed(exc, futures, cancel, key, full, upload_id)
            raise

    def _failed(self, exc: BaseException, futures, cancel: _Cancel, key: str, full: str, upload_id: str) -> None:
        """A multipart upload that failed: its parts stopped, the upload
        aborted (nothing partial stays), and the error translated (the
        caller re-raises anything this does not)."""
        self._stop(futures, cancel)
        note = self._abort(key, full, upload_id)
        if isinstance(exc, _Cancelled):
            raise KeyboardInterrupt from None
        if isinstance(exc, Exception):
            err = self._error(exc, "uploading", key)
            if note:
                err = type(err)(str(err) + note)
            raise err from None

    @staticmethod
    def _stop(futures, cancel: _Cancel) -> None:
        cancel.set()
        for f in futures:
            f.cancel()
        wait(futures)  # running parts stop at their next read

    # -- reading ---------------------------------------------------------------
    def stat(self, key: str) -> ObjectInfo | None:
        full = self._full(key)
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=full, **({"ChecksumMode": "ENABLED"} if self.checksums else {}))
        except Exception as exc:
            err = self._error(exc, "reading", key)
            if isinstance(err, ObjectNotFoundError):
                return None
            raise err from None
        return self._info(key, resp)

    def _info(self, key: str, resp: dict) -> ObjectInfo:
        meta = {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}
        recorded = meta.get(META_SHA256)
        checksum = resp.get("ChecksumSHA256")
        if checksum:
            checksum = "sha256:" + checksum
            parts = resp.get("PartsCount")
            if resp.get("ChecksumType") == "COMPOSITE" and "-" not in checksum and parts:
                checksum += f"-{parts}"
        modified = resp.get("LastModified")
        return ObjectInfo(key, int(resp.get("ContentLength", 0)), recorded if is_sha256_hex(recorded) else None, checksum,
                          resp.get("ETag"), modified.timestamp() if modified else None)

    def open(self, key: str) -> ObjectStream:
        full = self._full(key)
        resp = self._call("downloading", key, self.client.get_object, Bucket=self.bucket, Key=full)
        info = self._info(key, resp)
        return ObjectStream(resp["Body"], key=key, size=info.size, sha256=info.sha256,
                            translate=lambda exc: self._error(exc, "downloading", key))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full_prefix = (f"{self.prefix}/{prefix}" if self.prefix else prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=full_prefix, PaginationConfig={"PageSize": self.page_size})
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    modified = obj.get("LastModified")
                    yield ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]), None, None, obj.get("ETag"),
                                     modified.timestamp() if modified else None)
        except BackupError:
            raise
        except Exception as exc:
            raise self._error(exc, "listing") from None

    # -- removing --------------------------------------------------------------
    def delete(self, key: str) -> None:
        self._call("deleting", key, self.client.delete_object, Bucket=self.bucket, Key=self._full(key))

    def incomplete_uploads(self, prefix: str) -> list[Incomplete]:
        full_prefix = (f"{self.prefix}/{prefix}" if self.prefix else prefix)
        out = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for up in page.get("Uploads", ()):
                    initiated = up.get("Initiated")
                    out.append(Incomplete(self._rel(up["Key"]), up["UploadId"], initiated.timestamp() if initiated else None))
        except Exception as exc:
            raise self._error(exc, "listing incomplete uploads") from None
        return out

    def abort_upload(self, upload: Incomplete) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._full(upload.key), UploadId=upload.upload_id)
        except Exception as exc:
            if "NoSuchUpload" in str(exc):
                return
            raise self._error(exc, "aborting the upload of", upload.key) from None


class _Bytes(io.BytesIO):
    """A part held in memory (stream uploads) that stops when cancelled."""

    def __init__(self, data: bytes, cancel: _Cancel):
        super().__init__(data)
        self._cancel = cancel
        self._len = len(data)

    def __len__(self) -> int:
        return self._len

    def read(self, n: int | None = -1) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled()
        return super().read(n)

    def sha256(self) -> bytes:
        return hashlib.sha256(self.getbuffer()).digest()


def _read_exactly(stream: BinaryIO, n: int, key: str) -> bytes:
    chunks = []
    left = n
    while left > 0:
        data = stream.read(left)
        if not data:
            raise IntegrityError(f"the stream for {key} ended {left} bytes short of the size announced: nothing was stored")
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)
