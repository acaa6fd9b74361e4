"""The tool's own two members, always the last two of an archive:
``backup_manifest.jsonl`` (one JSON object per entry) and
``backup_metadata.json``; and ``project_hash``, computed over the entries."""

from __future__ import annotations

import json
import re
from json import scanner as _json_scanner

from ..errors import IntegrityError, NotABackupError

__all__ = [
    "METADATA_NAME",
    "MANIFEST_NAME",
    "TOOL_MEMBERS",
    "FORMAT_VERSION",
    "iter_manifest",
    "parse_metadata",
    "project_hash_line",
]

METADATA_NAME = "backup_metadata.json"
MANIFEST_NAME = "backup_manifest.jsonl"
TOOL_MEMBERS = (MANIFEST_NAME, METADATA_NAME)
# 1: members sorted as plain byte strings.  2: members in tree order (each
# folder's contents right after it, see selection.tree_key); project_hash follows
# the member order, so it differs from a format-1 backup of the same tree.
FORMAT_VERSION = 2
_DECODE_BLOCK = 1 << 20


def project_hash_line(path: bytes, content_id: str) -> bytes:
    """project_hash is SHA-256 over these lines, in member order: equal for
    equal trees, whatever the time or compression."""
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
        cut = data.find(b"\n", at + _DECODE_BLOCK)
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
