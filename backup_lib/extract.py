"""One checked, streaming pass over an archive: verify it, and optionally
extract it into a fresh private directory.

Checks on every member, before anything is written:

* names: not absolute, no ``..``, no duplicates;
* types: regular files, directories, symlinks and hard links only (devices
  and FIFOs are refused);
* no member below a symlink or a file of the archive (extraction never
  follows a link; symlinks are created last, after every file is written);
* hard links only to regular files the archive itself stored earlier;
* tarfile's own ``data`` filter (PEP 706) as a second opinion;
* setuid, setgid and sticky bits are dropped.

At the end: every member's size and SHA-256 equal the manifest, nothing
missing or extra, and ``project_hash`` recomputed equal to the metadata's.

Symlinks are made last, once it is known where they lead
(:func:`resolve_link`, :func:`decide_links`): a restore judges them
against the tree it will leave, target included (``defer_finish`` and
:func:`finish_extraction`); an extraction into a fresh folder (a database
restore) judges them among the archive's own members.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
from dataclasses import dataclass, field
from typing import Callable

from .archive import CHUNK, ArchiveReader, iter_manifest, parse_metadata, project_hash_line
from .incremental import INCREMENTAL_TYPE
from .selection import tree_key
from .errors import BackupError, IntegrityError, NotABackupError, UnsafeArchiveError
from .report import display_path
from .wildmatch import PatternList

__all__ = ["ScanResult", "scan_archive", "scan_chain", "scan_backup", "is_incremental", "finish_extraction", "resolve_link", "decide_links", "link_stays_inside", "OUTSIDE", "LOOP"]

_MAX_LINK_DEPTH = 40
_ZERO_CHUNK = bytes(CHUNK)
# What one pass remembers per path (the archive's members and the folders
# they imply) is bounded, so that an archive of many tiny members, which
# compresses 1000:1, cannot take unbounded memory: at most MAX_ENTRIES paths
# and MAX_PATH_BYTES of their names, about 300 bytes each beside the name.
# That is 20 times the largest tree the bench tries (100,000 files).
MAX_ENTRIES = 2_000_000
MAX_PATH_BYTES = 256 << 20
MAX_ERRORS = 100  # verification errors listed; the rest are counted


@dataclass
class ScanResult:
    path: str
    metadata: dict | None = None
    errors: list[str] = field(default_factory=list)
    members: int = 0
    written: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)  # what an extraction writes (dry run)
    actual: dict[str, tuple] = field(default_factory=dict, repr=False)  # path -> (type, size, sha256 digest or target)

    def sha256_of(self, path: str) -> str | None:
        """The SHA-256 of a regular member, as read from the archive (None
        from a chain's result, which checked each one already)."""
        got = self.actual.get(path)
        return got[2].hex() if got and got[0] == "file" and got[2] is not None else None
    outside_links: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    bytes_read: int = 0
    # What the archive holds: path -> "dir" | "file" | "symlink" | "hardlink"
    # (directories implied by a member's path included).
    kinds: dict[str, str] = field(default_factory=dict, repr=False)
    # With defer_finish: (times of directories and symlinks, symlinks, directory modes).
    pending: tuple | None = field(default=None, repr=False)
    chain: list[str] = field(default_factory=list)  # scan_chain: the archives read, newest first

    @property
    def ok(self) -> bool:
        return not self.errors


def _components(name: str) -> list[str]:
    """A member name's components.  Refused: absolute names, ``..``, and any
    name the writer never writes (empty, ``.`` or empty components), which
    tars would each normalize in their own way."""
    if name.startswith("/"):
        raise UnsafeArchiveError(f"member {name!r} has an absolute name")
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"member {name!r} contains '..'")
    if "" in parts or "." in parts:
        raise UnsafeArchiveError(f"member {name!r} is not a plain relative path (empty or '.' components)")
    return parts


# What a path is in the tree a restore leaves: (kind, link text, whether the
# restore itself provides it).  kind: "dir", "file", "symlink" or "missing".
Lookup = Callable[[str], "tuple[str, str | None, bool]"]

OUTSIDE, LOOP = "outside", "loop"


def resolve_link(link_path: str, text: str, lookup: Lookup, max_hops: int = _MAX_LINK_DEPTH) -> tuple[str | None, set[str]]:
    """Where does a symlink at ``link_path`` (relative to the root) with
    ``text`` lead, in the tree ``lookup`` describes?  Component by
    component, as the kernel resolves it: a directory is entered, a symlink
    is replaced by its text (absolute text, or ``..`` above the root, means
    outside), and below a component that is missing or not a directory the
    rest is taken lexically (it may exist later), so ``missing/../up`` is
    still looked at.  Returns (None, used) when it stays inside, (OUTSIDE,
    used) or (LOOP, used) (more than ``max_hops`` links: a loop, or a chain
    the kernel would refuse as one); ``used`` holds the links provided by
    the restore that were followed."""
    used: set[str] = set()
    if text.startswith("/"):
        return OUTSIDE, used
    stack = link_path.split("/")[:-1]
    paths = []  # paths[i]: "/".join(stack[: i + 1])
    for part in stack:
        paths.append(paths[-1] + "/" + part if paths else part)
    real = len(stack)  # stack[:real] are directories of the tree; below them: lexical
    todo = text.split("/")[::-1]
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return OUTSIDE, used
            stack.pop()
            paths.pop()
            real = min(real, len(stack))
            continue
        here = paths[-1] + "/" + part if paths else part
        stack.append(part)
        paths.append(here)
        if real < len(stack) - 1:
            continue  # below something missing: nothing to look up
        kind, nxt, ours = lookup(here)
        if kind == "dir":
            real = len(stack)
        elif kind == "symlink":
            hops += 1
            if hops > max_hops:
                return LOOP, used
            if ours:
                used.add(here)
            if nxt.startswith("/"):
                return OUTSIDE, used
            stack.pop()
            paths.pop()
            todo.extend(nxt.split("/")[::-1])
    return None, used


