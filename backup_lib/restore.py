"""Restoring a tree: extract into a private directory beside the target,
verify, then move into place.

* An empty or missing target is replaced by one ``rename(2)``: an interrupted
  restore leaves no half-tree in it.
* With ``force`` into a non-empty target, entries are moved in one by one
  (each ``rename(2)`` is atomic), after a check that no directory on the way
  is a symlink or a file already in the target: nothing is written through
  a link.
* A failing archive restores nothing, whatever ``force`` says.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass

from .errors import BackupError, IntegrityError, TargetNotEmptyError, UnsafeArchiveError, UsageError
from .extract import scan_archive
from .wildmatch import PatternList, parse_lines

__all__ = ["RestoreResult", "restore_tree", "include_matcher"]


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


def restore_tree(
    archive: str,
    target: str,
    *,
    force: bool = False,
    dry_run: bool = False,
    include=(),
    allow_outside_links: bool = False,
    progress=None,
) -> RestoreResult:
    target = os.path.abspath(target)
    includes = include_matcher(include)
    exists = os.path.lexists(target)
    if exists and not os.path.isdir(target):
        raise UsageError(f"restore target {target} exists and is not a directory")
    non_empty = exists and not _is_empty_dir(target)

    if dry_run:
        res = scan_archive(archive, includes=includes, progress=progress)
        if res.errors:
            raise IntegrityError(f"{archive} fails verification: {res.errors[0]}" + _more(res.errors))
        names = res.planned
        existing = tuple(n for n in names if os.path.lexists(os.path.join(target, n)))
        return RestoreResult(archive, target, True, res.metadata, tuple(names), existing)

    if non_empty and not force:
        raise TargetNotEmptyError(f"restore target {target} is not empty (use --force to restore into it)")
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.restore-", dir=parent)
    except OSError as exc:
        raise BackupError(f"cannot create a directory beside {target}: {exc.strerror}") from None
    try:
        try:
            res = scan_archive(archive, dest=tmp, includes=includes, allow_outside_links=allow_outside_links, progress=progress)
        except OSError as exc:
            raise BackupError(f"restore failed while writing: {exc.strerror or exc}") from None
        if res.errors:
            raise IntegrityError(f"{archive} fails verification, nothing restored: {res.errors[0]}" + _more(res.errors))
        os.chmod(tmp, 0o777 & ~_umask())
        if not non_empty:
            if exists:
                os.rmdir(target)
            os.rename(tmp, target)
        else:
            _overlay(tmp, target)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return RestoreResult(
        archive,
        target,
        False,
        res.metadata,
        tuple(sorted(res.written)),
        outside_links=tuple(res.outside_links),
        skipped=tuple(res.skipped),
    )


def _more(errors: list[str]) -> str:
    return f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""


def _overlay(src_root: str, dst_root: str) -> None:
    """Move the extracted tree into an existing target, never through a link."""
    # Check first: a directory of the archive must land on a real directory.
    for dirpath, dirnames, _files in os.walk(src_root):
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                continue  # an archive symlink replaces whatever is there
            rel = os.path.relpath(os.path.join(dirpath, d), src_root)
            dst = os.path.join(dst_root, rel)
            try:
                st = os.lstat(dst)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchiveError(f"{dst} is a symlink in the target; restoring {rel}/ there would write through it")
            if not stat.S_ISDIR(st.st_mode):
                raise BackupError(f"{dst} exists and is not a directory; the backup has a directory there")
        for f in _files:
            rel = os.path.relpath(os.path.join(dirpath, f), src_root)
            dst = os.path.join(dst_root, rel)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(dst).st_mode):
                    raise BackupError(f"{dst} is a directory in the target; the backup has a file there")
    dir_stats = []
    for dirpath, dirnames, files in os.walk(src_root):
        rel_dir = os.path.relpath(dirpath, src_root)
        dst_dir = dst_root if rel_dir == "." else os.path.join(dst_root, rel_dir)
        if rel_dir != ".":
            st = os.lstat(dirpath)
            if not os.path.lexists(dst_dir):
                os.mkdir(dst_dir, 0o700)
            dir_stats.append((dst_dir, st))
        for name in files + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            os.replace(os.path.join(dirpath, name), os.path.join(dst_dir, name))
    for dst_dir, st in reversed(dir_stats):
        os.chmod(dst_dir, stat.S_IMODE(st.st_mode))
        os.utime(dst_dir, ns=(st.st_mtime_ns, st.st_mtime_ns))
