"""Standard tar archives (plain, gzip via ISA-L, zstd), written and read as streams.

Layout of every archive this toolkit writes:

* the selected entries, relative to the root, in tree order: each folder's
  contents right after it (:func:`backup_lib.selection.tree_key`); GNU tar
  format: long names, >8 GiB sizes and non-UTF-8 names all stay readable by
  GNU tar;
* ``backup_manifest.jsonl``: one JSON object per entry (path, type, size,
  mode, mtime_ns, sha256 or link target);
* ``backup_metadata.json``: the metadata.

The tool's two members are always the last two.  A project that has its own
file of either name at its root keeps it: it is stored in order like any
file, and readers take only the final two members as the tool's.  Every
file is read exactly once: hashed as it is written.

One module per concept: ``tar`` (the format and the member order),
``streams`` (compression and the seal over the compressed file),
``manifest`` (the tool's members, project_hash), ``seals`` (the metadata's
own seal), ``writer`` and ``reader``.
"""

from __future__ import annotations

from .manifest import FORMAT_VERSION, MANIFEST_NAME, METADATA_NAME, TOOL_MEMBERS, iter_manifest, parse_metadata, project_hash_line
from .reader import ArchiveReader
from .seals import seal, seal_ok
from .streams import CHUNK, COMPRESSIONS, detect_compression, open_compressed_writer
from .writer import ArchiveWriter, WriteReport

__all__ = [
    "METADATA_NAME",
    "MANIFEST_NAME",
    "TOOL_MEMBERS",
    "FORMAT_VERSION",
    "CHUNK",
    "COMPRESSIONS",
    "ArchiveWriter",
    "WriteReport",
    "ArchiveReader",
    "iter_manifest",
    "parse_metadata",
    "project_hash_line",
    "seal",
    "seal_ok",
    "detect_compression",
    "open_compressed_writer",
]