def link_stays_inside(link_path: str, target: str, links: dict[str, str]) -> bool:
    """Does a symlink at ``link_path`` (archive-relative) resolve inside the
    root of a tree that holds only the archive (``links``: its symlinks)?"""

    def lookup(path):
        nxt = links.get(path)
        return ("symlink", nxt, True) if nxt is not None else ("dir", None, True)

    return resolve_link(link_path, target, lookup)[0] is None


def decide_links(candidates: dict[str, str], lookup_rest: Lookup, *, max_hops: int = _MAX_LINK_DEPTH) -> tuple[dict[str, str], dict[str, str]]:
    """Which of the symlinks a restore would create (``candidates``: path ->
    text) lead outside its root or loop, resolved through each other and
    through ``lookup_rest`` (everything else of the final tree).  A link
    that leads through a refused one is refused with it: so every link
    created resolves in the final tree exactly as it was judged.  Returns
    (accepted, refused: path -> OUTSIDE | LOOP)."""
    refused: dict[str, str] = {}
    users: dict[str, set[str]] = {}  # link -> links resolved through it

    def lookup(path):
        nxt = candidates.get(path)
        if nxt is not None:
            return "symlink", nxt, True
        return lookup_rest(path)

    for path, text in candidates.items():
        verdict, used = resolve_link(path, text, lookup, max_hops)
        for u in used:
            if u != path:
                users.setdefault(u, set()).add(path)
        if verdict is not None:
            refused[path] = verdict
    todo = list(refused)
    while todo:
        path = todo.pop()
        for user in users.pop(path, ()):
            if user not in refused:
                refused[user] = refused[path]
                todo.append(user)
    accepted = {p: t for p, t in candidates.items() if p not in refused}
    return accepted, refused


def _selected(includes: PatternList | None, parts: list[str], is_dir: bool, cache: dict) -> bool:
    """Does --include select this path (it or a folder above it matches)?
    Each folder's answer is computed once, from the nearest folder above
    whose answer is known: linear in the name's length, not quadratic."""
    if includes is None:
        return True
    path = "/".join(parts)
    todo = []
    sub = path
    hit = False
    while (cut := sub.rfind("/")) >= 0:
        sub = sub[:cut]
        known = cache.get(sub)
        if known is not None:
            hit = known
            break
        todo.append(sub)
    for sub in reversed(todo):
        if not hit:
            hit = includes.excludes(os.fsencode(sub), os.fsencode(sub.rpartition("/")[2]), True)
        cache[sub] = hit
    return bool(hit) or bool(includes.excludes(os.fsencode(path), os.fsencode(parts[-1]), is_dir))


# os.fsencode() without its per-call lookups (the manifest check encodes every path)
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_SMALL = 4 << 20  # files up to this size are written by the pool


class _Writers:
    """File creation is mostly kernel time that releases the GIL: a writer
    thread creates small files while the main thread parses and hashes the
    next ones (the decompressor has a thread of its own).  A queue, not a
    Future per file (100,000 of those cost more than the data).  The bytes
    in flight are bounded: on 100,000 files, 8 MiB restored as fast as 16 or
    32 and kept the peak RSS 15-20 MB lower; a second writer thread gained
    nothing on two cores (both create in the same directory, and ext4 makes
    them take turns)."""

    def __init__(self, workers: int = 1, max_bytes: int = 8 << 20):
        import queue
        import threading

        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._inflight = 0  # bytes handed over and not yet written (0: all written)
        self._max = max_bytes
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._run, name=f"restore-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        get = self._queue.get
        while (item := get()) is not None:
            full, chunks, mode, cost = item
            try:
                if self._error is None:
                    self._write(full, chunks, mode)
            except BaseException as exc:  # handed to the main thread
                self._error = self._error or exc
            with self._lock:
                self._inflight -= cost
                self._room.notify()

    @staticmethod
    def _write(full: str, chunks: list[bytes], mode: int) -> None:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def submit(self, full: str, chunks: list[bytes], size: int, mode: int) -> None:
        if self._error is not None:
            raise self._error
        cost = size + 2048  # the objects of a file cost something too
        with self._lock:
            while self._inflight and self._inflight + cost > self._max:
                self._room.wait()
            self._inflight += cost
        self._queue.put((full, chunks, mode, cost))

    def drain(self) -> None:
        """Wait until every file handed over is written (a hard link's
        target, say)."""
        with self._lock:
            while self._inflight:  # every file costs more than 0
                self._room.wait()
        if self._error is not None:
            raise self._error

    def finish(self, *, raise_error: bool = True) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        if raise_error and self._error is not None:
            raise self._error


