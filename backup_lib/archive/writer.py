"""Writing an archive: the selected entries in tree order, each file read
once and hashed as it is written, then the manifest and the sealed metadata."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _encode_ascii
from typing import Callable, NamedTuple

from ..selection import Entry, tree_key
from .manifest import MANIFEST_NAME, project_hash_line
from .seals import metadata_header, seal
from .streams import CHUNK
from .tar import ZERO_BLOCK, header, pad

__all__ = ["WriteReport", "ArchiveWriter", "Incremental", "Prior"]


@dataclass
class WriteReport:
    records: dict[str, dict] = field(default_factory=dict)  # path -> record, only with keep_records
    skipped: list[dict] = field(default_factory=list)  # unreadable: {path, reason}
    changed: list[str] = field(default_factory=list)  # changed while read
    total_files: int = 0
    total_size: int = 0
    file_types: dict[str, int] = field(default_factory=dict)
    new: int = 0  # entries, incremental only
    modified: int = 0
    unchanged: int = 0


def _json_str(text: str) -> bytes:
    """json.dumps(text) for a str, without its dispatch."""
    return _encode_ascii(text).encode()


class Prior(NamedTuple):
    """What the parent backup's manifest says of a path (incremental create)."""

    type: str
    mode: int
    mtime_ns: int
    size: int
    sha256: str | None
    target: str | None
    ino: int | None
    ctime_ns: int | None

    @classmethod
    def from_record(cls, rec: dict, shared: dict | None = None) -> "Prior":
        """``shared``: one object per distinct type and mode across the
        records read (100,000 of them each held their own: 8 MB)."""
        kind, mode, digest = rec.get("type"), rec.get("mode"), rec.get("sha256")
        if kind == "file" and not (type(digest) is str and len(digest) == 64):
            kind = "unusable"  # never carried over: the file is read and stored as new
        if shared is not None:  # (plain values only: a hostile manifest may hold lists)
            kind = shared.setdefault(kind, kind) if type(kind) is str else kind
            mode = shared.setdefault(mode, mode) if type(mode) is int else mode
        mtime, ctime = rec.get("mtime_ns"), rec.get("ctime_ns")
        return cls(kind, mode, mtime, rec.get("size", 0), digest, rec.get("target"), rec.get("ino"),
                   mtime if ctime == mtime else ctime)  # (one object when equal, as they mostly are)


@dataclass
class Incremental:
    """How an incremental create judges each entry against its parent.

    A file whose ``lstat`` matches the parent's record (size, mtime, mode,
    and inode and ctime where the parent recorded them) is not opened: its
    record, hash included, is carried over.  A file whose times are not
    safely older than the parent's start (git's "racily clean" case), or any
    file under ``rehash``, is read and hashed, and stored only when its
    content or mode differs.  ``force_groups``: hard-link groups (dev, ino)
    stored whole because a link is new or was re-pointed.

    The writer consumes ``priors``: each path's record is taken out of the
    dict as the path is written (the parent's records are freed while the
    new manifest grows); what is left at the end was removed.
    """

    priors: dict[str, Prior]
    started_ns: int | None = None
    rehash: bool = False
    force_groups: frozenset = frozenset()
    racy_margin_ns: int = 2 * 10**9  # coarse file system clocks and the time a scan takes to start


_HOLD = 4 << 20  # a changed file up to this size is kept from its hashing read for the write


