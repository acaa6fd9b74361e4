"""gitignore patterns, compiled to byte regexes with git's exact semantics.

This is a translation of git's ``dir.c`` (line parsing, ``match_basename``,
``match_pathname``) and ``wildmatch.c`` (with ``WM_PATHNAME``) into one
compiled regular expression per pattern, matched against paths as bytes so
that ``?`` and bracket ranges see bytes the way git does.  No regex can
backtrack between two wildcards, so matching takes time linear in the
path's length whatever the pattern (``_translate``; git since 2.41).

Why not pathspec: its per-pattern regexes also match every descendant of a
path (``a/b`` matches ``a/b/c.txt``), which breaks git's precedence between a
directory rule and a later negation of a file below it; it treats ``\\`` in a
bracket literally, has no POSIX classes (``[[:digit:]]``), turns an
unterminated ``[`` into a literal (git: the pattern never matches) and raises
on a dangling ``\\`` (git: the pattern never matches).  Each of those is a
case in ``tests/test_selection.py``, checked against git itself.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

__all__ = ["Pattern", "PatternList", "QuickReject", "parse_lines", "compile_pattern", "read_ignore_file"]

_NEVER = re.compile(rb"(?!)")

# git's own ctype (ctype.c), ASCII only: bytes >= 0x80 are in no class.
_CLASSES: dict[bytes, frozenset[int]] = {
    b"alnum": frozenset(string.ascii_letters.encode() + string.digits.encode()),
    b"alpha": frozenset(string.ascii_letters.encode()),
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset([*range(0, 32), 127]),
    b"digit": frozenset(string.digits.encode()),
    b"graph": frozenset(range(0x21, 0x7F)),
    b"lower": frozenset(string.ascii_lowercase.encode()),
    b"print": frozenset(range(0x20, 0x7F)),
    b"punct": frozenset(string.punctuation.encode()),
    b"space": frozenset(b" \t\n\r"),
    b"upper": frozenset(string.ascii_uppercase.encode()),
    b"xdigit": frozenset(string.hexdigits.encode()),
}
_SLASH = ord("/")


class _Abort(Exception):
    """The pattern can never match (git's WM_ABORT_ALL at parse time)."""


def _bracket(p: bytes, i: int, casefold: bool) -> tuple[str, int]:
    """Translate the bracket expression starting after ``[`` at ``p[i]``."""
    end = len(p)
    if i >= end:
        raise _Abort
    negated = p[i] in b"!^"
    if negated:
        i += 1
    members: set[int] = set()
    prev = 0
    first = True
    while True:
        if i >= end:
            raise _Abort
        c = p[i]
        if c == ord("]") and not first:
            i += 1
            break
        first = False
        if c == ord("\\"):
            i += 1
            if i >= end:
                raise _Abort
            c = p[i]
            members.add(c)
            prev = c
        elif c == ord("-") and prev and i + 1 < end and p[i + 1] != ord("]"):
            i += 1
            hi = p[i]
            if hi == ord("\\"):
                i += 1
                if i >= end:
                    raise _Abort
                hi = p[i]
            for ch in range(prev, hi + 1):
                members.add(ch)
                if casefold and 0x41 <= ch <= 0x5A:
                    members.add(ch + 32)
            prev = 0
        elif c == ord("[") and i + 1 < end and p[i + 1] == ord(":"):
            close = p.find(b"]", i + 2)
            if close < 0:
                raise _Abort
            name = p[i + 2 : close]
            if not name.endswith(b":"):
                # "[:" without ":]": the "[" is an ordinary member.
                members.add(c)
                prev = c
            else:
                cls = _CLASSES.get(name[:-1])
                if cls is None:
                    raise _Abort
                members |= cls
                if casefold and name[:-1] == b"upper":
                    members |= _CLASSES[b"lower"]
                i = close
                prev = 0
        else:
            members.add(c)
            prev = c
        i += 1
    if negated:
        members = set(range(256)) - members
    members.discard(_SLASH)  # a bracket never matches "/" (WM_PATHNAME)
    if not members:
        return "(?!)", i
    # As ranges: "[!a]" holds 254 bytes, and a class of 254 escapes takes
    # five times as long to compile as its three ranges.
    runs: list[list[int]] = []
    for m in sorted(members):
        if runs and runs[-1][1] == m - 1:
            runs[-1][1] = m
        else:
            runs.append([m, m])
    ranges = ["\\x%02x" % lo if lo == hi else "\\x%02x-\\x%02x" % (lo, hi) for lo, hi in runs]
    return "[" + "".join(ranges) + "]", i


# Tokens of a pattern: a one-byte item (regex source), or one of these.
_STAR = object()  # "*" (and "**" where it is a plain star): bytes but "/"
_SLASH_ITEM = object()  # a literal "/" (WM_PATHNAME: the end of a segment)
_DIRS = object()  # leading "**/" or "/**/": zero or more whole directories
_DIRS1 = object()  # "**\/": git skips its zero-directory shortcut: one or more
_REST = object()  # trailing "/**": everything
_GAPS = (_DIRS, _DIRS1, _REST)


def _tokens(p: bytes, *, pathname: bool, casefold: bool) -> list:
    """wildmatch(3)-as-git-does-it, parsed: one-byte items as regex source,
    and the wildcards as the constants above."""
    out: list = []
    i, end = 0, len(p)
    any_char = "[^/]" if pathname else "."
    while i < end:
        c = p[i]
        if c == ord("\\"):
            i += 1
            if i >= end:
                raise _Abort  # dangling backslash: git never matches
            c = p[i]
            # escaped chars are not case-folded
            out.append(_SLASH_ITEM if pathname and c == _SLASH else re.escape(chr(c)) if c < 128 else "\\x%02x" % c)
            i += 1
        elif c == ord("?"):
            out.append(any_char)
            i += 1
        elif c == ord("["):
            src, i = _bracket(p, i + 1, casefold)
            out.append(src)
        elif c == ord("*"):
            j = i
            while j < end and p[j] == ord("*"):
                j += 1
            double = j - i >= 2
            at_start = i == 0 or p[i - 1] == _SLASH
            nxt = p[j] if j < end else None
            slash_next = nxt == _SLASH or (nxt == ord("\\") and j + 1 < end and p[j + 1] == _SLASH)
            if pathname and double and at_start and (nxt is None or slash_next):
                if nxt is None:
                    out.append(_REST)
                    i = j
                elif nxt == _SLASH:
                    out.append(_DIRS)
                    i = j + 1
                else:
                    out.append(_DIRS1)
                    i = j + 2
            else:
                out.append(_STAR)  # without WM_PATHNAME any_char is "." : "*" == "**"
                i = j
        elif c == _SLASH and pathname:
            out.append(_SLASH_ITEM)
            i += 1
        else:
            ch = chr(c)
            if casefold and "A" <= ch <= "Z":
                ch = ch.lower()
            out.append(re.escape(ch) if c < 128 else "\\x%02x" % c)
            i += 1
    return out


def _segment(items: list, any_char: str, atomic: bool) -> str:
    """One segment ``S0*S1*…*Sk``: fixed-width pieces Si, none of which (nor
    the stars) can match "/" under WM_PATHNAME.

    Classic glob matching: S1 … S(k-1) each at its earliest place, Sk at its
    latest.  Earliest is right for a middle piece because the next star can
    take whatever bytes an earlier placement leaves (none of them is "/"),
    so a later placement never helps; latest is right for the last piece
    because only the latest placement can end where the segment ends.  In
    regex terms an atomic lazy group per middle star and an atomic greedy
    one for the last: one way to match, nothing to backtrack into."""
    pieces: list[list[str]] = [[]]
    for t in items:
        if t is _STAR:
            pieces.append([])
        else:
            pieces[-1].append(t)
    out = "".join(pieces[0])
    if len(pieces) == 1:
        return out
    for piece in pieces[1:-1]:
        out += f"(?>{any_char}*?{''.join(piece)})"
    last = "".join(pieces[-1])
    if not atomic:
        return out + f"{any_char}*{last}"
    return out + (f"(?>{any_char}*{last})" if last else f"{any_char}*+")


def _translate(p: bytes, *, pathname: bool, casefold: bool) -> str:
    """wildmatch(3)-as-git-does-it → regex source (for a bytes regex) that
    matches in time linear in the text's length.

    A backtracking translation (``.*a.*a…``) takes exponential time on a
    near miss (git's t3070: ``*a`` sixteen times against sixty ``a`` and a
    ``b``).  Here no two unbounded quantifiers can trade bytes: each sits
    in an atomic group of its own, placed where the classic glob algorithm
    places it (``_segment``).  The directory wildcards ("**/", "/**/",
    "**\\/", "/**") split a pattern into blocks of whole segments; a block
    between two of them goes at its earliest directory (the next wildcard
    can take the whole directories an earlier placement leaves), the last
    block at its latest start (the only one that can reach the end).  A
    pattern with a single wildcard has nothing to backtrack between and is
    written plainly (as fast as before for the common ``*.pyc``, ``**/foo``).
    """
    tokens = _tokens(p, pathname=pathname, casefold=casefold)
    atomic = sum(1 for t in tokens if t is _STAR or any(t is g for g in _GAPS)) > 1
    if not pathname:
        return _segment(tokens, ".", atomic)
    blocks: list[list] = [[]]
    gaps: list[object] = []
    for t in tokens:
        if any(t is g for g in _GAPS):
            gaps.append(t)
            blocks.append([])
        else:
            blocks[-1].append(t)

    def block(items: list) -> str:
        segs: list[list] = [[]]
        for t in items:
            if t is _SLASH_ITEM:
                segs.append([])
            else:
                segs[-1].append(t)
        return "/".join(_segment(s, "[^/]", atomic) for s in segs)

    out = block(blocks[0])
    for n, (gap, items) in enumerate(zip(gaps, blocks[1:])):
        if n < len(gaps) - 1:
            # This block ends with "/", before the next directory wildcard.
            lead = "(?:.*?/)??" if gap is _DIRS else ".*?/"
        else:
            lead = "(?:.*/)?" if gap is _DIRS else ".*/" if gap is _DIRS1 else ".*"
        out += f"(?>{lead}{block(items)})" if atomic else lead + block(items)
    return out


@dataclass(frozen=True, slots=True)
class Pattern:
    """One compiled gitignore line."""

    text: str
    negated: bool
    dir_only: bool
    basename: bool  # no "/" inside: matched against the last path component
    regex: re.Pattern


def _trim_trailing_spaces(line: bytes) -> bytes:
    last_space = None
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == 0x20:
            if last_space is None:
                last_space = i
        elif c == 0x5C:  # backslash: the next byte is kept
            i += 1
            if i >= n:
                return line
            last_space = None
        else:
            last_space = None
        i += 1
    return line if last_space is None else line[:last_space]


def compile_pattern(line: bytes, *, casefold: bool = False) -> Pattern | None:
    """Compile one already-split gitignore line; None for blanks and comments."""
    text = line.decode("utf-8", "surrogateescape")
    if not line or line.startswith(b"#"):
        return None
    line = _trim_trailing_spaces(line)
    if not line:
        return None
    negated = line.startswith(b"!")
    if negated:
        line = line[1:]
    dir_only = line.endswith(b"/")
    if dir_only:
        line = line[:-1]
    basename = b"/" not in line
    if not basename and line.startswith(b"/"):
        line = line[1:]  # one leading slash anchors; the rest are literal
    try:
        regex = re.compile(
            _translate(line, pathname=not basename, casefold=casefold).encode("latin-1"),
            re.DOTALL,
        )
    except _Abort:
        regex = _NEVER
    return Pattern(text, negated, dir_only, basename, regex)


def parse_lines(data: bytes, *, casefold: bool = False) -> tuple[Pattern, ...]:
    """Parse a whole ignore file (UTF-8 BOM and CRLF handled as git does)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    patterns = []
    for raw in data.split(b"\n"):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        pat = compile_pattern(raw, casefold=casefold)
        if pat is not None:
            patterns.append(pat)
    return tuple(patterns)


def _combined(patterns: list[tuple[int, Pattern]]) -> re.Pattern | None:
    """One regex for many patterns, newest first: the alternative that
    matches first is git's last matching line; its group names its index."""
    if not patterns:
        return None
    parts = [f"(?P<p{i}>{p.regex.pattern.decode('latin-1')})" for i, p in reversed(patterns) if p.regex is not _NEVER]
    if not parts:
        return None
    return re.compile("|".join(parts).encode("latin-1"), re.DOTALL)


@dataclass(frozen=True, slots=True)
class PatternList:
    """The patterns of one source, with the directory they are relative to.

    ``base`` is the directory as bytes with a trailing slash ("" for the top).
    """

    base: bytes
    patterns: tuple[Pattern, ...]
    casefold: bool = False
    _rx: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # (basename regex, path regex) for files, then for directories.
        rx = []
        for is_dir in (False, True):
            usable = [(i, p) for i, p in enumerate(self.patterns) if is_dir or not p.dir_only]
            rx.append(_combined([(i, p) for i, p in usable if p.basename]))
            rx.append(_combined([(i, p) for i, p in usable if not p.basename]))
        object.__setattr__(self, "_rx", tuple(rx))

    def last_match(self, rel: bytes, name: bytes, is_dir: bool) -> Pattern | None:
        """The last pattern of this list that matches (git's precedence)."""
        sub = rel[len(self.base) :]
        if self.casefold:
            sub, name = sub.lower(), name.lower()
        by_name, by_path = self._rx[2:] if is_dir else self._rx[:2]
        best = -1
        if by_name is not None:
            m = by_name.fullmatch(name)
            if m:
                best = int(m.lastgroup[1:])
        if by_path is not None:
            m = by_path.fullmatch(sub)
            if m:
                best = max(best, int(m.lastgroup[1:]))
        return self.patterns[best] if best >= 0 else None

    def anchored_sources(self, is_dir: bool) -> tuple[list[bytes], list[bytes]]:
        """Regex sources of this list's patterns that apply to ``is_dir``:
        (basename sources, full-path sources anchored at ``base``)."""
        names, paths = [], []
        for p in self.patterns:
            if p.regex is _NEVER or (p.dir_only and not is_dir):
                continue
            if p.basename:
                names.append(p.regex.pattern)
            else:
                paths.append(re.escape(self.base) + p.regex.pattern)
        return names, paths

    def excludes(self, rel: bytes, name: bytes, is_dir: bool) -> bool:
        pat = self.last_match(rel, name, is_dir)
        return pat is not None and not pat.negated

    def may_match_below(self, rel_dir: bytes) -> bool:
        """Could a (non-negated) path pattern match something inside rel_dir?

        Basename patterns never make the walk enter an excluded directory:
        that is what keeps a 300 MB node_modules free.  A path pattern does
        when its leading components match the directory's.
        """
        sub = rel_dir[len(self.base) :]
        if self.casefold:
            sub = sub.lower()
        parts = sub.split(b"/")
        for pat in self.patterns:
            if pat.negated or pat.basename:
                continue
            if _prefix_may_match(pat, parts, self.casefold):
                return True
        return False


class QuickReject:
    """Can any pattern of these lists match at all?  One regex for names and
    one for paths, per entry kind: most entries match nothing, and for them
    this replaces a walk through every list.  Only a hit needs git's exact
    precedence."""

    __slots__ = ("_rx", "_casefold")

    def __init__(self, lists, casefold: bool):
        rx = []
        for is_dir in (False, True):
            names, paths = [], []
            for pl in lists:
                n, p = pl.anchored_sources(is_dir)
                names += n
                paths += p
            flags = re.DOTALL
            rx.append(re.compile(b"|".join(b"(?:%s)" % x for x in names), flags) if names else None)
            rx.append(re.compile(b"|".join(b"(?:%s)" % x for x in paths), flags) if paths else None)
        self._rx = tuple(rx)
        self._casefold = casefold

    def may_match(self, rel: bytes, name: bytes, is_dir: bool) -> bool:
        if self._casefold:
            rel, name = rel.lower(), name.lower()
        by_name, by_path = self._rx[2:] if is_dir else self._rx[:2]
        return (by_name is not None and by_name.fullmatch(name) is not None) or (
            by_path is not None and by_path.fullmatch(rel) is not None
        )


def _prefix_may_match(pat: Pattern, parts: list[bytes], casefold: bool) -> bool:
    segments = pat.text.encode("utf-8", "surrogateescape")
    segments = _trim_trailing_spaces(segments).lstrip(b"!").rstrip(b"/").lstrip(b"/")
    segs = segments.split(b"/")
    for k, part in enumerate(parts):
        if k >= len(segs):
            return False
        seg = segs[k]
        if seg == b"**" or seg.startswith(b"**"):
            return True
        try:
            rx = re.compile(_translate(seg, pathname=True, casefold=casefold).encode("latin-1"), re.DOTALL)
        except _Abort:
            return False
        if rx.fullmatch(part) is None:
            return False
    return len(segs) > len(parts)


def read_ignore_file(path: str, *, casefold: bool = False, follow: bool = False) -> tuple[Pattern, ...]:
    """Read an ignore file; missing, unreadable or not a regular file → none.

    In-tree ``.gitignore`` files are never followed through a symlink (git
    2.32+); ``info/exclude`` and ``core.excludesFile`` are (``follow``).
    """
    import os

    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError:
        return ()
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ()
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError:
        return ()
    finally:
        os.close(fd)
    return parse_lines(b"".join(chunks), casefold=casefold)