def scan_archive(
    archive: str,
    *,
    dest: str | None = None,
    includes: PatternList | None = None,
    allow_outside_links: bool = False,
    progress: Callable[[int, int], None] | None = None,
    identity_file: str | None = None,
    stream=None,
    defer_finish: bool = False,
) -> ScanResult:
    """Verify ``archive``; with ``dest`` (a new empty directory) also extract.
    ``identity_file`` opens an encrypted archive; ``stream`` gives the
    archive's bytes (a remote object) instead of reading the path.

    Unsafe members raise :class:`UnsafeArchiveError` at once; verification
    failures are collected in ``result.errors``.  Symlinks, directory times
    and modes come last: judged against the archive alone, or, with
    ``defer_finish``, left to the caller (:func:`finish_extraction`), who
    judges them against the tree the restore will leave.
    """
    scan = _Scan(archive, dest, includes, progress)
    res, reader = _read(scan, ArchiveReader(archive, identity_file=identity_file, stream=stream))
    if dest is not None and res.metadata.get("backup_type") == INCREMENTAL_TYPE:
        # Its own members are only what changed: restored alone it would be
        # a partial tree that looks whole.
        raise IntegrityError(f"{archive} is an incremental backup under another name: it is restored only with its chain, under the name it was written with (..._incr)")
    res.errors.extend(reader.problems)
    later: list[tuple[str, str, int]] = []  # directories and symlinks: their times go last
    # Exact (ns) times from the manifest (tar headers only have whole
    # seconds): a file's at once, while the manifest is read anyway.
    # Should the comparison fail, the whole tree is discarded.
    written = set(res.written) if dest is not None and includes is not None else None

    def stamp(path: str, kind: str, ns: int) -> None:
        if kind in ("file", "hardlink"):
            if written is None or path in written:
                _set_time(dest, path, ns)
        else:
            later.append((path, kind, ns))

    try:
        _compare(res, reader.manifest_bytes, stamp if dest is not None else None)
    except IntegrityError as exc:
        res.errors.append(str(exc))
    if dest is not None:
        res.pending = (later, scan.symlinks, scan.dir_modes)
        if not defer_finish and not res.errors:
            _finish_alone(res, dest, allow_outside_links)
    return res


def _read(scan: "_Scan", reader: ArchiveReader) -> tuple[ScanResult, ArchiveReader]:
    """Every member through ``scan`` (its writers stopped however it ends),
    then the metadata: the pass both scan_archive and a chain's archives make."""
    own = scan.writers is not None and scan.made is None  # a chain's pool is the chain's to finish
    try:
        for ti, fobj in reader:
            scan.member(ti, fobj)
    except BaseException:
        if own:
            scan.writers.finish(raise_error=False)
        raise
    if own:
        scan.writers.finish()
    res = scan.res
    res.kinds = scan.kinds
    if reader.metadata_bytes is None or reader.manifest_bytes is None:
        raise NotABackupError(f"{scan.archive}: not a backup made by this toolkit (no manifest and metadata at its end)")
    res.metadata = parse_metadata(reader.metadata_bytes, scan.archive)
    return res, reader


def _unknown_parents(path: str, kinds: dict) -> tuple[list[str], str | None, str]:
    """The folders above ``path`` not in ``kinds`` (nearest first), and the
    kind and name of the nearest one that is ("dir", or what is in the way;
    None at the top).  Only that one is looked at (its own parents were
    checked when it came): linear in the name's length."""
    missing: list[str] = []
    cut = path.rfind("/")
    if cut < 0:
        return missing, "dir", ""
    parent = path[:cut]
    kind = kinds.get(parent)
    while kind is None:
        missing.append(parent)
        cut = parent.rfind("/")
        if cut < 0:
            break
        parent = parent[:cut]
        kind = kinds.get(parent)
    return missing, kind, parent


