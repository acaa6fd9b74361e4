"""Which files a backup holds: exactly what git would keep, plus the tool's rules.

Precedence, highest first:

1. always left out: every ``.git``, the backup directories (the one being
   written to, both defaults, every configured one), the work folders of
   restores (``.NAME.restore-XXXXXXXX``, see :mod:`backup_lib.workdir`),
   FIFOs, sockets and devices (never opened);
2. ``--exclude`` patterns (gitignore syntax, relative to the root);
3. ``--include`` patterns: re-include what the rules below drop;
4. default excludes (``.venv``, ``node_modules``, ``*.pyc`` …, and the
   application's database with its side files), unless turned off;
5. git's rules: ``core.excludesFile``, ``.git/info/exclude``, every
   ``.gitignore`` from the top of the work tree down (deeper wins, last line
   wins), nothing re-included below an excluded directory; tracked files are
   kept even where a rule matches them.

An excluded directory is never entered, except when an ``--include`` pattern
that names a path (one with a ``/``) could match something inside it.
A nested repository is entered and selected by its own rules.
"""

from __future__ import annotations

import os
import stat as _stat
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from . import git as _git
from .errors import NotFoundError
from .wildmatch import PatternList, QuickReject, parse_lines, read_ignore_file
from .workdir import is_work_dir_name

__all__ = ["DEFAULT_EXCLUDES", "Entry", "Selection", "select_files", "tree_key"]

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".venv",
    "*.pyc",
    "*.pyo",
    "*.pyd",
    ".pytest_cache",
    ".coverage",
    "htmlcov",
    "node_modules",
    "*.tmp",
    "*.temp",
)

_NORMAL, _SEARCH = 0, 1


def tree_key(path: bytes) -> bytes:
    """The order of entries, and of the members of every archive: by path,
    with "/" before every other byte, so that each folder's contents follow
    it directly (``a``, ``a/x``, ``a.txt``).  GNU tar sets a folder's time
    when the member order leaves the folder: in this order it leaves each
    folder once, after its last member."""
    return path.replace(b"/", b"\0")


class LStat(NamedTuple):
    """The fields of an ``lstat`` the toolkit reads, under their os.stat_result
    names: a third of the memory of a whole stat_result (100,000 entries
    held for an incremental create cost 64 MB as stat_results)."""

    st_mode: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_ino: int
    st_dev: int
    st_nlink: int
    st_uid: int
    st_gid: int


_new_tuple = tuple.__new__


_shared: dict[int, int] = {}  # one object per distinct mode and device number (a few of each)


def _lstat(st) -> LStat:
    if type(st) is LStat:
        return st
    mode, dev, mtime, ctime = st.st_mode, st.st_dev, st.st_mtime_ns, st.st_ctime_ns
    return _new_tuple(LStat, (_shared.setdefault(mode, mode), st.st_size, mtime, mtime if ctime == mtime else ctime, st.st_ino,
                              _shared.setdefault(dev, dev), st.st_nlink, st.st_uid, st.st_gid))


class Entry:
    """One selected path, relative to the root with "/" separators, and its
    lstat (an :class:`LStat`; None for a file when the walk was told not to
    stat files: the archive writer fstat()s every file it opens anyway)."""

    __slots__ = ("path", "kind", "st")

    def __init__(self, path: str, kind: str, st):
        self.path = path
        self.kind = kind  # "file" | "dir" | "symlink"
        self.st = None if st is None else _lstat(st)

    from_stat = classmethod(lambda cls, path, kind, st: cls(path, kind, st))

    mode = property(lambda self: self.st.st_mode)
    size = property(lambda self: self.st.st_size if self.kind == "file" and self.st is not None else 0)
    mtime_ns = property(lambda self: self.st.st_mtime_ns)
    uid = property(lambda self: self.st.st_uid)
    gid = property(lambda self: self.st.st_gid)

    def __repr__(self) -> str:
        return f"Entry({self.path!r}, {self.kind!r})"


@dataclass(frozen=True)
class Selection:
    root: str
    entries: tuple[Entry, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason)
    gitignore_patterns: tuple[str, ...] = ()
    excluded_patterns: tuple[str, ...] = ()
    work_dirs: tuple[str, ...] = ()  # work folders of restores met on the walk (absolute), never selected
    files: tuple[Entry, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(e for e in self.entries if e.kind != "dir"))

    @property
    def total_size(self) -> int:
        """Bytes of file content as the archive holds it: a file with several
        hard links in the selection counts once (the others are link members)."""
        total = 0
        seen: set[tuple[int, int]] = set()
        for e in self.files:
            st = e.st
            if e.kind != "file" or st is None:
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
        return total


def _kind_of_mode(mode: int) -> str | None:
    if _stat.S_ISLNK(mode):
        return "symlink"
    if _stat.S_ISDIR(mode):
        return "dir"
    if _stat.S_ISREG(mode):
        return "file"
    return None


def _excludes_file(config: dict[str, str]) -> str | None:
    path = config.get("core.excludesfile")
    if path:
        return os.path.expanduser(path)
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(xdg, "git", "ignore")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "yes", "on", "1")


