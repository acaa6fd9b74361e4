"""The gitignore matcher takes time linear in the length of the path.

``wildmatch._translate`` puts every star's piece at its earliest place (the
last piece of a segment or of the pattern at its latest) inside an atomic
group, so the regex engine never has two quantifiers to trade bytes between.
Checked here:

- it accepts exactly what the backtracking translation it replaced accepts
  (``backtracking_translate`` below; that one matched git itself in
  ``test_selection.py``, which keeps checking the new one): every pattern of
  up to three atoms over a small alphabet against every text of up to five
  bytes, then seeded random longer patterns, with and without casefold;
- git's t3070 case (``*a`` sixteen times against sixty ``a`` and a ``b``), the
  same through every entry point, and a seeded random search for slow
  patterns finish: they run in a child process that is killed after a
  generous timeout (a hang detector, not a timing assertion: the
  backtracking translation takes hours on them, this one milliseconds);
- structurally: in no compiled regex (single pattern, per-list alternation,
  quick-reject alternation) can two unbounded quantifiers backtrack into each
  other outside an atomic group.
"""

import itertools
import json
import random
import re
import string
import subprocess
import sys
import textwrap

import pytest
from re import _constants as C  # re's own parser, for the structural check
from re import _parser as sre_parse

from backup_lib.wildmatch import PatternList, QuickReject, _Abort, _translate, parse_lines
from conftest import REPO


# ------------------------------------------------ the oracle
# The base commit's translation, unchanged but for names: correct (it passed
# the differential tests against git) but backtracking.  Self-contained, so
# that a change to the module's bracket or escape handling is compared too.

class Never(Exception):
    """git never matches the pattern."""


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


def backtracking_bracket(p: bytes, i: int, casefold: bool) -> tuple[str, int]:
    """Translate the bracket expression starting after ``[`` at ``p[i]``."""
    end = len(p)
    if i >= end:
        raise Never
    negated = p[i] in b"!^"
    if negated:
        i += 1
    members: set[int] = set()
    prev = 0
    first = True
    while True:
        if i >= end:
            raise Never
        c = p[i]
        if c == ord("]") and not first:
            i += 1
            break
        first = False
        if c == ord("\\"):
            i += 1
            if i >= end:
                raise Never
            c = p[i]
            members.add(c)
            prev = c
        elif c == ord("-") and prev and i + 1 < end and p[i + 1] != ord("]"):
            i += 1
            hi = p[i]
            if hi == ord("\\"):
                i += 1
                if i >= end:
                    raise Never
                hi = p[i]
            for ch in range(prev, hi + 1):
                members.add(ch)
                if casefold and 0x41 <= ch <= 0x5A:
                    members.add(ch + 32)
            prev = 0
        elif c == ord("[") and i + 1 < end and p[i + 1] == ord(":"):
            close = p.find(b"]", i + 2)
            if close < 0:
                raise Never
            name = p[i + 2 : close]
            if not name.endswith(b":"):
                # "[:" without ":]": the "[" is an ordinary member.
                members.add(c)
                prev = c
            else:
                cls = _CLASSES.get(name[:-1])
                if cls is None:
                    raise Never
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
    return "[" + "".join("\\x%02x" % m for m in sorted(members)) + "]", i


def backtracking_translate(p: bytes, *, pathname: bool, casefold: bool) -> str:
    """The translation before this one, unchanged: correct (it passed the
    differential tests against git) but backtracking, so exponential."""
    out: list[str] = []
    i, end = 0, len(p)
    any_char = "[^/]" if pathname else "."
    while i < end:
        c = p[i]
        if c == ord("\\"):
            i += 1
            if i >= end:
                raise Never  # dangling backslash: git never matches
            out.append(re.escape(chr(p[i])))  # escaped chars are not case-folded
            i += 1
        elif c == ord("?"):
            out.append(any_char)
            i += 1
        elif c == ord("["):
            src, i = backtracking_bracket(p, i + 1, casefold)
            out.append(src)
        elif c == ord("*"):
            j = i
            while j < end and p[j] == ord("*"):
                j += 1
            double = j - i >= 2
            at_start = i == 0 or p[i - 1] == _SLASH
            nxt = p[j] if j < end else None
            slash_next = nxt == _SLASH or (nxt == ord("\\") and j + 1 < end and p[j + 1] == _SLASH)
            if not pathname:
                out.append(".*")
                i = j
            elif double and at_start and (nxt is None or slash_next):
                if nxt is None:
                    out.append(".*")
                    i = j
                elif nxt == _SLASH:
                    # "**/" matches zero or more whole directories.
                    out.append("(?:.*/)?")
                    i = j + 1
                else:
                    # "**\/": git skips its zero-directory shortcut here.
                    out.append(".*/")
                    i = j + 2
            else:
                out.append("[^/]*")
                i = j
        else:
            ch = chr(c)
            if casefold and "A" <= ch <= "Z":
                ch = ch.lower()
            out.append(re.escape(ch) if c < 128 else "\\x%02x" % c)
            i += 1
    return "".join(out)


