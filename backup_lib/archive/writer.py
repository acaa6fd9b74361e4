"""Writing an archive: the selected entries in tree order, each file read
once and hashed as it is written, then the manifest and the sealed metadata."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _encode_ascii
from typing import Callable

from ..selection import Entry, tree_key
from .manifest import MANIFEST_NAME, project_hash_line
from .seals import metadata_header, seal
from .streams import CHUNK
from .tar import ZERO_BLOCK, header, pad

__all__ = ["WriteReport", "ArchiveWriter"]


@dataclass
class WriteReport:
    records: dict[str, dict] = field(default_factory=dict)  # path -> record, only with keep_records
    skipped: list[dict] = field(default_factory=list)  # unreadable: {path, reason}
    changed: list[str] = field(default_factory=list)  # changed while read
    total_files: int = 0
    total_size: int = 0
    file_types: dict[str, int] = field(default_factory=dict)


def _json_str(text: str) -> bytes:
    """json.dumps(text) for a str, without its dispatch."""
    return _encode_ascii(text).encode()


class ArchiveWriter:
    """Writes a tar stream into a compressor; hashes each file as it goes."""

    def __init__(self, out, *, progress: Callable[[int, int], None] | None = None, keep_records: bool = False):
        import tempfile

        self._out = out
        self._write = out.write
        self._progress = progress
        self._links: dict[tuple[int, int], tuple[str, str]] = {}  # (dev, ino) -> (path, sha256)
        self._structure = hashlib.sha256()  # every byte but member data: headers, padding
        self.report = WriteReport()
        # Memory stays flat whatever the file count: manifest lines go to an
        # anonymous temporary file, project_hash is computed as entries come
        # (they come sorted, the order project_hash is defined in).
        self._spool = tempfile.TemporaryFile()
        self._project = hashlib.sha256()
        self._last_key = b""
        self._keep = keep_records

    def _record(self, rec: dict) -> None:
        self._spool.write(json.dumps(rec, ensure_ascii=True, separators=(",", ":")).encode() + b"\n")
        if self._keep:
            self.report.records[rec["path"]] = rec

    def _file_record(self, path: str, mode: int, mtime_ns: int, size: int, digest: str) -> None:
        """The common record, formatted directly (json.dumps per file costs)."""
        if self._keep:
            self._record({"path": path, "type": "file", "mode": mode, "mtime_ns": mtime_ns, "size": size, "sha256": digest})
            return
        self._spool.write(
            b'{"path":%s,"type":"file","mode":%d,"mtime_ns":%d,"size":%d,"sha256":"%s"}\n'
            % (_json_str(path), mode, mtime_ns, size, digest.encode())
        )

    def _struct(self, data: bytes) -> None:
        self._structure.update(data)
        self._write(data)

    # -- members -----------------------------------------------------------
    def add(self, root: str, entry: Entry) -> None:
        path = entry.path
        key = tree_key(os.fsencode(path))
        if key <= self._last_key:
            raise ValueError(f"entries must come in tree order: {path!r}")
        self._last_key = key
        full = (root if root.endswith("/") else root + "/") + path
        rep = self.report
        if entry.kind == "dir":
            self._struct(header(path, tarfile.DIRTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid))
            self._record({"path": path, "type": "dir", "mode": stat.S_IMODE(entry.mode), "mtime_ns": entry.mtime_ns})
            return
        if entry.kind == "symlink":
            try:
                target = os.readlink(full)
            except OSError as exc:
                rep.skipped.append({"path": path, "reason": exc.strerror or str(exc)})
                return
            self._struct(header(path, tarfile.SYMTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid, linkname=target))
            self._record({"path": path, "type": "symlink", "mode": stat.S_IMODE(entry.mode), "mtime_ns": entry.mtime_ns, "target": target})
            self._count(path, "symlink:" + target)
            return
        self._add_file(full, entry)

    def _add_file(self, full: str, entry: Entry) -> None:
        rep = self.report
        path = entry.path
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            rep.skipped.append({"path": path, "reason": exc.strerror or str(exc)})
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return  # replaced by something else since the walk: never read it
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                first, digest = self._links[key]
                self._struct(header(path, tarfile.LNKTYPE, mode=st.st_mode, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid, linkname=first))
                self._record({"path": path, "type": "hardlink", "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns, "target": first, "size": st.st_size, "sha256": digest})
                self._count(path, digest)
                return
            size = st.st_size
            self._struct(header(path, tarfile.REGTYPE, mode=st.st_mode, size=size, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid))
            h = hashlib.sha256()
            remaining = size
            try:
                while remaining > 0:
                    chunk = os.read(fd, min(CHUNK, remaining))
                    if not chunk:
                        break
                    h.update(chunk)
                    self._write(chunk)
                    remaining -= len(chunk)
                    if self._progress:
                        self._progress(0, len(chunk))
            except OSError as exc:
                # The header is out: finish the member with zeros and report it.
                rep.skipped.append({"path": path, "reason": f"read error: {exc.strerror or exc}"})
            changed = remaining > 0
            while remaining > 0:  # the file shrank while read: keep the stream valid
                zeros = bytes(min(CHUNK, remaining))
                h.update(zeros)
                self._write(zeros)
                remaining -= len(zeros)
            self._struct(pad(size))
            after = os.fstat(fd)
            if changed or after.st_size != size or after.st_mtime_ns != st.st_mtime_ns:
                rep.changed.append(path)
        finally:
            os.close(fd)
        digest = h.hexdigest()
        if st.st_nlink > 1:
            self._links[key] = (path, digest)
        self._file_record(path, stat.S_IMODE(st.st_mode), st.st_mtime_ns, size, digest)
        rep.total_size += size
        self._count(path, digest)

    def _count(self, path: str, content_id: str) -> None:
        rep = self.report
        rep.total_files += 1
        base = path.rsplit("/", 1)[-1]
        dot = base.rfind(".")
        ext = base[dot:].lower() if dot > 0 else "(none)"
        rep.file_types[ext] = rep.file_types.get(ext, 0) + 1
        self._project.update(project_hash_line(os.fsencode(path), content_id))
        if self._progress:
            self._progress(1, 0)

    def add_manifest(self, *, mtime: int) -> str:
        """The manifest member, from the spool; returns its SHA-256."""
        spool = self._spool
        size = spool.tell()
        spool.seek(0)
        self._struct(header(MANIFEST_NAME, tarfile.REGTYPE, mode=0o600, size=size, mtime=mtime))
        h = hashlib.sha256()
        while chunk := spool.read(CHUNK):
            h.update(chunk)
            self._write(chunk)
        spool.close()
        self._struct(pad(size))
        return h.hexdigest()

    def add_metadata(self, metadata: dict, *, manifest_sha256: str, mtime: int) -> dict:
        """The last member: the metadata, sealed with the archive's structure
        hash, the manifest's hash and its own hash (see :func:`seal`)."""
        metadata = dict(metadata, manifest_sha256=manifest_sha256, structure_sha256=self._structure.hexdigest())
        data, metadata = seal(metadata)
        self._write(metadata_header(len(data), mtime))
        self._write(data + pad(len(data)))
        return metadata

    def finish_hash(self) -> str:
        return self._project.hexdigest()

    def close(self) -> None:
        self._write(ZERO_BLOCK * 2)
        self._out.close()

    def abort(self) -> None:
        self._out.abort()
        self._spool.close()

