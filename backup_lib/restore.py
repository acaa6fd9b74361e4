"""Restoring a tree: extract into a private work folder beside the target,
verify, decide against the target as it is, then move into place.

* The decisions are made before anything is moved (:func:`plan_restore`, a
  function of the archive's contents and of what ``lstat`` finds in the
  target): every symlink is resolved, component by component, through the
  tree the restore will leave (the restored entries laid over what the
  target already holds, its existing symlinks followed); one that would
  lead outside the target is not created (listed; ``--allow-outside-links``
  creates it, never writes through it), one that loops is not created
  either.  With ``--force``, every conflict is found first: a folder of the
  archive where the target has a symlink (it would be written through:
  unsafe, exit 4), or where it has a file, and a file or symlink of the
  archive where the target has a folder (exit 1); any of them and nothing
  is restored.  ``--dry-run`` runs exactly these checks.
* An empty or missing target is replaced by one ``rename(2)``: an
  interrupted restore leaves no half-tree in it.
* Into a non-empty target (``--force``) the tree is moved entry by entry
  through directory descriptors opened with ``O_NOFOLLOW``, never by path:
  a symlink swapped in concurrently makes the restore fail instead of
  redirecting a write.  A subtree the target does not have moves in one
  ``rename(2)``; a file the target has is swapped with it atomically
  (``RENAME_EXCHANGE``), and the old ones are removed with the work folder.
* A failing archive restores nothing, whatever ``force`` says.
* Work folders carry an owner record; the folders of killed runs are
  removed at the start of the next restore (:mod:`backup_lib.workdir`).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from .errors import BackupError, IntegrityError, TargetConflictError, TargetNotEmptyError, UnsafeArchiveError, UsageError
from .extract import OUTSIDE, _selected, decide_links, finish_extraction, refusal, scan_backup
from .report import display_path
from .selection import tree_key
from .wildmatch import PatternList, parse_lines
from .workdir import DirStack, create_work_dir, sweep

__all__ = ["RestoreResult", "Plan", "restore_tree", "plan_restore", "include_matcher"]


@dataclass(frozen=True)
class RestoreResult:
    backup_path: str
    target: str
    dry_run: bool
    metadata: dict
    restored: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()
    outside_links: tuple[dict, ...] = ()
    skipped: tuple[dict, ...] = ()
    work_folders: tuple[dict, ...] = ()  # leftovers of killed runs: removed, or left alone and why
    needs_force: bool = False  # dry run: the target is not empty and --force was not given

    @property
    def incomplete(self) -> bool:
        return bool(self.outside_links or self.skipped)


def include_matcher(patterns) -> PatternList | None:
    patterns = [p for p in (patterns or ()) if p]
    if not patterns:
        return None
    return PatternList(b"", parse_lines("\n".join(patterns).encode("utf-8", "surrogateescape")))


def _is_empty_dir(path: str) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------ the plan


@dataclass
class Plan:
    restored: list[str]  # every non-directory the restore writes, in tree order
    links: list[tuple[str, str]]  # the symlinks it creates: (path, text)
    outside_links: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    keep_dirs: set[str] | None = None  # None: every folder of the archive
    existing: list[str] = field(default_factory=list)  # restored paths the target already has


def plan_restore(kinds: dict[str, str], actual: dict[str, tuple], includes: PatternList | None, target_lookup,
                 *, allow_outside_links: bool = False, listing: bool = True) -> Plan:
    """What a restore of an archive (``kinds``/``actual`` of its scan) writes
    into a target, and what it refuses.  ``target_lookup(path)`` tells what
    the target holds at a relative path now, as ``(kind, link text, False)``
    (kind: dir, file, symlink or missing); None for a target that is empty
    or missing.  ``listing``: fill ``restored`` (a dry run prints it).  Raises :class:`UnsafeArchiveError` or
    :class:`TargetConflictError` for conflicts with the target."""
    cache: dict = {}

    def wanted(path: str, is_dir: bool) -> bool:
        return includes is None or _selected(includes, path.split("/"), is_dir, cache)

    files: set[str] = set()
    candidates: dict[str, str] = {}
    skipped: list[dict] = []
    dirs: list[str] = []
    keep_dirs: set[str] | None = None if includes is None else set()
    for path, kind in kinds.items():
        if kind == "dir":
            dirs.append(path)
            if keep_dirs is not None and wanted(path, True):
                keep_dirs.add(path)
        elif not wanted(path, False):
            continue
        elif kind == "symlink":
            candidates[path] = actual[path][2]
        elif kind == "hardlink" and includes is not None and not wanted(actual[path][2], False):
            skipped.append({"path": path, "reason": f"hard link to {display_path(actual[path][2])}, which --include left out"})
        else:
            files.add(path)
    if keep_dirs is not None:
        # Only the folders that lead to something restored (or that an
        # include names): decided once, before the links, so that the
        # links are judged against the folders the restore really leaves.
        for path in (*files, *candidates):
            parent = path.rpartition("/")[0]
            while parent and parent not in keep_dirs:
                keep_dirs.add(parent)
                parent = parent.rpartition("/")[0]
        dirs = [d for d in dirs if d in keep_dirs]

    def rest(path: str):
        """The final tree, but for the links still being decided."""
        kind = kinds.get(path)
        if kind == "dir" and (keep_dirs is None or path in keep_dirs):
            return "dir", None, True
        if kind in ("file", "hardlink") and path in files:
            return "file", None, True
        if target_lookup is None:
            return "missing", None, False
        return target_lookup(path)

    if allow_outside_links:
        accepted, refused = candidates, {}
    else:
        accepted, refused = decide_links(candidates, rest)
    outside = []
    for path in sorted(refused, key=_key):
        item = refusal(path, candidates[path], refused[path])
        (outside if refused[path] == OUTSIDE else skipped).append(item)
    existing = [] if target_lookup is None else _check_conflicts(dirs, files, accepted, target_lookup)
    restored = sorted((*files, *accepted), key=_key) if listing else []
    links = [(p, accepted[p]) for p in sorted(accepted, key=_key)]
    return Plan(restored, links, outside, skipped, keep_dirs, existing)


def _key(path: str) -> bytes:
    return tree_key(os.fsencode(path))


def _check_conflicts(dirs, files, links, target_lookup) -> list[str]:
    """Every path the restore writes against what the target has there, in
    tree order (below a folder the target lacks, nothing is looked up).
    Returns the restored non-directories the target already has; raises
    with every conflict counted."""
    entries = [(p, "dir") for p in dirs] + [(p, "file") for p in files] + [(p, "symlink") for p in links]
    entries.sort(key=lambda e: _key(e[0]))
    absent: set[str] = set()  # folders the target lacks (or that are refused): nothing to look up below
    unsafe: list[str] = []
    conflicts: list[str] = []
    existing: list[str] = []
    for path, kind in entries:
        parent = path.rpartition("/")[0]
        if parent and parent in absent:
            if kind == "dir":
                absent.add(path)
            continue
        there = target_lookup(path)[0]
        if there == "missing":
            if kind == "dir":
                absent.add(path)
            continue
        if kind == "dir":
            if there == "symlink":
                unsafe.append(f"{display_path(path)} is a symlink in the target; restoring {display_path(path + '/')} there would write through it")
            elif there != "dir":
                conflicts.append(f"{display_path(path)} is a file in the target where the backup has a folder")
            if there != "dir":
                absent.add(path)
        elif there == "dir":
            conflicts.append(f"{display_path(path)} is a folder in the target where the backup has a {'symlink' if kind == 'symlink' else 'file'}")
        else:
            existing.append(path)
    problems = unsafe + conflicts
    if problems:
        more = f" (and {len(problems) - 1} more conflicts)" if len(problems) > 1 else ""
        error = UnsafeArchiveError if unsafe else TargetConflictError
        raise error(f"{problems[0]}{more}: nothing restored")
    existing.sort(key=_key)
    return existing


_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class _Target:
    """What the target holds, by ``lstat`` relative to a descriptor of its
    root (the effect side of :func:`plan_restore`)."""

    def __init__(self, root: str):
        self.root = root
        self.fd = os.open(root, _O_DIR)  # the root itself as the user named it
        self._links: dict[str, tuple] = {}

    def close(self) -> None:
        os.close(self.fd)

    def kind(self, path: str) -> str:
        try:
            mode = os.lstat(path, dir_fd=self.fd).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        except OSError as exc:
            raise BackupError(f"cannot look at {display_path(os.path.join(self.root, path))}: {exc.strerror}") from None
        return "dir" if stat.S_ISDIR(mode) else "symlink" if stat.S_ISLNK(mode) else "file"

    def lookup(self, path: str) -> tuple:
        """(kind, link text, False); symlinks are remembered (many links of
        an archive may lead through one of the target's)."""
        hit = self._links.get(path)
        if hit is not None:
            return hit
        kind = self.kind(path)
        if kind != "symlink":
            return kind, None, False
        try:
            hit = self._links[path] = ("symlink", os.readlink(path, dir_fd=self.fd), False)
        except OSError:
            return "missing", None, False  # gone meanwhile
        return hit


# ---------------------------------------------------------------- restoring


def _check_parent(target: str) -> None:
    """A target whose parent cannot be a folder: say which part is in the way."""
    here = os.path.dirname(target)
    while True:
        try:
            st = os.stat(here)
        except (FileNotFoundError, NotADirectoryError):
            up = os.path.dirname(here)
            if up == here:
                return
            here = up
            continue
        except OSError as exc:
            raise BackupError(f"cannot restore into {display_path(target)}: {display_path(here)}: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"cannot restore into {display_path(target)}: {display_path(here)} is a file, not a folder")
        return


def restore_tree(
    archive: str,
    target: str,
    *,
    force: bool = False,
    dry_run: bool = False,
    include=(),
    allow_outside_links: bool = False,
    progress=None,
    identity_file: str | None = None,
    opener=None,
    stream=None,
) -> RestoreResult:
    """Restore ``archive`` (an incremental with its whole chain) into
    ``target``.  ``identity_file`` opens encrypted backups; ``stream`` and
    ``opener`` read the archive and its parents from elsewhere (a remote)."""
    target = os.path.abspath(target)
    source = {"identity_file": identity_file, "stream": stream}
    if opener is not None:
        source["opener"] = opener
    includes = include_matcher(include)
    _check_parent(target)
    exists = os.path.lexists(target)
    if exists and not os.path.isdir(target):
        raise UsageError(f"restore target {display_path(target)} exists and is not a directory")
    non_empty = exists and not _is_empty_dir(target)
    # Into a symlink the user named, the tree goes into the folder it leads
    # to (a rename would replace the link).
    overlay = non_empty or (exists and os.path.islink(target))

    if dry_run:
        res = scan_backup(archive, includes=includes, progress=progress, **source)
        if res.errors:
            raise IntegrityError(f"{archive} fails verification: {res.errors[0]}" + _more(res.errors))
        plan = _plan(res, includes, target if non_empty else None, allow_outside_links, listing=True)
        return RestoreResult(archive, target, True, res.metadata, tuple(plan.restored), tuple(plan.existing),
                             tuple(plan.outside_links), tuple(plan.skipped), needs_force=non_empty and not force)

    if non_empty and not force:
        raise TargetNotEmptyError(f"restore target {display_path(target)} is not empty (use --force to restore into it)")
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create {display_path(parent)}: {exc.strerror}") from None
    swept = sweep(parent)
    try:
        work = create_work_dir(target)
    except OSError as exc:
        raise BackupError(f"cannot create a work folder beside {display_path(target)}: {exc.strerror}") from None
    try:
        tree = work.tree
        try:
            res = scan_backup(archive, dest=tree, includes=includes, progress=progress, defer_finish=True, **source)
        except OSError as exc:
            raise BackupError(f"restore failed while writing: {exc.strerror or exc}") from None
        if res.errors:
            raise IntegrityError(f"{archive} fails verification, nothing restored: {res.errors[0]}" + _more(res.errors))
        plan = _plan(res, includes, target if overlay else None, allow_outside_links, listing=False)
        try:
            finish_extraction(res, tree, plan.links, plan.keep_dirs)
            os.chmod(tree, 0o777 & ~_umask())
            if overlay:
                _overlay(tree, target, set(res.pending[2]))
            else:
                os.rename(tree, target)  # over an empty folder: atomically
        except OSError as exc:
            raise BackupError(f"restore failed while {'moving into' if overlay else 'writing'} {display_path(target)}: "
                              f"{exc.strerror or exc}") from None
    finally:
        work.remove()
    return RestoreResult(
        archive,
        target,
        False,
        res.metadata,
        tuple(sorted(res.written, key=_key)),
        outside_links=tuple(plan.outside_links),
        skipped=tuple(plan.skipped),
        work_folders=tuple(swept),
    )


def _plan(res, includes, target: str | None, allow_outside_links: bool, *, listing: bool) -> Plan:
    try:
        view = _Target(target) if target is not None else None
    except OSError as exc:
        raise BackupError(f"cannot look at the restore target {display_path(target)}: {exc.strerror}") from None
    try:
        return plan_restore(res.kinds, res.actual, includes, view.lookup if view else None,
                            allow_outside_links=allow_outside_links, listing=listing)
    except OSError as exc:
        raise BackupError(f"cannot look at the restore target {display_path(target)}: {exc.strerror}") from None
    finally:
        if view is not None:
            view.close()


def _more(errors: list[str]) -> str:
    return f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""


# ---------------------------------------------------------------- the moves

_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_renameat2 = None  # (function, ctypes) once looked up; False: not available


def _rename2(src_fd: int, name: str, dst_fd: int, flags: int) -> bool:
    """``renameat2(2)`` of ``name`` between two directory descriptors: True
    when done, False when this system or file system cannot (the caller
    falls back); other failures raise OSError."""
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = (fn, ctypes)
        except (OSError, AttributeError, ImportError):
            _renameat2 = False
    if not _renameat2:
        return False
    fn, ctypes = _renameat2
    bname = os.fsencode(name)
    if fn(src_fd, bname, dst_fd, bname, flags) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        _renameat2 = False
        return False
    if err == errno.EINVAL:
        return False  # this file system does not know the flag
    raise OSError(err, os.strerror(err), name)


class _Changed(BackupError):
    pass


def _changed(rel: list[str], name: str | None) -> _Changed:
    path = "/".join(rel if name is None else [*rel, name]) or "."
    return _Changed(f"{display_path(path)} changed in the target while the restore moved files in; "
                    "the restore stopped there (run it again)")


def _overlay(src_root: str, dst_root: str, explicit_dirs: set[str]) -> None:
    """Move the finished tree into an existing target, through directory
    descriptors (``O_NOFOLLOW`` below the root): never through a link.
    Folders the target has get the backup's mode and time (those the
    archive names), after their contents are in; folders it lacks move in
    whole."""
    sfd = os.open(src_root, _O_DIR | os.O_NOFOLLOW)
    try:
        dfd = os.open(dst_root, _O_DIR)
    except OSError:
        os.close(sfd)
        raise
    src, dst = DirStack(sfd), DirStack(dfd)
    rel: list[str] = []
    frames: list[tuple[list, os.stat_result | None]] = [(_listing(sfd), None)]
    try:
        while frames:
            entries, dir_st = frames[-1]
            while entries:
                name, is_dir = entries.pop()
                try:
                    there = os.lstat(name, dir_fd=dst.top)
                except FileNotFoundError:
                    there = None
                if there is None:
                    _move_new(src.top, name, dst.top, is_dir, rel)
                    continue
                if is_dir and stat.S_ISDIR(there.st_mode):
                    st = os.lstat(name, dir_fd=src.top)
                    src.push(name)
                    dst.push(name)  # O_NOFOLLOW: a symlink swapped in fails here
                    rel.append(name)
                    if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
                        os.chmod(src.top, 0o700)  # a read-only folder of the backup: emptied here
                    frames.append((_listing(src.top), st))
                    break
                if is_dir or stat.S_ISDIR(there.st_mode):
                    raise _changed(rel, name)  # the plan found no such conflict
                _replace(src.top, name, dst.top, there, rel)
            else:
                frames.pop()
                if dir_st is not None:
                    if "/".join(rel) in explicit_dirs:
                        os.chmod(dst.top, stat.S_IMODE(dir_st.st_mode))
                        os.utime(dst.top, ns=(dir_st.st_mtime_ns, dir_st.st_mtime_ns))
                    src.pop()
                    dst.pop()
                    rel.pop()
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ESTALE):
            raise _changed(rel, None) from None  # a folder became a symlink or a file, or moved
        raise
    finally:
        src.close()
        dst.close()
        os.close(sfd)
        os.close(dfd)


def _listing(fd: int) -> list[tuple[str, bool]]:
    with os.scandir(fd) as it:
        return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]