class _Scan:
    """The state of one pass: what each archive path is, and what to do last."""

    def __init__(self, archive: str, dest: str | None, includes: PatternList | None, progress, select=None,
                 chain: "_ChainState | None" = None, claim=None):
        self.archive = archive
        self.dest = dest
        self.includes = includes
        self.progress = progress
        # A chain's archive: only the files ``select(path)`` names are
        # written (their folders made as they come); folders, symlinks and
        # hard links come from the final manifest (see scan_chain).
        self.select = select
        # ``claim(path, digest)``: told of each selected file once read
        # (a chain checks it against the newest manifest there and then).
        self.claim = claim
        # A chain's archives share one writer pool (writes overlap the
        # reading of the next archive) and the folders made so far.
        self.chain = chain
        self.made: set[str] | None = chain.made if chain else None
        self.res = ScanResult(archive)
        self.kinds: dict[str, str] = {}  # archive path -> "dir" | "file" | "symlink" | "hardlink"
        self.symlinks: list[tuple[str, str]] = []  # created last, after every file
        self.dir_modes: dict[str, int] = {}  # applied last, deepest first
        self.include_cache: dict = {}
        # What this system can create: names and paths over its limits are
        # reported now, not as a failed mkdir halfway through a restore.
        where = dest if dest is not None else (os.path.dirname(os.path.abspath(archive)) or "/")
        self.name_max = _pathconf(where, "PC_NAME_MAX", 255)
        self.path_max = _pathconf(where, "PC_PATH_MAX", 4096)
        self.prefix_len = len(os.fsencode(dest)) + 1 if dest is not None else 0
        self.entries_left = MAX_ENTRIES
        self.bytes_left = MAX_PATH_BYTES
        self.writers = (chain.writers if chain else _Writers()) if dest is not None else None

    def _charge(self, entries: int, nbytes: int) -> None:
        self.entries_left -= entries
        self.bytes_left -= nbytes
        if self.entries_left < 0 or self.bytes_left < 0:
            raise IntegrityError(
                f"{self.archive}: more than {MAX_ENTRIES:,} paths or {MAX_PATH_BYTES >> 20} MiB of path names "
                "(the limit that keeps verification's memory bounded)"
            )

    def _restorable(self, path: str, parts: list[str], ti) -> None:
        """Names and paths within this system's NAME_MAX and PATH_MAX."""
        if path.isascii():
            size, longest = len(path), max(map(len, parts))
        else:
            size = len(os.fsencode(path))
            longest = max(len(os.fsencode(p)) for p in parts)
        if longest > self.name_max:
            raise IntegrityError(f"member {path!r} cannot be restored on this system: a name of {longest} bytes (the limit is {self.name_max})")
        if self.prefix_len + size + 1 > self.path_max:
            raise IntegrityError(f"member {path!r} cannot be restored on this system: a path of {size} bytes (the limit is {self.path_max - self.prefix_len - 1})")
        if ti.issym() and len(os.fsencode(ti.linkname)) + 1 > self.path_max:
            raise IntegrityError(f"symlink {path!r} cannot be restored on this system: a target of {len(os.fsencode(ti.linkname))} bytes")

    def _ensure_parents(self, member: str) -> None:
        """The folders above ``member`` are folders.  Only the nearest known
        one is looked at (its own parents were checked when it came), and
        the folders between are remembered: linear in the name's length."""
        missing, kind, parent = _unknown_parents(member, self.kinds)
        if not missing and kind == "dir":
            return
        if kind is not None and kind != "dir":
            raise UnsafeArchiveError(f"member {member!r} would be written through the {kind} {parent!r}")
        self._charge(len(missing), sum(map(len, missing)))
        for sub in reversed(missing):
            self.kinds[sub] = "dir"
            if self.dest is not None and self.select is None:
                os.mkdir(os.path.join(self.dest, sub), 0o700)

    def member(self, ti, fobj) -> None:
        res, dest = self.res, self.dest
        res.members += 1
        path = ti.name
        parts = _components(path)
        self._restorable(path, parts, ti)
        self._charge(1, len(path))
        if ti.ischr() or ti.isblk() or ti.isfifo():
            raise UnsafeArchiveError(f"member {path!r} is a device or FIFO")
        if not (ti.isreg() or ti.isdir() or ti.issym() or ti.islnk()):
            raise UnsafeArchiveError(f"member {path!r} has an unsupported type")
        if dest is not None and (ti.issym() or ti.islnk()):
            # tarfile's data filter as a second opinion where links are
            # concerned.  For files and directories the checks here are
            # stricter than its own (and its realpath() per member was the
            # largest cost of a restore).
            try:
                tarfile.data_filter(ti.to_tarinfo(), dest)
            except tarfile.FilterError as exc:
                if not (ti.issym() and isinstance(exc, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError))):
                    raise UnsafeArchiveError(f"member {path!r} refused: {exc}") from None
        self._ensure_parents(path)
        previous = self.kinds.get(path)
        if previous is not None and not (previous == "dir" and ti.isdir() and path not in res.actual):
            raise UnsafeArchiveError(f"member {path!r} appears twice in the archive")
        if self.select is not None:
            wanted = ti.isreg() and self.select(path)
            if wanted and dest is not None:
                _make_parents(dest, path, self.made)
        else:
            wanted = _selected(self.includes, parts, ti.isdir(), self.include_cache)
        full = os.path.join(dest, path) if dest is not None else None
        mode = ti.mode & 0o777  # setuid, setgid and sticky dropped
        if dest is None and wanted and not ti.isdir():
            res.planned.append(path)

        if ti.isdir():
            self.kinds[path] = "dir"
            res.actual[path] = ("dir", 0, None)
            if dest is not None and previous is None and self.select is None:
                os.mkdir(full, 0o700)
            self.dir_modes[path] = mode
        elif ti.issym():
            self.kinds[path] = "symlink"
            res.actual[path] = ("symlink", 0, ti.linkname)
            if wanted:
                self.symlinks.append((path, ti.linkname))
        elif ti.islnk():
            self._hardlink(ti, path, full, wanted and self.select is None)
        else:
            self._file(ti, fobj, path, full, mode, wanted)
        if self.progress:
            self.progress(1, 0)

    def _hardlink(self, ti, path: str, full: str | None, wanted: bool) -> None:
        link = "/".join(_components(ti.linkname))
        if self.kinds.get(link) != "file":
            raise UnsafeArchiveError(f"hard link {path!r} points to {ti.linkname!r}, which is not a regular file stored earlier in the archive")
        self.kinds[path] = "hardlink"
        self.res.actual[path] = ("hardlink", 0, link)
        if self.dest is not None and wanted:
            self.writers.drain()
            if os.path.exists(os.path.join(self.dest, link)):
                os.link(os.path.join(self.dest, link), full, follow_symlinks=False)
                self.res.written.append(path)
            else:
                self.res.skipped.append({"path": path, "reason": f"hard link to {link}, which --include left out"})

    def _file(self, ti, fobj, path: str, full: str | None, mode: int, wanted: bool) -> None:
        """Hash the member while it streams by; write it when extracting."""
        self.kinds[path] = "file"
        write = self.dest is not None and wanted
        pooled = write and ti.size <= _SMALL  # small files: the writer pool
        chunks: list[bytes] | None = [] if pooled else None
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600) if write and not pooled else None
        h = hashlib.sha256()
        size = 0
        try:
            while chunk := fobj.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
                if chunks is not None:
                    chunks.append(chunk)
                elif fd is not None:
                    if len(chunk) == CHUNK and chunk == _ZERO_CHUNK:
                        os.lseek(fd, CHUNK, os.SEEK_CUR)  # a hole: sparse files stay sparse
                    else:
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
                if self.progress:
                    self.progress(0, len(chunk))
            if size != ti.size:
                raise IntegrityError(f"{self.archive}: member {path!r} is truncated")
            if fd is not None:
                os.ftruncate(fd, size)
                os.fchmod(fd, mode)
        finally:
            if fd is not None:
                os.close(fd)
        if pooled:
            self.writers.submit(full, chunks, size, mode)
        self.res.bytes_read += size
        digest = h.digest()
        self.res.actual[path] = ("file", size, digest)
        if wanted and self.claim is not None:
            self.claim(path, digest)
        if write:
            self.res.written.append(path)
            if self.chain is not None:
                self.chain.modes[path] = self.chain.mode_objects.setdefault(mode, mode)  # one int object per mode


