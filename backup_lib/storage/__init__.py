"""Where off-site copies go: a small object-storage interface (``base``) with
two backends, an S3 bucket (``s3``, through boto3, imported only when a
bucket is used) and a folder (``folder``).

    storage = open_storage("s3://my-bucket/backups", label="remote offsite", endpoint_url=None)
    storage.put_file("myapp/project/myapp_project_20250807_210052.tar.gz", path)
"""

from __future__ import annotations

from ..errors import UsageError
from .base import (
    Incomplete,
    ObjectInfo,
    ObjectStream,
    Storage,
    TransferSettings,
    checksums_agree,
    composite_checksum,
    sha256_checksum,
)

__all__ = [
    "Incomplete",
    "ObjectInfo",
    "ObjectStream",
    "Storage",
    "TransferSettings",
    "checksums_agree",
    "composite_checksum",
    "sha256_checksum",
    "open_storage",
    "parse_url",
]


def parse_url(url: str) -> tuple[str, str, str]:
    """``("s3", bucket, prefix)`` or ``("folder", absolute path, "")``."""
    import os

    if not isinstance(url, str) or not url.strip():
        raise UsageError("a remote needs a url: s3://bucket/prefix or an absolute folder path")
    url = url.strip()
    if url.startswith("s3://"):
        rest = url[5:]
        bucket, _, prefix = rest.partition("/")
        if not bucket or "/" in bucket or not all(c.isalnum() or c in "-._" for c in bucket):
            raise UsageError(f"remote url {url!r}: the bucket name is missing or invalid (s3://bucket/prefix)")
        prefix = prefix.strip("/")
        if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
            raise UsageError(f"remote url {url!r}: the prefix must not have empty, '.' or '..' segments")
        return "s3", bucket, prefix
    if url.startswith("file://"):
        url = url[7:]
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise UsageError(f"remote url {url!r}: {scheme}:// is not supported; use s3://bucket/prefix "
                         f"(with endpoint_url for MinIO, R2, B2, Wasabi or GCS) or a folder path")
    path = os.path.expanduser(url)
    if not os.path.isabs(path):
        raise UsageError(f"remote url {url!r}: a folder remote needs an absolute path")
    return "folder", os.path.normpath(path), ""


def open_storage(url: str, *, label: str | None = None, endpoint_url: str | None = None, region: str | None = None,
                 profile: str | None = None, storage_class: str | None = None, addressing_style: str | None = None,
                 checksums: bool = True, transfer: TransferSettings | None = None, max_attempts: int | None = None,
                 connect_timeout: float | None = None, read_timeout: float | None = None) -> Storage:
    kind, where, prefix = parse_url(url)
    if kind == "folder":
        from .folder import FolderStorage

        return FolderStorage(where, label=label)
    from .s3 import S3Storage

    return S3Storage(where, prefix, label=label, endpoint_url=endpoint_url, region=region, profile=profile,
                     storage_class=storage_class, addressing_style=addressing_style, checksums=checksums,
                     transfer=transfer, max_attempts=max_attempts, connect_timeout=connect_timeout,
                     read_timeout=read_timeout)