class ArchiveWriter:
    """Writes a tar stream into a compressor; hashes each file as it goes.

    With ``incremental``, only what changed since the parent goes into the
    tar stream; the manifest still lists the whole tree (unchanged entries
    carry the parent's hashes), so that project_hash and a restore of the
    chain see every entry.
    """

    def __init__(self, out, *, progress: Callable[[int, int], None] | None = None, keep_records: bool = False,
                 incremental: Incremental | None = None):
        import zstandard

        self._out = out
        self._write = out.write
        self._progress = progress
        self._links: dict[tuple[int, int], tuple[str, str, bool]] = {}  # (dev, ino) -> (path, sha256, stored here)
        self._structure = hashlib.sha256()  # every byte but member data: headers, padding
        self.report = WriteReport()
        # Memory stays flat whatever the file count: manifest lines are
        # compressed as they come (about 4x: 100,000 entries in ~5 MB), in
        # memory, never in a temporary file (an encrypted backup writes no
        # plaintext to disk); project_hash is computed as entries come (they
        # come in tree order, the order project_hash is defined in).
        self._spool_buf = io.BytesIO()
        self._spool = zstandard.ZstdCompressor(level=1).stream_writer(self._spool_buf, closefd=False)
        self._spool_size = 0
        self._project = hashlib.sha256()
        self._last_key = b""
        self._keep = keep_records
        self._inc = incremental
        self._matched = 0  # paths of this tree the parent had
        self._prior_count = len(incremental.priors) if incremental is not None else 0

    def _line(self, line: bytes) -> None:
        self._spool.write(line)
        self._spool_size += len(line)

    def _record(self, rec: dict) -> None:
        self._line(json.dumps(rec, ensure_ascii=True, separators=(",", ":")).encode() + b"\n")
        if self._keep:
            self.report.records[rec["path"]] = rec

    def _file_record(self, path: str, st, digest: str) -> None:
        """The common record, formatted directly (json.dumps per file costs)."""
        mode = stat.S_IMODE(st.st_mode)
        if self._keep:
            self._record({"path": path, "type": "file", "mode": mode, "mtime_ns": st.st_mtime_ns, "size": st.st_size,
                          "sha256": digest, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns})
            return
        self._line(
            b'{"path":%s,"type":"file","mode":%d,"mtime_ns":%d,"size":%d,"sha256":"%s","ino":%d,"ctime_ns":%d}\n'
            % (_json_str(path), mode, st.st_mtime_ns, st.st_size, digest.encode(), st.st_ino, st.st_ctime_ns)
        )

    def _struct(self, data: bytes) -> None:
        self._structure.update(data)
        self._write(data)

    def _tally(self, prior, stored: bool) -> None:
        """new / modified / unchanged, for an incremental's metadata."""
        rep = self.report
        if prior is not None:
            self._matched += 1
        if prior is None:
            rep.new += 1
        elif stored:
            rep.modified += 1
        else:
            rep.unchanged += 1

    # -- members -----------------------------------------------------------
    def add(self, root: str, entry: Entry) -> None:
        path = entry.path
        key = tree_key(os.fsencode(path))
        if key <= self._last_key:
            raise ValueError(f"entries must come in tree order: {path!r}")
        self._last_key = key
        full = (root if root.endswith("/") else root + "/") + path
        rep = self.report
        inc = self._inc
        prior = inc.priors.pop(path, None) if inc is not None else None
        if entry.kind == "dir":
            mode = stat.S_IMODE(entry.mode)
            stored = inc is None or prior is None or prior.type != "dir" or prior.mode != mode
            if stored:
                self._struct(header(path, tarfile.DIRTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid))
            self._record({"path": path, "type": "dir", "mode": mode, "mtime_ns": entry.mtime_ns})
            if inc is not None:
                self._tally(prior, stored)
            return
        if entry.kind == "symlink":
            try:
                target = os.readlink(full)
            except OSError as exc:
                rep.skipped.append({"path": path, "reason": exc.strerror or str(exc)})
                return
            stored = inc is None or prior is None or prior.type != "symlink" or prior.target != target
            if stored:
                self._struct(header(path, tarfile.SYMTYPE, mode=entry.mode, mtime=entry.mtime_ns // 10**9, uid=entry.uid, gid=entry.gid, linkname=target))
            self._record({"path": path, "type": "symlink", "mode": stat.S_IMODE(entry.mode), "mtime_ns": entry.mtime_ns, "target": target})
            self._count(path, "symlink:" + target)
            if inc is not None:
                self._tally(prior, stored)
            return
        self._add_file(full, entry, prior)

    def _add_file(self, full: str, entry: Entry, prior: Prior | None) -> None:
        rep = self.report
        path = entry.path
        inc = self._inc
        st = entry.st
        if inc is not None and st is not None and self._carry_over(path, st, prior):
            return
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            rep.skipped.append({"path": path, "reason": exc.strerror or str(exc)})
            return
        stored = True
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return  # replaced by something else since the walk: never read it
            key = (st.st_dev, st.st_ino)
            if self._further_link(path, st, prior):
                return
            digest = None
            held = None
            if inc is not None and prior is not None and prior.type == "file" and key not in inc.force_groups:
                digest, held = self._hash_only(fd, st, path)
                if digest == prior.sha256 and stat.S_IMODE(st.st_mode) == prior.mode:
                    stored = False  # same content: only times or the inode moved
                elif held is None:
                    os.lseek(fd, 0, os.SEEK_SET)
            if stored:
                digest = self._write_member(fd, st, path, held, digest)
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            self._links[key] = (path, digest, stored)
        self._file_record(path, st, digest)
        rep.total_size += st.st_size
        self._count(path, digest)
        if inc is not None:
            self._tally(prior, stored)

    def _carry_over(self, path: str, st, prior: Prior | None) -> bool:
        """Incremental: record a file from what ``lstat`` said in the walk,
        without opening it, when that is enough: an unchanged file (its hash
        is the parent's), or a further link to an inode already recorded."""
        inc = self._inc
        key = (st.st_dev, st.st_ino)
        if self._further_link(path, st, prior):
            return True
        if (prior is None or prior.type != "file" or inc.rehash or key in inc.force_groups
                or not _same_stat(st, prior) or _racy(st, inc)):
            return False
        if st.st_nlink > 1:
            self._links[key] = (path, prior.sha256, False)
        self._file_record(path, st, prior.sha256)
        self.report.total_size += st.st_size
        self._count(path, prior.sha256)
        self._tally(prior, False)
        return True

    def _further_link(self, path: str, st, prior: Prior | None) -> bool:
        """A further path of an inode already recorded: a hard link, stored
        as a member when its first path was (always, in a full backup)."""
        key = (st.st_dev, st.st_ino)
        if st.st_nlink <= 1 or key not in self._links:
            return False
        first, digest, stored = self._links[key]
        if stored:
            self._struct(header(path, tarfile.LNKTYPE, mode=st.st_mode, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid, linkname=first))
        self._record({"path": path, "type": "hardlink", "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns, "target": first,
                      "size": st.st_size, "sha256": digest})
        self._count(path, digest)
        if self._inc is not None:
            self._tally(prior, stored)
        return True

    def _hash_only(self, fd: int, st, path: str) -> tuple[str | None, bytes | None]:
        """Read and hash a file without storing it; small ones are kept for
        the write that may follow.  None on a read error (then it is stored,
        and the write reports the error)."""
        h = hashlib.sha256()
        keep = st.st_size <= _HOLD
        parts = []
        try:
            while chunk := os.read(fd, CHUNK):
                h.update(chunk)
                if keep:
                    parts.append(chunk)
        except OSError:
            os.lseek(fd, 0, os.SEEK_SET)
            return None, None
        data = b"".join(parts) if keep else None
        if keep and len(data) != st.st_size:
            data = None  # changed while read: the write reads it again
            os.lseek(fd, 0, os.SEEK_SET)
        return h.hexdigest(), data

    def _write_member(self, fd: int, st, path: str, held: bytes | None, held_digest: str | None) -> str:
        rep = self.report
        size = st.st_size
        self._struct(header(path, tarfile.REGTYPE, mode=st.st_mode, size=size, mtime=st.st_mtime_ns // 10**9, uid=st.st_uid, gid=st.st_gid))
        if held is not None:
            self._write(held)
            if self._progress:
                self._progress(0, size)
            self._struct(pad(size))
            return held_digest
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
        return h.hexdigest()

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

    @property
    def removed(self) -> int:
        """Paths the parent had that this tree no longer has (incremental)."""
        return self._prior_count - self._matched

    def add_manifest(self, *, mtime: int) -> str:
        """The manifest member, from the spool; returns its SHA-256."""
        import zstandard

        self._spool.close()
        size = self._spool_size
        self._struct(header(MANIFEST_NAME, tarfile.REGTYPE, mode=0o600, size=size, mtime=mtime))
        h = hashlib.sha256()
        written = 0
        for chunk in zstandard.ZstdDecompressor().read_to_iter(io.BytesIO(self._spool_buf.getbuffer()), read_size=CHUNK, write_size=CHUNK):
            h.update(chunk)
            self._write(chunk)
            written += len(chunk)
        if written != size:
            raise ValueError("the manifest spool lost bytes")
        self._struct(pad(size))
        return h.hexdigest()

    @property
    def compressed_manifest(self) -> bytes:
        """The manifest as one zstd frame (after :meth:`add_manifest`)."""
        return self._spool_buf.getvalue()

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



def _same_stat(st, prior: Prior) -> bool:
    """What ``lstat`` says equals what the parent recorded (an older
    manifest without inode and ctime: size, mtime and mode only)."""
    if st.st_size != prior.size or st.st_mtime_ns != prior.mtime_ns or stat.S_IMODE(st.st_mode) != prior.mode:
        return False
    if prior.ino is not None and st.st_ino != prior.ino:
        return False
    return prior.ctime_ns is None or st.st_ctime_ns == prior.ctime_ns


def _racy(st, inc: Incremental) -> bool:
    """Changed so close to the parent's start that its record may predate a
    later write in the same clock tick (git's racy-clean rule)."""
    if inc.started_ns is None:
        return True
    return max(st.st_mtime_ns, st.st_ctime_ns) >= inc.started_ns - inc.racy_margin_ns