class _RepoRules:
    """The ignore sources of one repository that do not live in the tree."""

    def __init__(self, top_rel: bytes, git_dir: str | None, excludes_file: str | None, casefold: bool):
        lists = []
        if excludes_file:
            lists.append(PatternList(top_rel, read_ignore_file(excludes_file, casefold=casefold, follow=True), casefold))
        if git_dir:
            info = os.path.join(git_dir, "info", "exclude")
            lists.append(PatternList(top_rel, read_ignore_file(info, casefold=casefold, follow=True), casefold))
        # Checked after the per-directory lists, info/exclude before excludesFile.
        self.lists = tuple(pl for pl in lists if pl.patterns)


def select_files(
    root: str,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    default_excludes: bool = True,
    exclude_paths: Iterable[str] = (),
    always_exclude_paths: Iterable[str] = (),
    use_git: bool = True,
    stat_files: bool = True,
) -> Selection:
    """Walk ``root`` and return what a backup of it holds, in tree order.

    ``exclude_paths`` (absolute: the database and its side files) are
    default excludes; ``always_exclude_paths`` (the backup directories) are
    left out whatever the flags and patterns.
    """
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise NotFoundError(f"project root {root} does not exist or is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise NotFoundError(f"project root {root} is not readable")

    repo = _git.find_repo(root) if use_git else None
    config = _git.git_config(root) if use_git else {}
    casefold = _truthy(config.get("core.ignorecase"))
    excludes_file = _excludes_file(config)
    top = repo.top if repo else root
    prefix_str = os.path.relpath(root, top)
    prefix = b"" if prefix_str == "." else os.fsencode(prefix_str) + b"/"

    def tool_list(patterns: Iterable[str]) -> PatternList:
        data = "\n".join(patterns).encode("utf-8", "surrogateescape")
        return PatternList(prefix, parse_lines(data, casefold=casefold), casefold)

    user_exclude = tool_list(exclude)
    includes = tool_list(include)
    defaults = tool_list(DEFAULT_EXCLUDES if default_excludes else ())

    def rel_set(paths: Iterable[str]) -> frozenset[str]:
        out = set()
        for p in paths:
            rel = os.path.relpath(os.path.abspath(p), root)
            if rel != "." and not rel.startswith(".." + os.sep) and rel != "..":
                out.add(rel.replace(os.sep, "/"))
        return frozenset(out)

    default_paths = rel_set(exclude_paths) if default_excludes else frozenset()
    always_paths = rel_set(always_exclude_paths)

    gitignore_seen: list[str] = []

    def load_gitignore(dir_abs: str, base: bytes) -> PatternList | None:
        pats = read_ignore_file(os.path.join(dir_abs, ".gitignore"), casefold=casefold)
        if not pats:
            return None
        gitignore_seen.extend(p.text for p in pats)
        return PatternList(base, pats, casefold)

    # Rules from the work tree's top down to the root's parent.
    repo_rules = _RepoRules(b"", repo.git_dir if repo else None, excludes_file, casefold)
    dir_lists: list[PatternList] = []
    if prefix:
        parts = prefix_str.split(os.sep)
        for depth in range(len(parts)):
            sub = os.path.join(top, *parts[:depth])
            base = b"" if depth == 0 else os.fsencode("/".join(parts[:depth])) + b"/"
            pl = load_gitignore(sub, base)
            if pl:
                dir_lists.append(pl)

    entries: list[tuple[bytes, Entry]] = []
    skipped: list[tuple[str, str]] = []
    nested_tops: list[str] = []
    work_dirs: list[str] = []
    always_b = {os.fsencode(p) for p in always_paths}
    default_b = {os.fsencode(p) for p in default_paths}
    has_user_exclude = bool(user_exclude.patterns)
    has_includes = bool(includes.patterns)
    has_defaults = bool(defaults.patterns)
    decode = os.fsdecode

    def quick_for(rules, file_rules) -> QuickReject:
        return QuickReject([*((defaults,) if has_defaults else ()), *rules, *file_rules], casefold)

    # Frame: (abs dir, rel dir bytes (b"" for root), rules tuple, repo rules tuple, quick reject, mode)
    first_rules = tuple(dir_lists)
    stack: list[tuple] = [(os.fsencode(root), b"", first_rules, repo_rules.lists, quick_for(first_rules, repo_rules.lists), _NORMAL)]
    while stack:
        dir_abs, dir_rel, rules, file_rules, quick, mode = stack.pop()
        try:
            with os.scandir(dir_abs) as it:
                children = list(it)
        except OSError as exc:
            skipped.append((decode(dir_rel) or ".", exc.strerror or str(exc)))
            continue
        if mode == _NORMAL:
            dir_base = (prefix + dir_rel + b"/") if dir_rel else prefix
            names = {c.name for c in children}
            if dir_rel and b".git" in names and use_git:
                # A nested repository: its own rules only.
                nested_tops.append(decode(dir_rel))
                nested = _git.repo_at(decode(dir_abs))
                rules = ()
                file_rules = _RepoRules(dir_base, nested.git_dir if nested else None, excludes_file, casefold).lists
                quick = quick_for(rules, file_rules)
            if b".gitignore" in names:
                pl = load_gitignore(decode(dir_abs), dir_base)
                if pl:
                    rules = rules + (pl,)
                    quick = quick_for(rules, file_rules)
        rules_rev = rules[::-1] + file_rules[::-1]  # deeper files first, then info/exclude, then excludesFile
        rel_prefix = dir_rel + b"/" if dir_rel else b""
        for child in children:
            name = child.name
            if name == b".git":
                continue
            try:
                if child.is_symlink():
                    kind = "symlink"
                elif child.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif child.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    continue  # FIFO, socket, device: skipped, never opened
            except OSError:
                continue
            rel = rel_prefix + name
            if rel in always_b:
                continue
            is_dir = kind == "dir"
            if is_dir and name[:1] == b"." and is_work_dir_name(name):
                work_dirs.append(decode(child.path))  # a restore's, killed or running: never in a backup
                continue
            brel = prefix + rel if prefix else rel
            if has_user_exclude and user_exclude.excludes(brel, name, is_dir):
                continue
            if not (has_includes and includes.excludes(brel, name, is_dir)):
                if mode == _SEARCH:
                    excluded = True
                elif rel in default_b:
                    excluded = True
                elif not quick.may_match(brel, name, is_dir):
                    excluded = False  # no pattern anywhere can match: the common case
                elif has_defaults and defaults.excludes(brel, name, is_dir):
                    excluded = True
                else:
                    excluded = False
                    for pl in rules_rev:
                        pat = pl.last_match(brel, name, is_dir)
                        if pat is not None:
                            excluded = not pat.negated
                            break
                if excluded:
                    if is_dir and has_includes and includes.may_match_below(brel):
                        stack.append((child.path, rel, rules, file_rules, quick, _SEARCH))
                    continue
            if kind == "file" and not stat_files:
                entries.append((rel, Entry(decode(rel), kind, None)))
                continue
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as exc:
                skipped.append((decode(rel), exc.strerror or str(exc)))
                continue
            entries.append((rel, Entry(decode(rel), kind, st)))
            if is_dir:
                stack.append((child.path, rel, rules, file_rules, quick, _NORMAL))

    if use_git:
        extra: list[Entry] = []
        _add_tracked_ignored(root, repo, nested_tops, [e for _, e in entries], extra, user_exclude, defaults, default_paths, always_paths, prefix)
        entries.extend((os.fsencode(e.path), e) for e in extra)

    entries.sort(key=lambda pair: tree_key(pair[0]))
    excluded_patterns = (".git", *(DEFAULT_EXCLUDES if default_excludes else ()), *exclude)
    return Selection(
        root=root,
        entries=tuple(e for _, e in entries),
        skipped=tuple(skipped),
        gitignore_patterns=tuple(dict.fromkeys(gitignore_seen)),
        excluded_patterns=tuple(excluded_patterns),
        work_dirs=tuple(work_dirs),
    )


def _add_tracked_ignored(root, repo, nested_tops, entries, out, user_exclude, defaults, default_paths, always_paths, prefix):
    """git keeps tracked files even where an ignore rule matches them."""
    tops: list[tuple[str, str]] = []  # (abs top, its path relative to root, "" for root's repo)
    if repo:
        tops.append((repo.top, None))
    tops.extend((os.path.join(root, t), t) for t in nested_tops)
    if not tops:
        return
    have = {e.path for e in entries}
    for top_abs, top_rel in tops:
        for path in _git.tracked_ignored(top_abs):
            abs_path = os.path.join(top_abs, path)
            rel = os.path.relpath(abs_path, root).replace(os.sep, "/")
            if rel.startswith("../") or rel in have:
                continue
            if top_rel is None and any(rel == n or rel.startswith(n + "/") for n in nested_tops):
                continue  # the nested repository's own rules decide
            parts = rel.split("/")
            if ".git" in parts or any(is_work_dir_name(p) for p in parts[:-1]):
                continue
            blocked = False
            for depth in range(1, len(parts) + 1):
                sub = "/".join(parts[:depth])
                is_dir = depth < len(parts)
                bsub = prefix + os.fsencode(sub)
                bname = os.fsencode(parts[depth - 1])
                if (
                    sub in always_paths
                    or sub in default_paths
                    or (user_exclude.patterns and user_exclude.excludes(bsub, bname, is_dir))
                    or (defaults.patterns and defaults.excludes(bsub, bname, is_dir))
                ):
                    blocked = True
                    break
            if blocked:
                continue
            try:
                st = os.lstat(abs_path)
            except OSError:
                continue  # deleted in the work tree: nothing to back up
            kind = _kind_of_mode(st.st_mode)
            if kind not in ("file", "symlink"):
                continue
            out.append(Entry.from_stat(rel, kind, st))
            have.add(rel)
            # Parent directories the walk did not enter still get entries.
            for depth in range(1, len(parts)):
                sub = "/".join(parts[:depth])
                if sub not in have:
                    try:
                        out.append(Entry.from_stat(sub, "dir", os.lstat(os.path.join(root, sub))))
                        have.add(sub)
                    except OSError:
                        pass