def _compare(res: ScanResult, manifest: bytes, stamp: Callable[[str, str, int], None] | None = None) -> None:
    """The manifest against what was read, one record at a time; ``stamp``
    gets (path, type, mtime_ns) of each record whose type matches.  Memory:
    nothing per record beyond ``res.actual`` (the records are in strict path
    order, so a count tells whether every member was listed), and at most
    MAX_ERRORS messages."""
    errors = _Errors(res.errors)
    actual = res.actual
    matched = 0
    records = 0  # the entries that are not folders: the metadata's total_files
    project = hashlib.sha256()
    last = b""
    in_order = True
    # Format 1 sorted members as plain byte strings (and checked files only).
    legacy = (res.metadata or {}).get("format_version") == 1
    # An incremental stores what changed; the rest of its manifest is the
    # tree it inherits from its chain, checked there (scan_chain).
    incremental = (res.metadata or {}).get("backup_type") == INCREMENTAL_TYPE
    for rec in iter_manifest(manifest):
        path = rec.get("path")
        if not isinstance(path, str):
            errors.append("manifest has an entry without a path")
            continue
        kind = rec.get("type")
        if kind != "dir":
            records += 1
        mode, mtime = rec.get("mode"), rec.get("mtime_ns")
        if ((mode is not None and (type(mode) is not int or not 0 <= mode <= 0o7777)) or (mtime is not None and type(mtime) is not int)
                or (kind in ("file", "hardlink") and type(rec.get("size", 0)) is not int)):
            errors.append(f"manifest entry {path!r} has a mode, time or size that is not a number in range")
        got = actual.get(path)
        if got is None:
            if not incremental:
                errors.append(f"member {path!r} is in the manifest but missing from the archive")
                continue
            bpath = path.encode(_FS_ENCODING, _FS_ERRORS)
            problem = _inherited(rec, bpath, project)
            if problem:
                errors.append(problem)
            in_order, last = _order(in_order, last, bpath, kind, legacy)
            continue
        matched += 1
        gtype, gsize, gval = got
        if gtype != kind:
            errors.append(f"member {path!r} is a {gtype} in the archive but a {kind} in the manifest")
            continue
        if stamp is not None and type(rec.get("mtime_ns")) is int:
            stamp(path, kind, rec["mtime_ns"])
        bpath = path.encode(_FS_ENCODING, _FS_ERRORS)
        in_order, last = _order(in_order, last, bpath, kind, legacy)
        if kind == "file":
            if gsize != rec.get("size"):
                errors.append(f"member {path!r} has {gsize} bytes, the manifest says {rec.get('size')}")
            else:
                hexdigest = gval.hex()
                if hexdigest != rec.get("sha256"):
                    errors.append(f"member {path!r} does not match its SHA-256 in the manifest")
                project.update(project_hash_line(bpath, hexdigest))
        elif kind == "symlink":
            if gval != rec.get("target"):
                errors.append(f"symlink {path!r} points to {gval!r}, the manifest says {rec.get('target')!r}")
            project.update(project_hash_line(bpath, "symlink:" + gval))
        elif kind == "hardlink":
            if gval != rec.get("target"):
                errors.append(f"hard link {path!r} points to {gval!r}, the manifest says {rec.get('target')!r}")
            digest = res.sha256_of(gval)
            if digest is None and incremental:
                digest = rec.get("sha256") if isinstance(rec.get("sha256"), str) else ""
            project.update(project_hash_line(bpath, digest or ""))
    if matched != len(actual) or not in_order:
        # Rare: a second pass finds the members no record lists.
        listed = set()
        for rec in iter_manifest(manifest):
            path = rec.get("path")
            if path in actual:
                listed.add(path)
        for path in actual:
            if path not in listed:
                errors.append(f"member {path!r} is in the archive but not in the manifest")
    meta = res.metadata or {}
    if not in_order and not errors:
        errors.append("the manifest is not in path order")
    if "project_hash" in meta and not errors:
        if project.hexdigest() != meta["project_hash"]:
            errors.append("project_hash recomputed from the archive does not match the metadata")
    if "total_files" in meta and not errors:
        n = records if incremental else sum(1 for t, _s, _v in actual.values() if t != "dir")
        if n != meta["total_files"]:
            errors.append(f"the metadata counts {meta['total_files']} files, the archive {n}")
    errors.close()


def _order(in_order: bool, last: bytes, bpath: bytes, kind, legacy: bool) -> tuple[bool, bytes]:
    """Records come in member order (format 1: byte order, files only)."""
    if legacy:
        if kind == "dir":
            return in_order, last
        return in_order and bpath > last, bpath
    key = tree_key(bpath)
    return in_order and key > last, key


