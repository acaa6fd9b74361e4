"""The seals in an archive's metadata: ``metadata_sha256`` over the
metadata document itself (``structure_sha256`` and ``manifest_sha256`` are
computed by the writer and checked by the reader).  Hashes against
accidents, not signatures: whoever can rewrite an archive can recompute them."""

from __future__ import annotations

import hashlib
import json
import tarfile

from .manifest import METADATA_NAME
from .tar import header

__all__ = ["metadata_header", "seal", "seal_ok"]

_SEAL_PLACEHOLDER = "0" * 64


def metadata_header(size: int, mtime: int) -> bytes:
    return header(METADATA_NAME, tarfile.REGTYPE, mode=0o600, size=size, mtime=mtime)


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