def compiled(src: str) -> re.Pattern:
    return re.compile(src.encode("latin-1"), re.DOTALL)


def translations(p: bytes, pathname: bool, casefold: bool = False):
    """(backtracking, linear) regexes of one pattern; None where git never matches."""
    try:
        old = compiled(backtracking_translate(p, pathname=pathname, casefold=casefold))
    except Never:
        with pytest.raises(_Abort):
            _translate(p, pathname=pathname, casefold=casefold)
        return None
    return old, compiled(_translate(p, pathname=pathname, casefold=casefold))


def differences(p: bytes, texts, casefold: bool = False) -> list:
    out = []
    for pathname in (True, False):
        pair = translations(p, pathname, casefold)
        if pair is None:
            continue
        old, new = pair
        for t in texts:
            if (old.fullmatch(t) is None) != (new.fullmatch(t) is None):
                out.append((p, pathname, casefold, t, old.pattern, new.pattern))
    return out


# ------------------------------------------------ same answers as before

ATOMS = [b"a", b"b", b"/", b".", b"*", b"?", b"[a]", b"**", b"\\/", b"[!a]"]
SHORT_TEXTS = [bytes(t) for n in range(6) for t in itertools.product(b"ab/.", repeat=n)]


def test_every_small_pattern_matches_what_the_backtracking_translation_matched():
    # Every pattern of up to three atoms (runs of stars, "**/", "/**/",
    # "/**", "**\/", brackets, "?") against every text of up to five bytes
    # over a, b, "/", "." (empty segments and leading or trailing "/"
    # included), with and without WM_PATHNAME.  A one-off run of the same
    # with four atoms and six bytes, and five atoms and five bytes, found no
    # difference either.
    patterns = {b"".join(c) for n in range(4) for c in itertools.product(ATOMS, repeat=n)}
    found = []
    for p in sorted(patterns):
        found += differences(p, SHORT_TEXTS)
    assert found == []


RANDOM_ATOMS = [
    b"a", b"b", b"A", b"B", b"/", b".", b"*", b"*", b"*", b"?", b"**", b"***", b"[ab]", b"[!a]", b"[^b/]",
    b"[a-b]", b"[A-B]", b"[[:upper:]]", b"[[:alpha:]]", b"\\*", b"\\/", b"\\a", b"/**/", b"**/", b"/**",
    "é".encode(), b"[\xc3]", b"[!\xa9]", b"\\\xc3",
]


def random_text(rng: random.Random) -> bytes:
    return bytes(rng.choice(b"aabAB/.\xc3\xa9") for _ in range(rng.randint(0, 12)))


@pytest.mark.parametrize("casefold", [False, True], ids=["exact", "casefold"])
def test_random_patterns_match_what_the_backtracking_translation_matched(casefold):
    rng = random.Random(3070 + casefold)
    found, hits = [], 0
    for _ in range(1000):
        p = b"".join(rng.choice(RANDOM_ATOMS) for _ in range(rng.randint(3, 9)))
        texts = [random_text(rng) for _ in range(60)]
        # Texts that a star-heavy pattern can match: the pattern with each
        # wildcard replaced by a few bytes.
        for _ in range(20):
            texts.append(re.sub(rb"\*+|\?|\[[^]]*\]|\\", lambda m: random_text(rng)[:3], p))
        if casefold:
            texts = [t.lower() for t in texts]  # callers lower the path when casefolding
        found += differences(p, texts, casefold)
        pair = translations(p, pathname=True, casefold=casefold)
        if pair:
            hits += sum(pair[1].fullmatch(t) is not None for t in texts)
    assert found == []
    assert hits > 2000  # the comparison saw matches, not only misses


BRACKET_ATOMS = [b"!", b"^", b"a", b"Z", b"-", b"]", b"\\", b"[:alpha:]", b"[:upper:]", b"[:", b"/", b"\xe9"]


@pytest.mark.parametrize("casefold", [False, True], ids=["exact", "casefold"])
def test_bracket_classes_unchanged(casefold):
    # Every bracket expression of up to three atoms: the same bytes, written
    # as ranges now.
    found = []
    for n in range(4):
        for combo in itertools.product(BRACKET_ATOMS, repeat=n):
            p = b"[" + b"".join(combo) + b"]"
            pair = translations(p, pathname=True, casefold=casefold)
            if pair is None:
                continue
            old, new = pair
            if [old.fullmatch(bytes([c])) is None for c in range(256)] != [new.fullmatch(bytes([c])) is None for c in range(256)]:
                found.append((p, old.pattern, new.pattern))
    assert found == []