def _inherited(rec: dict, bpath: bytes, project) -> str | None:
    """A record an incremental does not store: well formed, and counted in
    project_hash from what it says (its chain supplies the bytes)."""
    path, kind = rec["path"], rec.get("type")
    for name in (path, rec.get("target")) if kind == "hardlink" else (path,):
        # a restore makes these folders and links itself: the same rules as
        # for a member's name, or "../x" would be made outside the tree
        if isinstance(name, str) and ("\0" in name or name.startswith("/") or any(
                p in ("", ".", "..") for p in name.split("/"))):
            return f"manifest entry {path!r} names {name!r}, not a plain relative path inside the tree"
    if kind == "file":
        digest = rec.get("sha256")
        if not (isinstance(digest, str) and len(digest) == 64) or not isinstance(rec.get("size"), int):
            return f"manifest entry {path!r} has no valid size and SHA-256"
        project.update(project_hash_line(bpath, digest))
    elif kind == "symlink":
        if not isinstance(rec.get("target"), str) or not rec["target"]:
            return f"manifest entry {path!r} is a symlink without a target"
        project.update(project_hash_line(bpath, "symlink:" + rec["target"]))
    elif kind == "hardlink":
        if not isinstance(rec.get("target"), str):
            return f"manifest entry {path!r} is a hard link without a target"
        project.update(project_hash_line(bpath, rec.get("sha256") if isinstance(rec.get("sha256"), str) else ""))
    elif kind != "dir":
        return f"manifest entry {path!r} has an unknown type {kind!r}"
    return None


class _Errors:
    """Appends to a list of errors, at most MAX_ERRORS of them; ``close()``
    says how many more there were."""

    def __init__(self, target: list[str]):
        self._target = target
        self._more = 0

    def __bool__(self) -> bool:
        return bool(self._target)

    def append(self, message: str) -> None:
        if len(self._target) < MAX_ERRORS:
            self._target.append(message)
        else:
            self._more += 1

    def close(self) -> None:
        if self._more:
            self._target.append(f"... and {self._more} more errors")


def _finish_alone(res: ScanResult, dest: str, allow_outside_links: bool) -> None:
    """Finish an extraction into a fresh folder that holds the archive
    alone (a database's work folder): links judged among themselves."""
    _later, symlinks, _modes = res.pending
    links = dict(symlinks)
    kinds = res.kinds

    def rest(path):
        kind = kinds.get(path)
        if kind is None or kind == "symlink":
            return "missing", None, False
        return ("dir" if kind == "dir" else "file"), None, True

    refused = {} if allow_outside_links else decide_links(links, rest)[1]
    for path, verdict in refused.items():
        (res.outside_links if verdict == OUTSIDE else res.skipped).append(refusal(path, links[path], verdict))
    finish_extraction(res, dest, [(p, t) for p, t in symlinks if p not in refused])


def refusal(path: str, text: str, verdict: str) -> dict:
    """How a refused link is reported: outward links in ``outside_links``
    ({path, target}), loops in ``skipped`` ({path, reason})."""
    if verdict == OUTSIDE:
        return {"path": path, "target": text}
    return {"path": path, "reason": f"symlink -> {display_path(text)}: a symlink loop (or a chain of more than {_MAX_LINK_DEPTH} links)"}


def finish_extraction(res: ScanResult, dest: str, links, keep_dirs: set[str] | None = None) -> None:
    """After every file is written: the symlinks decided on (``links``:
    (path, text) pairs), then (with ``keep_dirs``) the removal of folders
    that lead to nothing restored, then the times of symlinks and
    directories, then directory modes (deepest first)."""
    if res.errors:
        return
    later, _symlinks, dir_modes = res.pending
    made = set()
    for path, target in links:
        os.symlink(target, os.path.join(dest, path))
        res.written.append(path)
        made.add(path)
    if keep_dirs is not None:
        dropped = [p for p, k in res.kinds.items() if k == "dir" and p not in keep_dirs]
        for path in sorted(dropped, key=lambda p: p.count("/"), reverse=True):
            os.rmdir(os.path.join(dest, path))

    def kept(path):
        return keep_dirs is None or path in keep_dirs

    for path, kind, ns in later:
        if path in made or (kind == "dir" and path in dir_modes and kept(path)):
            _set_time(dest, path, ns)
    for path in sorted(dir_modes, key=lambda p: p.count("/"), reverse=True):
        if kept(path):
            os.chmod(os.path.join(dest, path), dir_modes[path], follow_symlinks=False)


# utimensat(2) takes seconds as a time_t: a manifest's mtime_ns beyond that
# is clamped to its limit (the file system then clamps to its own range, as
# it does for any time it cannot store).
_NS_MAX = (2**63 - 1) * 10**9 + 999_999_999
_NS_MIN = -(2**63) * 10**9


