"""Selection is checked against git itself: `git ls-files -co --exclude-standard`."""

import os
import random
import subprocess

import pytest

from backup_lib.selection import select_files
from conftest import HAVE_GIT, git, write_tree

pytestmark = pytest.mark.skipif(not HAVE_GIT, reason="git is required for the differential test")


def git_view(root, *, repo: bool, tmp_path) -> set[str]:
    """What git keeps: tracked plus untracked-not-ignored files."""
    if repo:
        out = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root).stdout
    else:
        gd = tmp_path / "external-gitdir"
        if not gd.exists():
            subprocess.run(["git", "init", "-q", "--bare", str(gd)], check=True)
        out = subprocess.run(
            ["git", f"--git-dir={gd}", f"--work-tree={root}", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            check=True,
            capture_output=True,
        ).stdout
    return {p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p}


def ours(root, **kw) -> set[str]:
    sel = select_files(str(root), default_excludes=False, **kw)
    return {e.path for e in sel.files}


def check(root, tmp_path, *, repo: bool):
    expected = git_view(root, repo=repo, tmp_path=tmp_path)
    got = ours(root)
    assert got == expected, f"only ours: {sorted(got - expected)}; only git: {sorted(expected - got)}"


CASES = {
    "basename_and_negation": {
        ".gitignore": "*.log\n!keep.log\n",
        "a.log": "", "keep.log": "", "sub/b.log": "", "sub/keep.log": "", "c.txt": "",
    },
    "dir_only": {
        ".gitignore": "build/\nout\n",
        "build/x": "", "src/build": "file named build", "src/build2/x": "", "out/y": "", "x/out": "",
    },
    "anchored": {
        ".gitignore": "/top.txt\nmid/deep.txt\n",
        "top.txt": "", "sub/top.txt": "", "mid/deep.txt": "", "x/mid/deep.txt": "",
    },
    "double_star": {
        ".gitignore": "**/foo\nbar/**\na/**/z\nq**r\n",
        "foo": "", "x/foo": "", "x/y/foo/f": "", "bar/1": "", "bar/b/2": "", "bar2": None,
        "a/z": "", "a/b/z": "", "a/b/c/z": "", "qxr": "", "q/r": "", "qr": "",
    },
    "no_reinclude_below_excluded_dir": {
        ".gitignore": "logs/\n!logs/important.log\n",
        "logs/important.log": "", "logs/other.log": "",
    },
    "reinclude_via_star": {
        ".gitignore": "/*\n!/keep/\n!.gitignore\n",
        "a": "", "keep/x": "", "drop/y": "",
    },
    "deeper_wins": {
        ".gitignore": "*.txt\n",
        "sub/.gitignore": "!*.txt\n",
        "a.txt": "", "sub/b.txt": "", "sub/deeper/c.txt": "",
    },
    "deeper_dir_rule": {
        ".gitignore": "!x.tmp\n",
        "sub/.gitignore": "x.*\n",
        "x.tmp": "", "sub/x.tmp": "", "sub/y.tmp": "",
    },
    "escapes_and_comments": {
        ".gitignore": "\\#hash\n#comment\n\\!bang\n\\ lead\nstar\\*\n",
        "#hash": "", "comment": "", "#comment": "", "!bang": "", " lead": "", "star*": "", "starx": "",
    },
    "trailing_spaces": {
        ".gitignore": "a.txt   \nb.txt\\ \nc\\ \\ \n",
        "a.txt": "", "b.txt ": "", "b.txt": "", "c  ": "", "c": "",
    },
    "crlf_and_bom": {
        ".gitignore": b"\xef\xbb\xbf*.one\r\nfile.two\r\n",
        "x.one": "", "file.two": "", "keep.three": "",
    },
    "brackets": {
        ".gitignore": "[ab].txt\n[!c]x.md\n[a-c]z\n[]]r\n[\\]]s\n[[:digit:]]n\n[[:alpha:][:digit:]]m\n[x\n[[:bogus:]]q\n[[:x]y\n",
        "a.txt": "", "c.txt": "", "bx.md": "", "cx.md": "", "bz": "", "dz": "", "]r": "", "]s": "", "\\s": "",
        "5n": "", "an": "", "am": "", "7m": "", "[x": "", "bq": "", "[y": "", ":y": "", "xy": "",
    },
    "question_and_star_slash": {
        ".gitignore": "?.c\ndir/*.h\n*/mid/*\n",
        "a.c": "", "ab.c": "", "dir/x.h": "", "dir/s/x.h": "", "a/mid/f": "", "a/b/mid/f": "",
    },
    "dangling_backslash_never_matches": {
        ".gitignore": "foo\\\nbar\n",
        "foo": "", "foo\\": "", "bar": "",
    },
    "middle_slash_anchors": {
        ".gitignore": "doc/frotz/\n",
        "doc/frotz/x": "", "a/doc/frotz/y": "",
    },
    "negated_dir_pattern": {
        ".gitignore": "*\n!*/\n!*.py\n",
        "a.py": "", "b.txt": "", "pkg/c.py": "", "pkg/d.txt": "",
    },
    "symlinks_are_files": {
        ".gitignore": "linkdir/\n",
        "real/f": "", "linkdir": ("symlink", "real"), "dangling": ("symlink", "nowhere"),
    },
    "gitignore_symlink_not_read": {
        "real.ignore": "*.txt\n",
        ".gitignore": ("symlink", "real.ignore"),
        "a.txt": "",
    },
    "many_stars": {
        ".gitignore": "*a*b*\n?*x*?\n[ab]*[!x]*c\nd*/**/e*f\n**/g*h*/i\nj/**\\/k*\nm**n*o\n*/*/p*q\n*.*.*\n",
        "ab": "", "xaxbx": "", "ba": "", "axa": "", "zxz": "", "xz": "", "a1c": "", "bxc": "", "b1x2c": "",
        "d1/e9f": "", "d1/z/e9f": "", "d/ef": "", "d/e": "", "g1h2/i": "", "y/gh/i": "", "y/gh/k": "",
        "j/k1": "", "j/y/k1": "", "mxno": "", "m/no": "", "mo": "", "1/2/pxq": "", "1/pq": "", "1/2/3/pq": "",
        "v.1.tar": "", "v1.tar": "",
    },
    "unicode_and_spaces": {
        ".gitignore": "é*\n*sp ace*\n?ü\n",
        "éa": "", "ea": "", "my sp ace.txt": "", "xü": "", "xxü": "",
    },
}


@pytest.mark.parametrize("repo", [False, True], ids=["plain", "repo"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_handwritten_case_matches_git(tmp_path, name, repo):
    root = tmp_path / "proj"
    root.mkdir()
    write_tree(root, CASES[name])
    if repo:
        git("init", "-q", cwd=root)
    check(root, tmp_path, repo=repo)


def test_info_exclude_and_excludes_file_precedence(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    git("init", "-q", cwd=root)
    write_tree(root, {"a.x": "", "b.x": "", "c.y": "", "d.z": "", "sub/e.z": "", ".gitignore": "!d.z\n"})
    (root / ".git" / "info" / "exclude").write_text("*.x\n!b.x\n*.z\n")
    global_ignore = tmp_path / "global-ignore"
    global_ignore.write_text("*.y\n!*.x\n")
    git("config", "core.excludesFile", str(global_ignore), cwd=root)
    check(root, tmp_path, repo=True)


def test_xdg_default_excludes_file(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    write_tree(root, {"a.bak": "", "b.txt": ""})
    xdg = os.environ["XDG_CONFIG_HOME"]
    os.makedirs(os.path.join(xdg, "git"), exist_ok=True)
    with open(os.path.join(xdg, "git", "ignore"), "w") as fh:
        fh.write("*.bak\n")
    check(root, tmp_path, repo=False)
    assert ours(root) == {"b.txt"}


def test_ignorecase(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    git("init", "-q", cwd=root)
    git("config", "core.ignorecase", "true", cwd=root)
    write_tree(root, {".gitignore": "*.LOG\nBuild/\n[A]q\n[a-c]r\n", "x.log": "", "y.Log": "", "build/z": "", "aq": "", "Aq": "", "Br": "", "dr": ""})
    check(root, tmp_path, repo=True)


def test_tracked_files_kept_despite_ignore_rules(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    git("init", "-q", cwd=root)
    write_tree(root, {"vendor/lib.py": "", "vendor/other.py": "", "a.log": "", "b.log": ""})
    git("add", "vendor/lib.py", "a.log", cwd=root)
    (root / ".gitignore").write_text("vendor/\n*.log\n")
    check(root, tmp_path, repo=True)
    assert {"vendor/lib.py", "a.log"} <= ours(root)


def test_root_below_work_tree_top_uses_parent_rules(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    git("init", "-q", cwd=top)
    write_tree(top, {".gitignore": "*.secret\napp/cache/\n", "app/a.py": "", "app/k.secret": "", "app/cache/c": "", "app/.gitignore": "!k.secret\n"})
    root = top / "app"
    expected = git_view(root, repo=True, tmp_path=tmp_path)
    assert ours(root) == expected == {"a.py", "k.secret", ".gitignore"}


def test_nested_repository_selected_by_its_own_rules(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    git("init", "-q", cwd=root)
    write_tree(root, {".gitignore": "*.log\n", "a.log": "", "main.py": "", "vendor/lib/x.log": "", "vendor/lib/y.tmp": "", "vendor/lib/z.py": ""})
    nested = root / "vendor" / "lib"
    git("init", "-q", cwd=nested)
    (nested / ".gitignore").write_text("*.tmp\n")
    got = ours(root)
    parent = {p for p in git_view(root, repo=True, tmp_path=tmp_path) if not p.endswith("/")}
    inner = {"vendor/lib/" + p for p in git_view(nested, repo=True, tmp_path=tmp_path)}
    assert got == parent | inner
    assert "vendor/lib/x.log" in got and "vendor/lib/y.tmp" not in got
    assert not any(".git/" in p or p.endswith(".git") for p in got)


def test_excluded_directories_are_never_entered(tmp_path):
    root = tmp_path / "proj"
    write_tree(root, {".gitignore": "node_modules/\n", "node_modules/pkg/index.js": "", "app.py": ""})
    os.chmod(root / "node_modules", 0o000)  # entering it would be reported as unreadable
    try:
        sel = select_files(str(root), default_excludes=False)
    finally:
        os.chmod(root / "node_modules", 0o755)
    if os.geteuid() != 0:
        assert sel.skipped == ()
    assert {e.path for e in sel.files} == {".gitignore", "app.py"}


def test_default_excludes_and_flags(tmp_path):
    root = tmp_path / "proj"
    write_tree(root, {
        "app.py": "", "x.pyc": "", ".venv/bin/python": "", "node_modules/a.js": "", "a.tmp": "",
        "htmlcov/index.html": "", ".env": "SECRET=1", ".gitignore": ".env\ninstance/\n",
        "instance/config.py": "", "instance/other.py": "", "src/.venv/x": "",
    })
    sel = select_files(str(root))
    assert {e.path for e in sel.files} == {"app.py", ".gitignore"}
    sel = select_files(str(root), include=[".env", "instance/config.py"], exclude=["*.py"])
    assert {e.path for e in sel.files} == {".gitignore", ".env"}
    sel = select_files(str(root), include=[".env", "instance/config.py"])
    assert {e.path for e in sel.files} == {"app.py", ".gitignore", ".env", "instance/config.py"}
    sel = select_files(str(root), default_excludes=False)
    assert "x.pyc" in {e.path for e in sel.files} and ".venv/bin/python" in {e.path for e in sel.files}


def test_exclude_paths_and_always_excluded(tmp_path):
    root = tmp_path / "proj"
    write_tree(root, {"app.db": "", "app.db-wal": "", "backups/project/x.tar.gz": "", "keep": ""})
    sel = select_files(str(root), exclude_paths=[str(root / "app.db"), str(root / "app.db-wal")], always_exclude_paths=[str(root / "backups")])
    assert {e.path for e in sel.files} == {"keep"}
    sel = select_files(str(root), default_excludes=False, exclude_paths=[str(root / "app.db")], always_exclude_paths=[str(root / "backups")])
    assert {e.path for e in sel.files} == {"keep", "app.db", "app.db-wal"}


def test_fifo_is_skipped_without_hanging(tmp_path):
    root = tmp_path / "proj"
    write_tree(root, {"a": ""})
    os.mkfifo(root / "pipe")
    sel = select_files(str(root))
    assert {e.path for e in sel.files} == {"a"}


# ---------------------------------------------------------------- random trees

NAMES = ["a", "b", "ab", "x.txt", "y.log", "Foo", "foo", "z.py", "d", "e.md", "1", "q?", "sp ace", "n[1]", "#h", "!b", "é"]
PATTERN_ATOMS = [
    "a", "b", "*.txt", "*.log", "foo", "Foo", "d/", "/a", "a/b", "**/x.txt", "d/**", "a/**/b", "*", "?",
    "[ab]", "[!a]*", "[a-f]*.md", "e.*", "*/b", "z.py", "\\#h", "\\!b", "[[:digit:]]", "sp\\ ace", "sp ace",
    "n\\[1]", "q\\?", "**", "ab/", "/d/a", "é", "*.py ", "[^x]*", "x.txt/",
]


def random_tree(rng: random.Random, root, depth=0, prefix="", atoms=PATTERN_ATOMS):
    spec = {}
    for _ in range(rng.randint(1, 5)):
        name = rng.choice(NAMES)
        rel = f"{prefix}{name}"
        if depth < 3 and rng.random() < 0.4:
            spec.update(random_tree(rng, root, depth + 1, rel + "/", atoms))
            if rng.random() < 0.5:
                spec[rel + "/.gitignore"] = random_ignore(rng, atoms)
        elif not any(k.startswith(rel + "/") for k in spec):
            spec[rel] = ""
    return spec


def random_ignore(rng: random.Random, atoms=PATTERN_ATOMS) -> str:
    lines = []
    for _ in range(rng.randint(1, 5)):
        pat = rng.choice(atoms)
        if rng.random() < 0.25:
            pat = "!" + pat
        lines.append(pat)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(200))
def test_random_tree_matches_git(tmp_path, seed):
    random_tree_matches_git(tmp_path, seed, PATTERN_ATOMS)


# Several wildcards per line, where matching must not backtrack between them.
STAR_ATOMS = [
    "*a*", "a*b*", "*b?", "?*?", "[ab]*[!b]*", "*.*", "*.*.*", "**/a*", "a/**/b*", "*/*", "*/*b*/**", "a**b",
    "*a*/", "*/**/*.txt", "a/**\\/*", "**/d/**/*a*", "?*[[:digit:]]*", "*o*o*", "F*o", "*\\?", "d/*/*",
]


@pytest.mark.parametrize("seed", range(40))
def test_random_tree_with_many_wildcards_matches_git(tmp_path, seed):
    random_tree_matches_git(tmp_path, 1000 + seed, STAR_ATOMS)


def random_tree_matches_git(tmp_path, seed, atoms):
    rng = random.Random(seed)
    root = tmp_path / "proj"
    root.mkdir()
    spec = random_tree(rng, root, atoms=atoms)
    spec[".gitignore"] = random_ignore(rng, atoms)
    # Drop files that collide with directories of the same name.
    dirs = {k.rsplit("/", 1)[0] for k in spec if "/" in k}
    dirs |= {d.rsplit("/", i)[0] for d in list(dirs) for i in range(1, d.count("/") + 1)}
    spec = {k: v for k, v in spec.items() if k not in dirs}
    write_tree(root, spec)
    repo = seed % 2 == 1
    if repo:
        git("init", "-q", cwd=root)
        if seed % 4 == 1:
            (root / ".git" / "info" / "exclude").write_text(random_ignore(rng, atoms))
    check(root, tmp_path, repo=repo)
