"""What changed between two backups, or between a backup and the working
tree (``backup.diff``), and what a backup holds (``backup.ls``).

Everything is read from manifests: an archive's manifest lists its whole
tree (an incremental's too), with each file's size, mode, times and
SHA-256 and each symlink's target, so no member is extracted.  A manifest
comes from the local cache that creates fill (:class:`ManifestCache`) when
that entry still describes the archive, else from one streaming pass over
the archive (every header and seal checked on the way).

Manifests and the selection are both in tree order
(:func:`backup_lib.selection.tree_key`), so two trees are compared in one
merge pass: memory holds the manifests and the changes, never a map of
every path.  Against the working tree, a file whose ``lstat`` equals its
record (size, mtime, mode, and inode and ctime where recorded, as an
incremental create judges it) is unchanged without being read; any other
file is hashed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import stat as _stat
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .errors import IntegrityError
from .report import display_path
from .selection import tree_key

__all__ = ["Change", "DiffResult", "read_manifest", "compare", "diff_manifests", "diff_worktree", "worktree_selection",
           "list_entries", "ls_record", "ls_line", "stat_rows", "project_of", "top_level", "warn_other_project"]

_RACY_NS = 2 * 10**9  # as the incremental create: a file this close to the backup's start is hashed


def read_manifest(path: str, *, identity_file: str | None = None, cache_dir: str | None = None) -> tuple[bytes, dict]:
    """(the manifest, the metadata) of a backup: the manifest from the local
    cache when its entry is fresh, else from the archive (which is then
    cached).  The metadata is the index's (an encrypted backup's public
    part) unless the archive had to be read."""
    from .archive import CHUNK, ArchiveReader, parse_metadata
    from .incremental import ManifestCache, default_cache_dir
    from .store import read_metadata

    meta = read_metadata(path)
    cache = ManifestCache(cache_dir or default_cache_dir(), os.path.dirname(os.path.abspath(path)))
    data = cache.get(path, meta.get("manifest_sha256"), identity_file)
    if data is not None:
        return data, meta
    reader = ArchiveReader(path, identity_file=identity_file)
    for _ti, fobj in reader:
        if fobj is not None:
            while fobj.read(CHUNK):
                pass
    if reader.manifest_bytes is None or reader.metadata_bytes is None:
        raise IntegrityError(f"{path}: not a backup made by this toolkit (no manifest and metadata at its end)")
    if reader.problems:
        raise IntegrityError(f"{path}: {reader.problems[0]}")
    data = reader.manifest_bytes
    full = parse_metadata(reader.metadata_bytes, path)
    import zstandard

    recipients = (full.get("encryption") or {}).get("recipients") or None
    cache.put(path, zstandard.ZstdCompressor(level=1).compress(data), hashlib.sha256(data).hexdigest(), encrypt_to=recipients)
    return data, full


def project_of(path: str, meta: dict) -> tuple[str | None, str | None]:
    """(the <name> in the archive's file name, the project_root of its metadata)."""
    from .store import parse_backup_name

    info = parse_backup_name(os.path.basename(path))
    return (info["name"] if info else None), meta.get("project_root")


def top_level(path: str) -> str:
    """The top-level folder a path is in ("" for a file at the root)."""
    cut = path.find("/")
    return path[:cut] if cut >= 0 else ""


# ----------------------------------------------------------------- the diff


def _octal(mode) -> str:
    return f"{mode:o}" if type(mode) is int else repr(mode)


def _entry(rec: dict) -> dict:
    """What a diff shows of a record: hard links are files (same content)."""
    kind = rec.get("type")
    out = {"type": "file" if kind == "hardlink" else kind, "mode": rec.get("mode")}
    if kind in ("file", "hardlink"):
        out["size"] = rec.get("size", 0)
        out["sha256"] = rec.get("sha256")
    elif kind == "symlink":
        out["target"] = rec.get("target")
    return out


@dataclass(frozen=True)
class Change:
    path: str
    status: str  # "added" | "removed" | "changed"
    old: dict | None
    new: dict | None
    what: tuple[str, ...] = ()  # changed: "type", "content", "mode", "target"

    @property
    def size_delta(self) -> int:
        return (self.new or {}).get("size", 0) - (self.old or {}).get("size", 0)

    def as_dict(self) -> dict:
        return {"path": self.path, "status": self.status, "what": list(self.what), "old": self.old, "new": self.new}

    def line(self) -> str:
        """``A path``, ``D path``, ``M path (mode 644 -> 755)``, ``T path (file -> symlink)``."""
        entry = self.new or self.old
        shown = display_path(self.path + ("/" if entry.get("type") == "dir" else ""))
        if self.status == "added":
            return f"A  {shown}"
        if self.status == "removed":
            return f"D  {shown}"
        if "type" in self.what:
            return f"T  {shown}  ({self.old['type']} -> {self.new['type']})"
        notes = []
        if "content" in self.what:
            notes.append(f"content, {_signed(self.size_delta)} bytes" if self.size_delta else "content")
        if "mode" in self.what:
            notes.append(f"mode {_octal(self.old['mode'])} -> {_octal(self.new['mode'])}")
        if "target" in self.what:
            notes.append(f"-> {display_path(self.new['target'])}, was -> {display_path(self.old['target'])}")
        return f"M  {shown}  ({'; '.join(notes)})"


def _signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def compare(path: str, old: dict, new: dict) -> Change | None:
    """Two entries of one path (as :func:`_entry` gives them)."""
    if old["type"] != new["type"]:
        return Change(path, "changed", old, new, ("type",))
    what = []
    if old["type"] == "file" and old.get("sha256") != new.get("sha256"):
        what.append("content")
    if old["type"] == "symlink":
        if old.get("target") != new.get("target"):
            what.append("target")
    elif old.get("mode") != new.get("mode"):
        what.append("mode")
    return Change(path, "changed", old, new, tuple(what)) if what else None


@dataclass
class DiffResult:
    a: str  # what was compared: an archive, or the working tree's root
    b: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hashed: int = 0  # working tree: files read because lstat differed from the record

    @property
    def differ(self) -> bool:
        return bool(self.changes)

    def summary(self) -> dict:
        out = {"added": 0, "removed": 0, "changed": 0}
        for ch in self.changes:
            out[ch.status] += 1
        out["size_delta"] = sum(ch.size_delta for ch in self.changes)
        return out

    def as_dict(self, *, with_stat: bool = False) -> dict:
        out = {"a": self.a, "b": self.b, "differ": self.differ, "summary": self.summary(),
               "changes": [c.as_dict() for c in self.changes], "warnings": list(self.warnings), "hashed": self.hashed}
        if with_stat:
            out["stat"] = stat_rows(self.changes)
        return out


def stat_rows(changes: Iterable[Change]) -> list[dict]:
    """Counts and bytes by top-level folder ("" for files at the root), sorted by folder."""
    rows: dict[str, dict] = {}
    for ch in changes:
        folder = ch.path if "/" not in ch.path and (ch.new or ch.old or {}).get("type") == "dir" else top_level(ch.path)
        row = rows.setdefault(folder, {"folder": folder, "added": 0, "removed": 0, "changed": 0, "bytes_added": 0,
                                       "bytes_removed": 0})
        row[ch.status] += 1
        if ch.size_delta > 0:
            row["bytes_added"] += ch.size_delta
        else:
            row["bytes_removed"] -= ch.size_delta
    return [rows[k] for k in sorted(rows, key=lambda f: tree_key(os.fsencode(f)))]


def _ordered(records: Iterable[dict], label: str) -> Iterator[tuple[bytes, dict]]:
    """(tree key, record) in tree order; a manifest out of order is damaged."""
    last = None
    for rec in records:
        path = rec.get("path")
        if not isinstance(path, str):
            raise IntegrityError(f"{label}: a manifest record without a path")
        key = tree_key(os.fsencode(path))
        if last is not None and key <= last:
            raise IntegrityError(f"{label}: the manifest is not in tree order at {display_path(path)}")
        last = key
        yield key, rec


_END = object()


def _merge(a: Iterator, b: Iterator) -> Iterator[tuple[object, object]]:
    """Pairs (a item or None, b item or None) of two key-ordered streams."""
    x, y = next(a, _END), next(b, _END)
    while x is not _END or y is not _END:
        if y is _END or (x is not _END and x[0] < y[0]):
            yield x[1], None
            x = next(a, _END)
        elif x is _END or y[0] < x[0]:
            yield None, y[1]
            y = next(b, _END)
        else:
            yield x[1], y[1]
            x, y = next(a, _END), next(b, _END)


def diff_manifests(a: bytes, b: bytes, *, a_label: str = "a", b_label: str = "b") -> DiffResult:
    """What changed from manifest ``a`` (the older, usually) to ``b``."""
    from .archive import iter_manifest

    result = DiffResult(a_label, b_label)
    for old, new in _merge(_ordered(iter_manifest(a), a_label), _ordered(iter_manifest(b), b_label)):
        if new is None:
            result.changes.append(Change(old["path"], "removed", _entry(old), None))
        elif old is None:
            result.changes.append(Change(new["path"], "added", None, _entry(new)))
        else:
            ch = compare(old["path"], _entry(old), _entry(new))
            if ch is not None:
                result.changes.append(ch)
    return result


def _same_stat(st, rec: dict) -> bool:
    """lstat equals the record (as archive.writer's check for incrementals)."""
    if st.st_size != rec.get("size") or st.st_mtime_ns != rec.get("mtime_ns") or _stat.S_IMODE(st.st_mode) != rec.get("mode"):
        return False
    ino, ctime = rec.get("ino"), rec.get("ctime_ns")
    if ino is not None and st.st_ino != ino:
        return False
    return ctime is None or st.st_ctime_ns == ctime


def _hash_file(full: str) -> str:
    h = hashlib.sha256()
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def diff_worktree(manifest: bytes, selection, *, started_ns: int | None = None, a_label: str = "backup") -> DiffResult:
    """What changed from a backup's manifest to the working tree now
    (``selection``: :func:`backup_lib.selection.select_files` with the same
    settings as create, files stat'ed).  A file is read only when its
    ``lstat`` differs from its record, or when it changed so close to the
    backup's start (``started_ns``) that its record may predate a write."""
    from .archive import iter_manifest

    root = selection.root
    result = DiffResult(a_label, root)
    prefix = root if root.endswith("/") else root + "/"

    def current(entry, rec: dict | None) -> dict | None:
        st = entry.st
        mode = _stat.S_IMODE(st.st_mode)
        if entry.kind == "dir":
            return {"type": "dir", "mode": mode}
        full = prefix + entry.path
        if entry.kind == "symlink":
            try:
                return {"type": "symlink", "mode": mode, "target": os.readlink(full)}
            except OSError as exc:
                result.warnings.append(f"cannot read the symlink {display_path(entry.path)}: {exc.strerror}")
                return None
        out = {"type": "file", "mode": mode, "size": st.st_size, "sha256": None}
        if rec is None or rec.get("type") not in ("file", "hardlink"):
            return out  # added, or another type: no need to read it
        racy = started_ns is not None and max(st.st_mtime_ns, st.st_ctime_ns) >= started_ns - _RACY_NS
        if _same_stat(st, rec) and not racy:
            out["sha256"] = rec.get("sha256")
            return out
        try:
            out["sha256"] = _hash_file(full)
            result.hashed += 1
        except OSError as exc:
            result.warnings.append(f"cannot read {display_path(entry.path)}: {exc.strerror}: left out of the diff")
            return None
        return out

    def tree_items():
        for e in selection.entries:
            yield tree_key(os.fsencode(e.path)), e

    quiet_before = None if started_ns is None else started_ns - _RACY_NS
    for rec, entry in _merge(_ordered(iter_manifest(manifest), a_label), tree_items()):
        if entry is None:
            result.changes.append(Change(rec["path"], "removed", _entry(rec), None))
            continue
        if (rec is not None and entry.kind == "file" and rec.get("type") in ("file", "hardlink") and _same_stat(entry.st, rec)
                and (quiet_before is None or max(entry.st.st_mtime_ns, entry.st.st_ctime_ns) < quiet_before)):
            continue  # the common case, unchanged by lstat: nothing to build
        now = current(entry, rec)
        if now is None:
            continue
        if rec is None:
            result.changes.append(Change(entry.path, "added", None, now))
            continue
        ch = compare(entry.path, _entry(rec), now)
        if ch is not None:
            result.changes.append(ch)
    for path, reason in selection.skipped:
        result.warnings.append(f"skipped {display_path(path)}: {reason}")
    return result


def worktree_selection(root: str, *, backup_dir: str, include=(), exclude=(), default_excludes: bool = True,
                       db_path: str | None = None, db_url: str | None = None, other_backup_dirs=()):
    """What ``backup.create`` would select now: the same rules, the same
    paths left out (:class:`backup_lib.project.ProjectRules`)."""
    from .project import ProjectRules

    return ProjectRules.for_root(root, backup_dir=backup_dir, include=include, exclude=exclude, default_excludes=default_excludes,
                                 db_path=db_path, db_url=db_url, other_backup_dirs=other_backup_dirs).select(True)


# ---------------------------------------------------------------- listing


def _matcher(patterns):
    from .restore import include_matcher

    return include_matcher(patterns)


def list_entries(manifest: bytes, patterns=()) -> Iterator[dict]:
    """The manifest's records, in tree order, that the gitignore-style
    ``patterns`` select: a path matches when it, or a folder above it,
    matches (as ``restore --include`` selects)."""
    from .archive import iter_manifest
    from .extract import _selected

    includes = _matcher(patterns)
    dirs: dict[str, bool] = {}  # folder -> selected; filled in tree order (a folder before its contents)
    for rec in iter_manifest(manifest):
        path = rec.get("path")
        if not isinstance(path, str):
            raise IntegrityError("a manifest record without a path")
        if includes is None:
            yield rec
            continue
        is_dir = rec.get("type") == "dir"
        hit = _selected(includes, path.split("/"), is_dir, dirs)
        if is_dir:
            dirs[path] = hit
        if hit:
            yield rec


_TYPE_BITS = {"file": _stat.S_IFREG, "hardlink": _stat.S_IFREG, "dir": _stat.S_IFDIR, "symlink": _stat.S_IFLNK}


def ls_record(rec: dict) -> dict:
    """A listing's fields of a record (JSON)."""
    out = {"path": rec.get("path"), "type": rec.get("type"), "mode": rec.get("mode"), "size": rec.get("size", 0),
           "mtime_ns": rec.get("mtime_ns")}
    for key in ("sha256", "target"):
        if rec.get(key) is not None:
            out[key] = rec[key]
    return out


def ls_line(rec: dict) -> str:
    """``-rw-r--r--       1234  2026-06-15 02:00:03  app/models.py`` (times in UTC)."""
    kind = rec.get("type")
    mode = rec.get("mode") if isinstance(rec.get("mode"), int) else 0
    perms = _stat.filemode(_TYPE_BITS.get(kind, 0) | (mode & 0o7777))
    ns = rec.get("mtime_ns")
    try:
        when = _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        when = "-" * 19
    size = rec.get("size", 0) if kind in ("file", "hardlink") else 0
    size = size if type(size) is int else "?"  # (a manifest that does not verify)
    path = rec.get("path", "")
    line = f"{perms}  {size:>12}  {when}  {display_path(path + ('/' if kind == 'dir' else ''))}"
    if kind == "symlink":
        line += f" -> {display_path(rec.get('target', ''))}"
    elif kind == "hardlink":
        line += f" link to {display_path(rec.get('target', ''))}"
    return line


def warn_other_project(a_path: str, a_meta: dict, b_name: str | None, b_root: str | None, b_label: str) -> str | None:
    """A warning when two sides are backups of different projects: by the
    <name> in the archives' names, else by the project root each records."""
    a_name, a_root = project_of(a_path, a_meta)
    if a_name and b_name:
        if a_name == b_name:
            return None
        left, right = a_name, b_name
    elif a_root and b_root and os.path.normpath(a_root) != os.path.normpath(b_root):
        left, right = a_root, b_root
    else:
        return None
    return (f"{display_path(os.path.basename(a_path))} and {display_path(b_label)} are of different projects "
            f"({display_path(left)}, {display_path(right)}): compared all the same")
