"""Archives written by hand, as an attacker would write them.

Nothing here imports the toolkit: headers, manifest, metadata and every seal
(structure_sha256, manifest_sha256, metadata_sha256, the gzip FEXTRA seal
and the zstd trailing frame) are computed from the format as the README
describes it, so a forged archive passes verification and reaches the
checks a restore makes after it.  Anyone can do the same: the seals are
hashes, not signatures.

    forge(path, [file("a", b"x"), dir("d"), symlink("l", "../x")], compression="gz")
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field

REGTYPE, LNKTYPE, SYMTYPE, DIRTYPE = b"0", b"1", b"2", b"5"
CHRTYPE, FIFOTYPE, LONGNAME, LONGLINK, PAX = b"3", b"6", b"L", b"K", b"x"
GNU_MAGIC = b"ustar  \0"
MANIFEST_NAME = "backup_manifest.jsonl"
METADATA_NAME = "backup_metadata.json"
BLOCK = 512
MTIME = 1_700_000_000


def octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def base256(n: int, width: int = 12) -> bytes:
    """GNU's binary number field: 0x80 then big-endian, or 0xff and two's complement."""
    if n >= 0:
        return b"\x80" + n.to_bytes(width - 1, "big")
    return b"\xff" + (n + (1 << (8 * (width - 1)))).to_bytes(width - 1, "big")


def header_block(name: bytes, type_: bytes, *, mode: int = 0o644, size_field: bytes | None = None, size: int = 0,
                 mtime: int = MTIME, linkname: bytes = b"", uid: int = 0, gid: int = 0, magic: bytes = GNU_MAGIC,
                 mtime_field: bytes | None = None, patch: dict[int, bytes] | None = None) -> bytes:
    """One 512-byte header; ``patch`` ({offset: bytes}) overwrites raw bytes
    before the checksum is computed (the checksum itself with offset 148)."""
    buf = bytearray(BLOCK)
    buf[0:100] = name[:100].ljust(100, b"\0")
    buf[100:108] = octal(mode, 8)
    buf[108:116] = octal(uid, 8)
    buf[116:124] = octal(gid, 8)
    buf[124:136] = size_field if size_field is not None else octal(size, 12)
    buf[136:148] = mtime_field if mtime_field is not None else octal(mtime, 12)
    buf[148:156] = b" " * 8
    buf[156:157] = type_
    buf[157:257] = linkname[:100].ljust(100, b"\0")
    buf[257:265] = magic
    patch = dict(patch or {})
    chksum = patch.pop(148, None)
    for at, raw_bytes in patch.items():
        buf[at : at + len(raw_bytes)] = raw_bytes
    buf[148:156] = chksum if chksum is not None else b"%06o\0 " % sum(buf)
    return bytes(buf)


def padding(n: int) -> bytes:
    return bytes(-n % BLOCK)


@dataclass
class M:
    """One member.  ``size`` overrides the header's size (default: the data's
    length for files, 0 otherwise); ``size_field`` overrides its raw bytes;
    ``data`` is written after the header whatever the type, padded.
    ``record``: the manifest record (None: derived; False: left out)."""

    name: str
    type: bytes = REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    mtime: int = MTIME
    size: int | None = None
    size_field: bytes | None = None
    mtime_field: bytes | None = None
    record: dict | None | bool = None
    long_names: bool = True  # GNU long-name records for names over 100 bytes
    raw: bytes | None = None  # the whole member as given, nothing derived
    patch: dict | None = None  # raw header bytes {offset: bytes}, set before the checksum
    before: bytes = b""  # hand-made bytes right before the header (an extra record, say), part of the structure

    def header_bytes(self) -> bytes:
        bname = os.fsencode(self.name)
        blink = os.fsencode(self.linkname)
        out = b""
        if self.long_names and len(blink) > 100:
            out += header_block(b"././@LongLink", LONGLINK, mode=0, size=len(blink) + 1, mtime=0) + blink + b"\0" + padding(len(blink) + 1)
        if self.long_names and len(bname) > 100:
            out += header_block(b"././@LongLink", LONGNAME, mode=0, size=len(bname) + 1, mtime=0) + bname + b"\0" + padding(len(bname) + 1)
        size = self.size if self.size is not None else (len(self.data) if self.type == REGTYPE else 0)
        return self.before + out + header_block(bname, self.type, mode=self.mode, size=size, size_field=self.size_field,
                                                mtime=self.mtime, linkname=blink, mtime_field=self.mtime_field, patch=self.patch)


def file(name, data=b"", **kw) -> M:
    return M(name, REGTYPE, data if isinstance(data, bytes) else data.encode(), **kw)


def dir(name, **kw) -> M:  # noqa: A001 - the archive vocabulary
    return M(name if name.endswith("/") else name + "/", DIRTYPE, mode=kw.pop("mode", 0o755), **kw)


def symlink(name, target, **kw) -> M:
    return M(name, SYMTYPE, linkname=target, mode=kw.pop("mode", 0o777), **kw)


def hardlink(name, target, **kw) -> M:
    return M(name, LNKTYPE, linkname=target, **kw)


def raw(data: bytes, record=False) -> M:
    """Bytes placed as they are (a hand-made header, say): no record."""
    return M("", raw=data, record=record)


def _record(m: M, files: dict) -> dict | None:
    if m.record is False or m.raw is not None:
        return None
    if isinstance(m.record, dict):
        return m.record
    path = m.name.rstrip("/")
    base = {"path": path, "mode": m.mode & 0o7777, "mtime_ns": m.mtime * 10**9}
    if m.type == DIRTYPE:
        return {**base, "type": "dir"}
    if m.type == SYMTYPE:
        return {**base, "type": "symlink", "target": m.linkname}
    if m.type == LNKTYPE:
        size, sha = files.get(m.linkname, (0, ""))
        return {**base, "type": "hardlink", "target": m.linkname, "size": size, "sha256": sha}
    if m.type == REGTYPE:
        return {**base, "type": "file", "size": len(m.data), "sha256": hashlib.sha256(m.data).hexdigest()}
    return None


@dataclass
class Forged:
    path: str
    manifest: bytes
    metadata: dict
    tar: bytes = field(repr=False)


def forge(path, members: list[M], *, compression: str = "none", records: list[dict] | None = None,
          manifest: bytes | None = None, metadata: dict | None = None, extra_metadata: dict | None = None,
          after_end: bytes = b"", tool_members: bool = True) -> Forged:
    """Write ``members`` then (unless told not to) a manifest and sealed
    metadata that agree with them.  ``records``/``manifest`` replace the
    derived manifest; ``metadata`` replaces the derived metadata (seals are
    still computed); ``extra_metadata`` is merged into it."""
    out = bytearray()
    structure = hashlib.sha256()
    files: dict[str, tuple[int, str]] = {}
    derived = []
    for m in members:
        if m.raw is not None:
            out += m.raw
            structure.update(m.raw)
            continue
        head = m.header_bytes()
        out += head
        structure.update(head)
        out += m.data
        pad = padding(len(m.data))
        out += pad
        if m.type in (REGTYPE, b"\0", b"7"):
            structure.update(pad)  # a regular member's padding is structure; other types' bytes are skipped unread
            files[m.name] = (len(m.data), hashlib.sha256(m.data).hexdigest())
        rec = _record(m, files)
        if rec is not None:
            derived.append(rec)
    if records is None:  # in the order verification expects, whatever the members' order
        records = sorted(derived, key=lambda r: os.fsencode(r["path"]).replace(b"/", b"\0"))
    if manifest is None:
        manifest = b"".join(json.dumps(r, separators=(",", ":"), ensure_ascii=True).encode() + b"\n" for r in records)
    meta = metadata
    if tool_members:
        head = header_block(MANIFEST_NAME.encode(), REGTYPE, mode=0o600, size=len(manifest))
        out += head + manifest + padding(len(manifest))
        structure.update(head + padding(len(manifest)))
        if meta is None:
            project = hashlib.sha256()
            total_size = 0
            n = 0
            for r in records:
                if r.get("type") == "file":
                    project.update(os.fsencode(r["path"]) + b"\0" + r["sha256"].encode() + b"\n")
                    total_size += r.get("size", 0)
                    n += 1
                elif r.get("type") == "symlink":
                    project.update(os.fsencode(r["path"]) + b"\0" + ("symlink:" + r["target"]).encode() + b"\n")
                    n += 1
                elif r.get("type") == "hardlink":
                    project.update(os.fsencode(r["path"]) + b"\0" + r.get("sha256", "").encode() + b"\n")
                    n += 1
            meta = {
                "format_version": 2,
                "backup_type": "project_full",
                "backup_timestamp": "2026-11-29T02:00:00+00:00",
                "project_root": "/srv/app",
                "hostname": "attacker",
                "tool_version": "0.1.0",
                "compression": {"none": "none", "gz": "gzip", "zst": "zstd"}[compression],
                "total_files": n,
                "total_size": total_size,
                "project_hash": project.hexdigest(),
                "skipped_files": [],
                "changed_files": [],
            }
        meta = dict(meta, **(extra_metadata or {}))
        meta["manifest_sha256"] = hashlib.sha256(manifest).hexdigest()
        meta["structure_sha256"] = structure.hexdigest()
        meta["metadata_sha256"] = "0" * 64
        meta["metadata_sha256"] = hashlib.sha256(json.dumps(meta, indent=2, ensure_ascii=True).encode()).hexdigest()
        data = json.dumps(meta, indent=2, ensure_ascii=True).encode()
        out += header_block(METADATA_NAME.encode(), REGTYPE, mode=0o600, size=len(data), mtime=MTIME) + data + padding(len(data))
    out += bytes(2 * BLOCK) + after_end
    tar = bytes(out)
    with open(path, "wb") as fh:
        fh.write(compress(tar, compression))
    return Forged(str(path), manifest, meta or {}, tar)


GZIP_PREFIX = bytes.fromhex("1f8b 0804 0000 0000 00ff 2400") + b"BK" + bytes.fromhex("2000")
ZSTD_SEAL_MAGIC = bytes.fromhex("502a4d18") + (36).to_bytes(4, "little") + b"BKSH"


def compress(tar: bytes, compression: str) -> bytes:
    """gzip with the toolkit's FEXTRA seal, zstd with its trailing seal frame."""
    if compression == "none":
        return tar
    if compression == "gz":
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = co.compress(tar) + co.flush()
        body += (zlib.crc32(tar) & 0xFFFFFFFF).to_bytes(4, "little") + (len(tar) & 0xFFFFFFFF).to_bytes(4, "little")
        return GZIP_PREFIX + hashlib.sha256(body).digest() + body
    if compression == "zst":
        import zstandard

        frame = zstandard.ZstdCompressor(write_checksum=True).compress(tar)
        return frame + ZSTD_SEAL_MAGIC + hashlib.sha256(frame).digest()
    raise ValueError(compression)


def long_record(kind: bytes, payload: bytes, *, size: int | None = None, size_field: bytes | None = None) -> bytes:
    """A GNU long-name (``L``) or long-link (``K``) record as given: the
    payload is taken as it is (add the NUL yourself), ``size``/``size_field``
    may lie about it."""
    head = header_block(b"././@LongLink", kind, mode=0, size=len(payload) if size is None else size, mtime=0, size_field=size_field)
    return head + payload + padding(len(payload))


def gzip_sealed(chunks) -> bytes:
    """gzip of the concatenated ``chunks`` (an iterable, so a large stream
    never has to be in memory whole), with the toolkit's FEXTRA seal."""
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    crc, length, body = 0, 0, bytearray()
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        length += len(chunk)
        body += co.compress(chunk)
    body += co.flush()
    body += (crc & 0xFFFFFFFF).to_bytes(4, "little") + (length & 0xFFFFFFFF).to_bytes(4, "little")
    return GZIP_PREFIX + hashlib.sha256(body).digest() + bytes(body)