def test_double_star_forms_and_git_corner_cases_unchanged():
    cases = [
        b"**", b"**/", b"/**", b"**/a", b"a/**", b"a/**/b", b"a**b", b"a/**b", b"**a/b", b"a/**\\/b", b"**\\/a",
        b"a/**/**/b", b"**/**/a", b"a/**\\/**/b", b"a/**/**\\/b", b"*/*/**/*", b"a*/**/*b*/**/c*d",
        b"\\**/a", b"a/\\**/b", b"[*]/**/b", b"a/***/b", b"***/a", b"a/***",
    ]
    texts = [bytes(t) for n in range(7) for t in itertools.product(b"ab/", repeat=n)]
    found = []
    for p in cases:
        found += differences(p, texts)
    assert found == []


# ------------------------------------------------ hang detectors

def run_child(code: str, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter on this checkout; fail, naming the
    last line it printed, if it is still running after ``timeout`` seconds."""
    prelude = f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
    try:
        proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        lines = (exc.stdout or b"").decode(errors="replace").strip().splitlines()
        pytest.fail(f"still matching after {timeout} s (a backtracking regex); last started: {lines[-1:]}")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def test_t3070_exponential_case_finishes():
    # git's t/t3070-wildmatch.sh, "matching does not exhibit exponential
    # behavior" (git 2.41): "*a" sixteen times against sixty "a" and a "b"
    # must not match, within two seconds there.  Here through every entry
    # point: basename (no WM_PATHNAME, as t3070), anchored and "**" path
    # patterns, a list's alternation, the quick reject, the walk's
    # may-match-below, casefolding.
    out = run_child(r"""
        from backup_lib.wildmatch import PatternList, QuickReject, compile_pattern, parse_lines

        def check(what, got, want):
            print(what, flush=True)
            assert got == want, (what, got, want)

        for casefold in (False, True):
            star_a = b"*A" * 16 if casefold else b"*a" * 16
            miss, hit = b"a" * 60 + b"b", b"a" * 60
            for line, miss_text, hit_text in [
                (star_a, miss, hit),
                (b"/" + star_a, miss, hit),
                (b"**/" + star_a, b"x/y/" + miss, b"x/y/" + hit),
                (b"x/**/" + star_a + b"/**", b"x/" + miss + b"/z", b"x/y/" + hit + b"/z"),
                (star_a + b"/" + star_a, hit + b"/" + miss, hit + b"/" + hit),
                (b"*a*a*a*a*a*a*a*a*a", b"a" * 38 + b"b", b"a" * 38),
                (b"/*a*a*a*a*a*a*a*a*a*a/**/*a*a*a*a*a*a*a*a*a*a", hit + b"/x/" + miss, hit + b"/" + hit),
            ]:
                rx = compile_pattern(line, casefold=casefold).regex
                check((line, casefold, "miss"), rx.fullmatch(miss_text) is None, True)
                check((line, casefold, "hit"), rx.fullmatch(hit_text) is not None, True)

            lines = [star_a, b"/" + star_a, b"**/" + star_a, b"x/" + star_a]
            pl = PatternList(b"", parse_lines(b"\n".join(lines), casefold=casefold), casefold)
            check("list miss", pl.last_match(b"x/" + miss, miss, False), None)
            check("list hit", pl.last_match(b"x/" + hit, hit, False), pl.patterns[3])
            quick = QuickReject([pl], casefold)
            check("quick miss", quick.may_match(b"x/" + miss, miss, False), False)
            check("quick hit", quick.may_match(b"x/" + hit, hit, True), True)
            below = PatternList(b"", parse_lines(b"x/" + star_a + b"/y", casefold=casefold), casefold)
            check("below miss", below.may_match_below(b"x/" + miss), False)
            check("below hit", below.may_match_below(b"x/" + hit), True)
        print("done")
    """)
    assert out.splitlines()[-1] == "done"


def test_selection_with_t3070_line_finishes(tmp_path):
    # A .gitignore with the line used to stall every backup of the tree.
    root = tmp_path / "proj"
    (root / "d").mkdir(parents=True)
    miss, hit = "a" * 60 + "b", "a" * 60
    (root / ".gitignore").write_text("*a" * 16 + "\n")
    for name in (miss, hit, f"d/{miss}", f"d/{hit}"):
        (root / name).write_text("x")
    out = run_child(f"""
        import json
        from backup_lib.selection import select_files
        sel = select_files({str(root)!r}, default_excludes=False, exclude=["/d/*b*b*b*b*b*b*b*b*b*b*b*b"])
        print(json.dumps(sorted(e.path for e in sel.files)))
    """)
    assert json.loads(out) == sorted([".gitignore", miss, f"d/{miss}"])


SEARCH = r"""
import random
from backup_lib.wildmatch import compile_pattern

rng = random.Random(SEED)
SEG_ATOMS = [b"*"] * 6 + [b"?", b"[ab]", b"[!b]", b"a", b"a", b"b", b"**", b"\\a", b"[[:alpha:]]"]
JOINS = [b"/"] * 3 + [b"/**/", b"/**\\/"]


def segment():
    return b"".join(rng.choice(SEG_ATOMS) for _ in range(rng.randint(2, 14)))


def pattern():
    n = rng.randint(1, 5)
    p = segment()
    for _ in range(n - 1):
        p += rng.choice(JOINS) + segment()
    if rng.random() < 0.2:
        p = b"**/" + p
    if rng.random() < 0.2:
        p += b"/**"
    return p


def texts(p):
    # Near misses: long runs of what the pattern's pieces match, as one name
    # and split into directories, ending in a byte that breaks the match.
    size = rng.randint(200, 1000)
    run = b"a" * size
    parts = max(1, p.count(b"/") + rng.randint(-1, 3))
    split = b"/".join(b"a" * (size // parts) for _ in range(parts))
    noisy = bytes(rng.choice(b"aaaab/") for _ in range(size))
    return [run + b"b", run + b"/b", split + b"b", split + b"/", noisy, b"b" + run]


for n in range(COUNT):
    p = pattern()
    print(repr(p), flush=True)
    for casefold in (False, True):
        rx = compile_pattern(p, casefold=casefold).regex
        for t in texts(p):
            rx.fullmatch(t)
print("done", COUNT)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_random_search_for_slow_patterns(seed):
    # Random patterns of many stars, "?", brackets and "**" forms, one to
    # five segments, against names and paths of 200 to 1000 bytes built to
    # almost match: a bounded amount of work that must finish.
    out = run_child(SEARCH.replace("SEED", str(seed)).replace("COUNT", "150"), timeout=120)
    assert out.splitlines()[-1] == "done 150"


# ------------------------------------------------ structure

def backtracking_scopes(rx: re.Pattern) -> list[int]:
    """For the top level and every atomic group, possessive repeat and
    lookaround of ``rx`` (a scope: nothing backtracks into it from outside):
    how many unbounded quantifiers in it can backtrack.  Two or more can
    trade bytes between them: that is where backtracking multiplies."""
    scopes: list[int] = []

    def count(seq) -> int:
        n = 0
        for op, av in seq:
            if op is C.ATOMIC_GROUP:
                scopes.append(count(av))
            elif op is C.POSSESSIVE_REPEAT:
                scopes.append(count(av[2]))
            elif op in (C.ASSERT, C.ASSERT_NOT):
                scopes.append(count(av[1]))
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
                n += (av[1] == C.MAXREPEAT) + count(av[2])
            elif op is C.SUBPATTERN:
                n += count(av[-1])
            elif op is C.BRANCH:
                n += max(count(alt) for alt in av[1])
        return n

    scopes.append(count(sre_parse.parse(rx.pattern, rx.flags)))
    return scopes


def test_structure_check_sees_backtracking():
    assert max(backtracking_scopes(compiled(backtracking_translate(b"*a*a", pathname=False, casefold=False)))) == 2
    assert max(backtracking_scopes(re.compile(rb"(?>(?:a*)*)"))) == 2
    assert max(backtracking_scopes(re.compile(rb"a*b(?>c*d*)"))) == 2
    assert max(backtracking_scopes(re.compile(rb"a*+b*+(?>c*d*+)"))) == 1


def test_no_two_quantifiers_can_backtrack_into_each_other():
    rng = random.Random(10)
    patterns = {b"".join(c) for n in range(4) for c in itertools.product(ATOMS, repeat=n)}
    patterns |= {b"".join(rng.choice(RANDOM_ATOMS) for _ in range(rng.randint(3, 12))) for _ in range(2000)}
    bad = []
    for p in sorted(patterns):
        for pathname in (True, False):
            try:
                rx = compiled(_translate(p, pathname=pathname, casefold=False))
            except _Abort:
                continue
            if max(backtracking_scopes(rx)) > 1:
                bad.append((p, pathname, rx.pattern))
    assert bad == []
    # The alternations that hold many patterns: each pattern a scope of its own.
    lines = rng.sample(sorted(patterns), 400)
    pl = PatternList(b"sub/", parse_lines(b"\n".join(lines)))
    regexes = [rx for rx in pl._rx if rx is not None]
    regexes += [rx for rx in QuickReject([pl, PatternList(b"", parse_lines(b"\n".join(lines[::-1])))], False)._rx if rx is not None]
    assert len(regexes) == 8
    for rx in regexes:
        assert max(backtracking_scopes(rx)) <= 1