def _pathconf(where: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(where, name)
    except (OSError, ValueError):
        return default
    return value if value > 0 else default


def _set_time(dest: str, path: str, ns: int) -> None:
    ns = min(max(ns, _NS_MIN), _NS_MAX)
    try:
        os.utime(os.path.join(dest, path), ns=(ns, ns), follow_symlinks=False)
    except OverflowError:  # a platform with a 32-bit time_t
        ns = min(max(ns, -(2**31) * 10**9), (2**31 - 1) * 10**9)
        os.utime(os.path.join(dest, path), ns=(ns, ns), follow_symlinks=False)
    except OSError as exc:
        raise BackupError(f"cannot set the time of {display_path(path)}: {exc.strerror}") from None


# ------------------------------------------------------------------ chains


@dataclass
class _ChainState:
    """What the archives of one chain restore share: one writer pool (the
    writes of one archive overlap the reading of the next), the folders
    made so far, and the mode each file was written with."""

    writers: _Writers
    made: set[str] = field(default_factory=set)
    modes: dict[str, int] = field(default_factory=dict)
    mode_objects: dict[int, int] = field(default_factory=dict)


def _make_parents(dest: str, path: str, made: set[str]) -> None:
    """The folders above ``path`` in ``dest`` (a private folder being
    filled: nothing in it is a symlink yet), each made once."""
    parent = path.rpartition("/")[0]
    if not parent or parent in made:
        return
    os.makedirs(os.path.join(dest, parent), 0o700, exist_ok=True)
    while parent and parent not in made:
        made.add(parent)
        parent = parent.rpartition("/")[0]


def _open_beside(archive: str):
    """Where the parents of a local archive are: beside it."""
    directory = os.path.dirname(os.path.abspath(archive))

    def opener(name: str) -> dict:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise IntegrityError(f"{archive}: its chain needs {name}, which is missing from {directory}")
        return {"archive": path}

    return opener


def _scan_one(archive: str, *, dest, select, progress, identity_file, stream=None, chain=None, claim=None) -> tuple[ScanResult, bytes]:
    """One archive of a chain: verified on its own (an incremental's
    manifest may list what it does not store), the files ``select`` names
    written into ``dest`` (by the chain's writer pool) and given to ``claim``."""
    res, reader = _read(_Scan(archive, dest, None, progress, select=select, chain=chain, claim=claim),
                        ArchiveReader(archive, identity_file=identity_file, stream=stream))
    res.errors.extend(reader.problems)
    try:
        _compare(res, reader.manifest_bytes)
    except IntegrityError as exc:
        res.errors.append(str(exc))
    return res, reader.manifest_bytes


def _read_chain(archive, dest, included, progress, identity_file, opener, stream, shared):
    """Every archive of the chain read once, newest first, each file's
    bytes from the newest archive that holds them: the newest metadata,
    its manifest (zlib-packed: it is read again only at the end), the
    archive names, the paths written, and the counts; or the newest
    archive's own result when it fails verification.  Memory: beyond one
    archive's scan, only the files still needed and their digests."""
    import zlib

    first, manifest = _scan_one(archive, dest=dest, select=included, progress=progress, identity_file=identity_file,
                                stream=stream, chain=shared)
    if first.errors:
        return first
    meta = first.metadata
    needed: dict[str, bytes] = {}  # file path -> the SHA-256 the newest manifest lists, not yet supplied
    links: dict[str, list] = {}  # hard link target -> (path, size, sha256) of each link record
    leaf, leaf_kind = None, None  # the last path that is not a folder: a subtree of it would come right after it (tree order)
    for rec in iter_manifest(manifest):
        path = rec["path"]
        if leaf is not None and len(path) > len(leaf) and path[len(leaf)] == "/" and path.startswith(leaf):
            raise IntegrityError(f"{archive}: its manifest puts {path!r} inside the {leaf_kind} {leaf!r}: no tree has both")
        if rec.get("type") != "dir":
            leaf, leaf_kind = path, rec.get("type")
        if rec.get("type") == "hardlink":  # (checked against its target's record at the end)
            links.setdefault(rec.get("target"), []).append((path, rec.get("size"), rec.get("sha256")))
        if rec.get("type") == "file" and first.actual.get(path, ("",))[0] != "file" and (dest is None or included(path)):
            try:
                needed[path] = bytes.fromhex(rec["sha256"])
            except ValueError:
                raise IntegrityError(f"{archive}: the manifest lists no valid SHA-256 for {path!r}") from None
    packed = zlib.compress(manifest, 1)
    del manifest
    chain = [os.path.basename(archive)]
    written = first.written
    members, bytes_read = first.members, first.bytes_read
    first = None  # its scan is done with
    link = meta.get("parent")
    while link:
        name = link.get("name") if isinstance(link, dict) else None
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise IntegrityError(f"{archive}: its metadata names no readable parent ({link!r})")
        where = opener(name)
        label = where["archive"]
        other: list[str] = []

        def claim(path: str, digest: bytes) -> None:
            # each file's bytes checked as they are read, and forgotten: the
            # set still needed shrinks while this archive's results grow
            if needed.pop(path) != digest:
                other.append(path)

        res, _m = _scan_one(label, dest=dest, select=needed.__contains__, progress=progress, identity_file=identity_file,
                            stream=where.get("stream"), chain=shared, claim=claim)
        del _m
        if res.errors:
            raise IntegrityError(f"{archive}: {name}, in its chain, fails verification: {res.errors[0]}")
        if res.metadata.get("metadata_sha256") != link.get("metadata_sha256"):
            raise IntegrityError(f"{archive}: {name} is not the backup it was made on (another archive of that name)")
        if other:
            raise IntegrityError(f"{archive}: {name} holds other bytes for {other[0]!r} than the newest manifest lists")
        chain.append(name)
        written += res.written
        members += res.members
        bytes_read += res.bytes_read
        link = res.metadata.get("parent") if res.metadata.get("backup_type") == INCREMENTAL_TYPE else None
        res = None
        if len(chain) > 100_000:
            raise IntegrityError(f"{archive}: its chain does not end")
    if needed:
        path = next(iter(needed))
        raise IntegrityError(f"{archive}: {len(needed)} files of its tree are in no archive of its chain (such as {path!r})")
    return meta, packed, links, chain, written, members, bytes_read


_DIR_ENTRY = ("dir", 0, None)


def _implied_dirs(path: str, kinds: dict, actual: dict, dest: str | None, made: set) -> None:
    """The folders above a path of the final manifest are folders: those it
    does not list are made here and known as folders (so that links are
    judged through them as the kernel will see them).  A path inside a
    listed file or symlink never gets here: _read_chain refuses it before
    any parent is read.  Records come in tree order: a listed folder is
    known before anything inside it."""
    missing, _kind, _parent = _unknown_parents(path, kinds)
    for sub in reversed(missing):
        kinds[sub] = "dir"
        actual[sub] = _DIR_ENTRY
        if dest is not None and sub not in made:
            os.makedirs(os.path.join(dest, sub), 0o700, exist_ok=True)
            made.add(sub)


def scan_chain(
    archive: str,
    *,
    dest: str | None = None,
    includes: PatternList | None = None,
    progress: Callable[[int, int], None] | None = None,
    identity_file: str | None = None,
    opener=None,
    stream=None,
) -> ScanResult:
    """Verify an incremental backup with every archive of its chain, and
    with ``dest`` rebuild the tree of that moment there: each archive is
    read once, newest first; each path's bytes come from the newest archive
    that holds them, checked against the newest manifest (which lists the
    whole tree, removals included); folders, symlinks, hard links, modes
    and times come from that manifest.  ``opener(name)`` gives the keyword
    arguments (``archive``, and ``stream`` for a remote) that read a parent.

    The result is what :func:`scan_archive` with ``defer_finish`` gives for
    one archive (its ``actual`` holds no file digests: each was checked
    against the newest manifest here), so a restore decides links and moves
    the tree the same way; ``chain`` lists the archives read, newest first.
    Any archive missing, damaged, or not the one its child was made on is
    an error (IntegrityError, exit 4) before anything is moved.
    """
    import zlib

    opener = opener or _open_beside(archive)
    cache: dict = {}

    def included(path: str) -> bool:
        return includes is None or _selected(includes, path.split("/"), False, cache)

    shared = _ChainState(_Writers()) if dest is not None else None
    try:
        state = _read_chain(archive, dest, included, progress, identity_file, opener, stream, shared)
    except BaseException:
        if shared:
            shared.writers.finish(raise_error=False)
        raise
    if shared:
        shared.writers.finish()  # every file written before modes, times and links
    if isinstance(state, ScanResult):  # the newest archive fails verification
        return state
    meta, packed, links, chain, written, members, bytes_read = state
    made, modes = (shared.made, shared.modes) if shared else (set(), {})
    out = ScanResult(archive, metadata=meta, members=members, bytes_read=bytes_read)
    out.chain = chain
    later: list[tuple[str, str, int]] = []
    symlinks: list[tuple[str, str]] = []
    dir_modes: dict[str, int] = {}
    hardlinks: list[tuple[str, str]] = []
    written_set = set(written)
    del written
    kinds, actual = out.kinds, out.actual
    for rec in iter_manifest(zlib.decompress(packed)):
        path, kind = rec["path"], rec.get("type")
        _implied_dirs(path, kinds, actual, dest, made)
        if kind == "hardlink" and kinds.get(rec.get("target")) != "file":
            raise IntegrityError(f"{archive}: its manifest lists {path!r} as a hard link to {rec.get('target')!r}, "
                                 "which is not a file listed before it")
        if kind == "file" and path in links:
            for link, size, sha in links[path]:
                if size != rec.get("size") or sha != rec.get("sha256"):
                    raise IntegrityError(f"{archive}: its manifest gives the hard link {link!r} another size or SHA-256 "
                                         f"than {path!r}, the file it links to")
        kinds[path] = kind
        if kind == "dir":
            actual[path] = _DIR_ENTRY
        elif kind == "file":
            actual[path] = ("file", rec.get("size", 0), None)
        else:
            actual[path] = (kind, 0, rec.get("target"))
        if dest is None:
            if kind != "dir" and included(path):
                out.planned.append(path)
            continue
        mode = rec.get("mode") if isinstance(rec.get("mode"), int) else 0o644
        ns = rec.get("mtime_ns") if type(rec.get("mtime_ns")) is int else None
        if kind == "dir":
            if path not in made:
                os.makedirs(os.path.join(dest, path), 0o700, exist_ok=True)
                made.add(path)
            dir_modes[path] = mode & 0o777
            if ns is not None:
                later.append((path, kind, ns))
        elif kind == "symlink":
            if included(path):
                symlinks.append((path, rec.get("target")))
                if ns is not None:
                    later.append((path, kind, ns))
        elif kind == "hardlink":
            if included(path):
                hardlinks.append((path, rec.get("target")))
        elif path in written_set:
            if modes.get(path) != mode & 0o777:
                # (a plain chmod: the tree is private, and has no symlinks until the very end)
                os.chmod(os.path.join(dest, path), mode & 0o777)
            if ns is not None:
                _set_time(dest, path, ns)
    del packed
    if dest is not None:
        for path, target in hardlinks:
            if target in written_set:
                os.link(os.path.join(dest, target), os.path.join(dest, path), follow_symlinks=False)
                written_set.add(path)
            else:
                out.skipped.append({"path": path, "reason": f"hard link to {display_path(target)}, which --include left out"})
        out.written = sorted(written_set, key=lambda p: tree_key(os.fsencode(p)))
        out.pending = (later, symlinks, dir_modes)
    return out


def is_incremental(path: str) -> bool:
    """An incremental backup, by its name or the index beside it (cheap:
    the archive itself is not read)."""
    from .store import INDEX_SUFFIX, load_index, parse_backup_name

    info = parse_backup_name(os.path.basename(path))
    if info and info["incremental"]:
        return True
    try:
        return (load_index(path + INDEX_SUFFIX).get("metadata") or {}).get("backup_type") == INCREMENTAL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def scan_backup(archive: str, **kw) -> ScanResult:
    """scan_archive, or scan_chain for an incremental backup."""
    opener = kw.pop("opener", None)
    if is_incremental(archive):
        kw.pop("defer_finish", None)
        kw.pop("allow_outside_links", None)
        return scan_chain(archive, opener=opener, **kw)
    res = scan_archive(archive, **kw)
    if kw.get("dest") is None and res.metadata.get("backup_type") == INCREMENTAL_TYPE:
        # an incremental under another name: what it inherits is only
        # checked against its chain (its metadata decides, not its name)
        kw.pop("defer_finish", None)
        kw.pop("allow_outside_links", None)
        return scan_chain(archive, opener=opener, **kw)
    return res