def _move_new(sfd: int, name: str, dfd: int, is_dir: bool, rel: list[str]) -> None:
    """Move an entry the target lacks; it must still lack it."""
    try:
        try:
            if _rename2(sfd, name, dfd, _RENAME_NOREPLACE):
                return
            os.rename(name, name, src_dir_fd=sfd, dst_dir_fd=dfd)
        except PermissionError:
            if not is_dir:
                raise
            # Moving a folder to another parent rewrites its "..": a
            # read-only folder of the backup needs its write bit meanwhile.
            mode = stat.S_IMODE(os.lstat(name, dir_fd=sfd).st_mode)
            os.chmod(name, mode | 0o700, dir_fd=sfd)
            if not _rename2(sfd, name, dfd, _RENAME_NOREPLACE):
                os.rename(name, name, src_dir_fd=sfd, dst_dir_fd=dfd)
            os.chmod(name, mode, dir_fd=dfd)
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise _changed(rel, name) from None
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY:
            raise _changed(rel, name) from None
        raise


def _replace(sfd: int, name: str, dfd: int, there: os.stat_result, rel: list[str]) -> None:
    """Put a file or symlink in place of the target's: swapped atomically,
    the old one left in the work folder (removed with it, in parallel: a
    rename over it would free its blocks here, one wait on the disk each)."""
    if _rename2(sfd, name, dfd, _RENAME_EXCHANGE):
        back = os.lstat(name, dir_fd=sfd)
        if (back.st_dev, back.st_ino) != (there.st_dev, there.st_ino):
            _rename2(sfd, name, dfd, _RENAME_EXCHANGE)  # not what the plan saw: put it back
            raise _changed(rel, name)
        return
    try:
        os.rename(name, name, src_dir_fd=sfd, dst_dir_fd=dfd)
    except (IsADirectoryError, NotADirectoryError):
        raise _changed(rel, name) from None
