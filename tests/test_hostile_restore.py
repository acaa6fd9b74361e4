"""Restores of archives written by hand, as an attacker would (tests/forge.py:
every manifest line, hash and seal correct, so they pass verification and
reach the restore's own checks), into targets that already hold things.

Every case checks: the exit code, that nothing outside the target changed,
that no link the restore made resolves outside the target, and that no
``.restore-`` work folder is left behind.
"""

import hashlib
import json
import os
import stat
import subprocess

import pytest

from conftest import write_tree
from forge import dir, file, forge, symlink
from helpers import run_cli

# ------------------------------------------------------------------ helpers


def walk(root):
    """Every path below root (relative), without recursion and without
    following links: trees here are deeper than Python's recursion limit."""
    root = os.fsencode(str(root))
    out = []
    stack = [b""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                sub = os.path.join(rel, e.name) if rel else e.name
                out.append(sub)
                if e.is_dir(follow_symlinks=False):
                    stack.append(sub)
    return out


def state(root):
    """Type, content or link text, and mode of every path below root."""
    root_b = os.fsencode(str(root))
    out = {}
    for rel in walk(root):
        full = os.path.join(root_b, rel)
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            with open(full, "rb") as fh:
                out[rel] = ("file", fh.read())
    return out


@pytest.fixture
def outside(tmp_path):
    """Beside every target: what no restore may change."""
    d = tmp_path / "outside"
    write_tree(d, {"victim": "keep", "etc/passwd": "root:x:0:0\n"})
    return d


def links_escaping(target, before=()):
    """Symlinks in target (not among ``before``, the user's own) whose
    resolution leaves it."""
    real = os.path.realpath(target)
    bad = []
    for rel in walk(target):
        full = os.path.join(os.fsencode(str(target)), rel)
        if os.path.islink(full) and rel not in before:
            dest = os.path.realpath(full)
            if os.path.commonpath([real, os.fsdecode(dest)]) != real:
                bad.append((rel, os.readlink(full), dest))
    return bad


def leftovers(*dirs):
    return [n for d in dirs for n in os.listdir(d) if ".restore-" in n]


def restore(archive, target, *args):
    return run_cli(["backup.restore", "--backup-path", str(archive), "--target-path", str(target), *args])


def check_safe(tmp_path, target, outside, outside_before, user_links=()):
    assert state(outside) == outside_before, "something outside the target changed"
    assert links_escaping(target, user_links) == []
    assert leftovers(tmp_path, target) == []


# --------------------------------------------- links through the target's own links


@pytest.mark.parametrize("compression", ["none", "gz"])
def test_force_links_through_a_symlink_already_in_the_target(tmp_path, outside, compression):
    """The issue's case: the target holds lnk -> ../outside; the archive's
    links are harmless on their own but lead through it."""
    archive = tmp_path / f"a.tar{'.gz' if compression == 'gz' else ''}"
    forge(archive, [file("f", b"new"), symlink("via", "lnk/victim"), dir("pre"), symlink("d", "pre/../lnk"),
                    symlink("deep", "pre/./../lnk/etc/passwd"), symlink("fine", "pre/../f")], compression=compression)
    target = tmp_path / "t"
    target.mkdir()
    os.symlink("../outside", target / "lnk")
    before = state(outside)

    code, out, err = restore(archive, target, "--dry-run")
    assert code == 3
    assert "create  via" not in out and "create  d\n" not in out and "create  fine" in out
    assert "symlink via -> lnk/victim points outside the target" in err

    code, out, err = restore(archive, target, "--force")
    assert code == 3, err
    for name in ("via", "d", "deep"):
        assert f"symlink {name} -> " in err and not os.path.lexists(target / name)
    assert os.readlink(target / "fine") == "pre/../f" and (target / "f").read_bytes() == b"new"
    check_safe(tmp_path, target, outside, before, user_links={b"lnk"})


def test_force_link_through_a_target_link_with_absolute_text(tmp_path, outside):
    archive = tmp_path / "a.tar"
    forge(archive, [symlink("x", "abs/victim"), symlink("y", "rel/x")])
    target = tmp_path / "t"
    target.mkdir()
    os.symlink(str(outside), target / "abs")
    os.mkdir(target / "rel")
    before = state(outside)
    code, _, err = restore(archive, target, "--force")
    assert code == 3 and "symlink x -> abs/victim" in err
    assert not os.path.lexists(target / "x")
    # y -> rel/x: rel/x is nothing in the final tree, so y dangles inside: created.
    assert os.readlink(target / "y") == "rel/x"
    check_safe(tmp_path, target, outside, before, user_links={b"abs"})


def test_include_after_an_earlier_restore_walks_through_links_it_created(tmp_path, outside):
    """First restore: sub/up -> .. (inside, fine).  Second, --include x:
    x -> sub/up/sub/up/../../outside/victim climbs out through the links the
    first restore made, which this archive leaves out."""
    first = tmp_path / "first.tar"
    forge(first, [dir("sub"), symlink("sub/up", "..")])
    second = tmp_path / "second.tar"
    forge(second, [dir("sub"), symlink("sub/up", ".."), symlink("x", "sub/up/sub/up/../../outside/victim"),
                   symlink("y", "sub/up/sub/up/sub")])
    target = tmp_path / "t"
    before = state(outside)
    assert restore(first, target)[0] == 0
    assert os.readlink(target / "sub" / "up") == ".."

    code, out, err = restore(second, target, "--force", "--include", "x", "--include", "y", "--dry-run")
    assert code == 3 and "create  x" not in out and "create  y" in out

    code, _, err = restore(second, target, "--force", "--include", "x", "--include", "y")
    assert code == 3 and "symlink x -> sub/up/sub/up/../../outside/victim points outside" in err
    assert not os.path.lexists(target / "x")
    assert os.readlink(target / "y") == "sub/up/sub/up/sub"
    check_safe(tmp_path, target, outside, before)

    # The same archive in full into an empty target: the links are judged among themselves.
    code, _, err = restore(second, tmp_path / "t2")
    assert code == 3 and not os.path.lexists(tmp_path / "t2" / "x")
    check_safe(tmp_path, tmp_path / "t2", outside, before)


def test_a_link_through_a_refused_link_is_refused_too(tmp_path, outside):
    """chain1 -> chain2 -> out: chain1 is not left dangling where the
    target has something of its own at chain2."""
    archive = tmp_path / "a.tar"
    forge(archive, [symlink("chain1", "chain2/victim"), symlink("chain2", "../outside")])
    target = tmp_path / "t"
    target.mkdir()
    os.mkdir(target / "chain2")  # the user's folder: stays, chain2 is not created over it
    before = state(outside)
    code, _, err = restore(archive, target, "--force")
    assert code == 3 and "symlink chain1" in err and "symlink chain2" in err
    assert not os.path.lexists(target / "chain1") and os.path.isdir(target / "chain2")
    check_safe(tmp_path, target, outside, before)


# ------------------------------------------------------------------------ loops


def test_links_that_loop_are_reported_as_loops(tmp_path, outside):
    archive = tmp_path / "a.tar"
    forge(archive, [symlink("a", "b"), symlink("b", "a"), symlink("self", "self"), symlink("ok", "a.txt"), file("a.txt", b"x"),
                    symlink("viat", "tl")])
    target = tmp_path / "t"
    target.mkdir()
    os.symlink("viat", target / "tl")  # the target's link back to an archive link: a loop between them
    before = state(outside)
    code, out, err = restore(archive, target, "--force", "--json")
    assert code == 3
    assert "points outside" not in err
    skipped = {s["path"]: s["reason"] for s in json.loads(out)["skipped"]}
    assert set(skipped) == {"a", "b", "self", "viat"} and all("symlink loop" in r for r in skipped.values())
    assert json.loads(out)["outside_links"] == []
    assert os.readlink(target / "ok") == "a.txt"
    check_safe(tmp_path, target, outside, before, user_links={b"tl"})


# ------------------------------------------------- --force: all or nothing


CONFLICTS = {
    # name: (what the target has, archive members, exit code, message)
    "archive symlink over a target folder": ({"c/keep": "mine"}, [symlink("c", "z")], 1, "c is a folder in the target where the backup has a symlink"),
    "archive file over a target folder": ({"c/keep": "mine"}, [file("c", b"x")], 1, "c is a folder in the target where the backup has a file"),
    "archive folder over a target file": ({"c": "mine"}, [dir("c"), file("c/x", b"x")], 1, "c is a file in the target where the backup has a folder"),
    "archive folder over a target symlink": ({"c": ("symlink", "../outside")}, [dir("c"), file("c/x", b"x")], 4, "c is a symlink in the target"),
    "archive folder over a target symlink to a folder inside": ({"real/": None, "c": ("symlink", "real")}, [dir("c"), file("c/x", b"x")], 4,
                                                             "would write through it"),
}


@pytest.mark.parametrize("case", sorted(CONFLICTS))
def test_force_refuses_conflicts_before_moving_anything(tmp_path, outside, case):
    have, members, code_wanted, message = CONFLICTS[case]
    archive = tmp_path / "a.tar"
    # Members that come before and after the conflict in every order: none may be moved in.
    forge(archive, [file("a", b"new"), dir("b"), file("b/new", b"n"), *members, file("z", b"new z")])
    target = tmp_path / "t"
    write_tree(target, {"a": "old", "b/old": "o", **have})
    before, before_target = state(outside), state(target)
    code, _, err = restore(archive, target, "--force", "--dry-run")
    assert code == code_wanted and message in err and "nothing restored" in err
    code, _, err = restore(archive, target, "--force")
    assert code == code_wanted and message in err, err
    assert len(err.strip().splitlines()) == 1 and "unexpected" not in err
    assert state(target) == before_target, "a refused --force restore moved something in"
    check_safe(tmp_path, target, outside, before, user_links=set(p for p, v in before_target.items() if v[0] == "symlink"))


def test_force_counts_every_conflict(tmp_path):
    archive = tmp_path / "a.tar"
    forge(archive, [file("c1", b"x"), file("c2", b"x"), file("c3", b"x")])
    target = tmp_path / "t"
    write_tree(target, {"c1/a": "", "c2/a": "", "c3/a": ""})
    code, _, err = restore(archive, target, "--force")
    assert code == 1 and "(and 2 more conflicts)" in err


def test_overlay_never_writes_through_a_symlink_swapped_in_after_the_checks(tmp_path, outside):
    """The moves go through directory descriptors opened O_NOFOLLOW: a
    folder replaced by a symlink between the plan and the move is not
    followed (the plan is bypassed here to stage the race)."""
    from backup_lib.errors import BackupError
    from backup_lib.restore import _overlay

    src = tmp_path / "src"
    write_tree(src, {"d/evil": "x", "d/sub/evil2": "y", "top": "t"})
    target = tmp_path / "t"
    write_tree(target, {"top": "old"})
    os.symlink(str(outside), target / "d")  # was a real folder when the plan looked
    before = state(outside)
    with pytest.raises(BackupError, match="changed in the target"):
        _overlay(str(src), str(target), set())
    assert state(outside) == before
    target2 = tmp_path / "t2"
    write_tree(target2, {"d/": None})
    os.symlink(str(outside), target2 / "d" / "sub")
    with pytest.raises(BackupError, match="changed in the target"):
        _overlay(str(src), str(target2), set())
    assert state(outside) == before


def test_force_replaces_files_and_links_and_merges_folders(tmp_path, outside):
    archive = tmp_path / "a.tar"
    forge(archive, [dir("d", mode=0o750), file("d/f", b"new"), file("d/g", b"g"), dir("d/new"), file("d/new/x", b"x"),
                    symlink("l", "d/f"), file("ro", b"r", mode=0o444)])
    target = tmp_path / "t"
    write_tree(target, {"d/f": "old", "d/mine": "keep", "ro": "old", "other/": None})
    os.symlink("elsewhere", target / "l")
    code, _, err = restore(archive, target, "--force")
    assert code == 0, err
    assert (target / "d" / "f").read_bytes() == b"new" and (target / "d" / "mine").read_text() == "keep"
    assert (target / "d" / "new" / "x").read_bytes() == b"x" and os.readlink(target / "l") == "d/f"
    assert stat.S_IMODE(os.stat(target / "d").st_mode) == 0o750
    assert os.stat(target / "d").st_mtime_ns == 1_700_000_000 * 10**9
    assert (target / "ro").read_bytes() == b"r" and stat.S_IMODE(os.stat(target / "ro").st_mode) == 0o444
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------- deep trees

DEPTH = 1500  # one-character names: the deepest path stays within PATH_MAX


def deep_members(depth=DEPTH, record=None):
    parts = ["a"] * depth
    members = [dir("/".join(parts[: i + 1])) for i in range(depth)]
    members.append(file("/".join(parts) + "/f", b"bottom", record=record))
    return members


@pytest.fixture
def deep_tmp(tmp_path):
    """tmp_path, emptied afterwards: pytest's own clean-up of old temporary
    folders (shutil.rmtree) would hit the recursion limit on these trees."""
    yield tmp_path
    subprocess.run(["rm", "-rf", "--", *[str(tmp_path / n) for n in os.listdir(tmp_path)]], check=False)


def test_deep_tree_restores_and_force_overlays_without_recursion(deep_tmp, outside):
    tmp_path = deep_tmp
    archive = tmp_path / "deep.tar.gz"
    forge(archive, deep_members(), compression="gz")
    target = tmp_path / "t"
    before = state(outside)
    code, _, err = restore(archive, target)
    assert code == 0, err
    code, _, err = restore(archive, target, "--force")
    assert code == 0, err
    bottom = os.path.join(str(target), *["a"] * DEPTH, "f")
    with open(bottom, "rb") as fh:
        assert fh.read() == b"bottom"
    check_safe(tmp_path, target, outside, before)


def test_deep_tree_that_fails_verification_leaves_nothing(deep_tmp, outside):
    tmp_path = deep_tmp
    bad = {"path": "/".join(["a"] * DEPTH) + "/f", "type": "file", "mode": 0o644, "mtime_ns": 0, "size": 6, "sha256": "0" * 64}
    archive = tmp_path / "deep-bad.tar"
    members = deep_members()
    records = [{"path": m.name.rstrip("/"), "type": "dir", "mode": 0o755, "mtime_ns": 0} for m in members[:-1]] + [bad]
    forge(archive, members, records=records)
    target = tmp_path / "t"
    before = state(outside)
    code, _, err = restore(archive, target)
    assert code == 4 and "does not match its SHA-256" in err and "unexpected" not in err
    assert not target.exists()
    # and over an existing target, with --force
    target.mkdir()
    (target / "keep").write_text("k")
    code, _, err = restore(archive, target, "--force")
    assert code == 4 and "unexpected" not in err
    assert os.listdir(target) == ["keep"]
    check_safe(tmp_path, target, outside, before)


# ----------------------------------------------------------------- times


@pytest.mark.parametrize("mtime_ns", [10**30, -(10**30), 2**63, -(2**63) - 1])
def test_mtime_out_of_range_is_clamped(tmp_path, outside, mtime_ns):
    archive = tmp_path / "t.tar"
    rec_f = {"path": "f", "type": "file", "mode": 0o644, "mtime_ns": mtime_ns, "size": 1, "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}
    rec_d = {"path": "d", "type": "dir", "mode": 0o755, "mtime_ns": mtime_ns}
    rec_l = {"path": "l", "type": "symlink", "mode": 0o777, "mtime_ns": mtime_ns, "target": "f"}
    forge(archive, [dir("d"), file("f", b"x"), symlink("l", "f")], records=[rec_d, rec_f, rec_l])
    target = tmp_path / "t"
    before = state(outside)
    code, _, err = restore(archive, target)
    assert code == 0, err
    got = os.stat(target / "f").st_mtime_ns
    assert (got > 0) == (mtime_ns > 0)  # clamped towards its own end of the range
    assert (target / "f").read_bytes() == b"x"
    check_safe(tmp_path, target, outside, before)


# ------------------------------------------------------- names that forge output


def test_display_path_quotes_like_git():
    from backup_lib.report import display_path

    assert display_path("plain/name.txt") == "plain/name.txt"
    assert display_path("unicodé ñame") == "unicodé ñame"
    assert display_path("new\nline") == '"new\\nline"'
    assert display_path("\x1b[2J") == '"\\033[2J"'
    assert display_path("bad\udcffname") == '"bad\\377name"'
    assert display_path(b"bad\xffname") == '"bad\\377name"'
    assert display_path('q"uote') == '"q\\"uote"'
    assert display_path("back\\slash") == '"back\\\\slash"'
    assert display_path("tab\there") == '"tab\\there"'
    assert display_path("rtl\u202eexe.txt") == '"rtl\\342\\200\\256exe.txt"'
    assert display_path("\x9b31m") == '"\\302\\23331m"'


EVIL = ["x\ncreate  /etc/passwd", "\x1b[2J\x1b[H", "bidi\u202efdp.exe", "bad\udcffname"]


def test_dry_run_and_warnings_quote_names(tmp_path):
    archive = tmp_path / "evil.tar"
    forge(archive, [file(n, b"x") for n in EVIL] + [symlink("out\x1b]0;pwned\x07", "../../etc/passwd")])
    target = tmp_path / "t"
    code, out, err = restore(archive, target, "--dry-run")
    assert code == 3
    lines = out.splitlines()
    assert len(lines) == len(EVIL) and all(line.startswith("create  \"") for line in lines)
    assert '"x\\ncreate  /etc/passwd"' in out and '"\\033[2J\\033[H"' in out and '"bad\\377name"' in out
    assert "\x1b" not in out + err and "\x07" not in err and "\u202e" not in out
    assert 'symlink "out\\033]0;pwned\\a" -> ../../etc/passwd points outside' in err
    code, out, err = restore(archive, target)
    assert code == 3 and "\x1b" not in out + err and len(err.strip().splitlines()) == 2
    # JSON keeps the names exact
    code, out, _ = restore(archive, tmp_path / "t2", "--dry-run", "--json")
    assert set(json.loads(out)["restored"]) == set(EVIL)


def test_create_dry_run_list_and_cleanup_quote_names(tmp_path):
    root = tmp_path / "p\x1b[2Jroj"  # the project's own name ends up in every archive name
    write_tree(root, {"ok.txt": "ok"})
    names = ["x\nok.txt", *EVIL[1:]]  # file names: no "/"
    for n in names:
        with open(os.path.join(os.fsencode(str(root)), os.fsencode(n)), "wb") as fh:
            fh.write(b"x")
    code, out, err = run_cli(["backup.create", "--project-root", str(root), "--dry-run"])
    assert code == 0 and len(out.splitlines()) == len(names) + 1
    assert "\x1b" not in out and '"x\\nok.txt"' in out and "\nok.txt\n" in "\n" + out
    bdir = tmp_path / "bk"
    for _ in range(2):
        code, out, err = run_cli(["backup.create", "--project-root", str(root), "--backup-dir", str(bdir)])
        assert code == 0 and "\x1b" not in out + err
    code, out, err = run_cli(["backup.list", "--backup-dir", str(bdir)])
    assert code == 0 and "\x1b" not in out and '"p\\033[2Jroj_project_' in out
    code, out, err = run_cli(["backup.cleanup", "--backup-dir", str(bdir), "--dry-run", "--project-root", str(root), "--max-backups", "1"])
    assert code == 0 and "\x1b" not in out + err and 'would delete  "p\\033[2Jroj_project_' in out


# ------------------------------------------------------------------ incremental chains


@pytest.mark.parametrize("record", [
    {"path": "../../escaped", "type": "dir", "mode": 0o755, "mtime_ns": 0},
    {"path": "{tmp}/escaped-abs", "type": "dir", "mode": 0o755, "mtime_ns": 0},
    {"path": "sub/../../escaped", "type": "dir", "mode": 0o755, "mtime_ns": 0},
    {"path": "../pwned", "type": "hardlink", "mode": 0o644, "mtime_ns": 0, "target": "a"},
    {"path": "b", "type": "hardlink", "mode": 0o644, "mtime_ns": 0, "target": "../outside/secret"},
    {"path": "nul\0name", "type": "dir", "mode": 0o755, "mtime_ns": 0},
], ids=["dotdot-dir", "absolute-dir", "inner-dotdot-dir", "dotdot-hardlink", "hardlink-target-outside", "nul"])
def test_an_incremental_manifest_naming_paths_outside_the_tree_is_refused(tmp_path, outside, record):
    """An incremental's manifest lists folders and links it does not store,
    which a chain restore makes itself: each such name obeys a member's
    rules, or the restore would make it outside the target."""
    record = dict(record, path=record["path"].replace("{tmp}", str(tmp_path)))
    bk = tmp_path / "bk"
    bk.mkdir()
    parent = forge(bk / "app_project_20261129_010000.tar", [file("a", b"A")])
    digest = hashlib.sha256(b"A").hexdigest()
    if record["type"] == "hardlink":
        record = dict(record, size=1, sha256=digest)
    records = sorted([record, {"path": "a", "type": "file", "mode": 0o644, "mtime_ns": 0, "size": 1, "sha256": digest}],
                     key=lambda r: r["path"].encode().replace(b"/", b"\0"))
    newest = bk / "app_project_20261129_020000_incr.tar"
    forge(newest, [], records=records, extra_metadata={
        "backup_type": "project_incremental",
        "parent": {"name": parent.path.rsplit("/", 1)[1], "metadata_sha256": parent.metadata["metadata_sha256"]}})
    target = tmp_path / "deep" / "er" / "restored"  # "../.." from its work folder: still inside tmp_path
    target.parent.mkdir(parents=True)
    before = state(tmp_path)
    code, out, err = run_cli(["backup.restore", "--backup-path", str(newest), "--target-path", str(target)])
    assert code == 4, (code, out, err)
    assert "not a plain relative path" in err and "Traceback" not in err
    assert state(tmp_path) == before  # nothing made anywhere, inside or outside
    code, out, err = run_cli(["backup.verify", "--backup-path", str(newest)])
    assert code == 4 and "not a plain relative path" in out, (code, out, err)  # the reason on its FAILED line


def _rec(path, data=None, *, target=None):
    if target is not None:
        return {"path": path, "type": "symlink", "mode": 0o777, "mtime_ns": 0, "target": target}
    return {"path": path, "type": "file", "mode": 0o644, "mtime_ns": 0, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _chain(bk, parents, newest_records):
    """Full backups ``parents`` (lists of members) chained oldest first, and
    an incremental storing nothing whose manifest is ``newest_records``."""
    prev = None
    for i, members in enumerate(parents):
        extra = {} if prev is None else {"backup_type": "project_incremental", "parent": {
            "name": os.path.basename(prev.path), "metadata_sha256": prev.metadata["metadata_sha256"]}}
        name = f"app_project_20261129_0{i}0000{'_incr' if prev else ''}.tar"
        prev = forge(bk / name, members, extra_metadata=extra)
    records = sorted(newest_records, key=lambda r: r["path"].encode().replace(b"/", b"\0"))
    return forge(bk / "app_project_20261129_090000_incr.tar", [], records=records, extra_metadata={
        "backup_type": "project_incremental",
        "parent": {"name": os.path.basename(prev.path), "metadata_sha256": prev.metadata["metadata_sha256"]}})


def test_a_chain_link_through_folders_its_manifest_does_not_list_is_judged_as_the_kernel_sees_it(tmp_path, outside):
    """The newest manifest lists p0/../p19/f but none of the folders p*: a
    link through them (s -> back up to the target, then 21 '..' and etc)
    must be judged through real folders, not as text: refused (exit 3)."""
    bk = tmp_path / "bk"
    bk.mkdir()
    deep = "/".join(f"p{i}" for i in range(20))
    newest = _chain(bk, [[file(deep + "/f", b"F")]], [
        _rec(deep + "/f", b"F"), _rec(deep + "/s", target="/".join([".."] * 20)),
        _rec("l", target=deep + "/s/" + "../" * 21 + "etc")])
    target = tmp_path / "target"
    code, out, err = run_cli(["backup.restore", "--backup-path", str(newest.path), "--target-path", str(target)])
    assert code == 3, (code, out, err)
    assert not os.path.lexists(target / "l") and (target / deep / "f").read_bytes() == b"F"
    assert not links_escaping(target)


@pytest.mark.parametrize("case", ["file-and-folder", "symlink-over-folder"])
def test_a_chain_whose_manifest_puts_a_path_inside_a_file_or_symlink_is_refused_before_anything_is_written(tmp_path, outside, case):
    """Two parents store x and x/y (or the newest lists a symlink a above
    a file a/x): no tree has both, so verify fails and restore writes nothing."""
    bk = tmp_path / "bk"
    bk.mkdir()
    if case == "file-and-folder":
        newest = _chain(bk, [[file("x", b"X")], [file("x/y", b"Y")]], [_rec("x", b"X"), _rec("x/y", b"Y")])
    else:
        newest = _chain(bk, [[file("a/x", b"X")]], [_rec("a", target=str(outside)), _rec("a/x", b"X")])
    target = tmp_path / "target"
    code, out, err = run_cli(["backup.verify", "--backup-path", str(newest.path)])
    assert code == 4 and "no tree has both" in out, (code, out, err)
    before = state(tmp_path)
    code, out, err = run_cli(["backup.restore", "--backup-path", str(newest.path), "--target-path", str(target)])
    assert code == 4 and "no tree has both" in err, (code, out, err)
    assert state(tmp_path) == before


def test_a_forced_chain_restore_over_a_symlinked_folder_it_does_not_list_restores_nothing(tmp_path, outside):
    """p/f's folder p is not in the newest manifest, and p is a symlink in
    the target: the plan sees p as a folder to write through, so the whole
    restore is refused (exit 4) before any file is replaced."""
    bk = tmp_path / "bk"
    bk.mkdir()
    newest = _chain(bk, [[file("p/f", b"F"), *[file(f"z{i}", b"new") for i in range(5)]]],
                    [_rec("p/f", b"F"), *[_rec(f"z{i}", b"new") for i in range(5)]])
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "p")
    for i in range(5):
        (target / f"z{i}").write_text("old")
    before = state(tmp_path)
    code, out, err = run_cli(["backup.restore", "--force", "--backup-path", str(newest.path), "--target-path", str(target)])
    assert code == 4 and "nothing restored" in err, (code, out, err)
    assert state(tmp_path) == before
    assert not [p for p in os.listdir(target) if ".restore-" in p]


def test_a_chain_symlink_in_a_folder_nothing_lists_is_restored(tmp_path):
    bk = tmp_path / "bk"
    bk.mkdir()
    newest = _chain(bk, [[file("top", b"T")]], [_rec("top", b"T"), _rec("d/e/link", target="../../top")])
    target = tmp_path / "target"
    code, out, err = run_cli(["backup.restore", "--backup-path", str(newest.path), "--target-path", str(target)])
    assert code == 0, (code, out, err)
    assert os.readlink(target / "d" / "e" / "link") == "../../top" and (target / "d" / "e" / "link").read_bytes() == b"T"


def test_an_incremental_under_a_full_backups_name_is_verified_with_its_chain(tmp_path):
    """Its metadata says incremental, its name does not, no index is beside
    it, and its parent is gone: verify must read the chain (and fail), not
    check it alone as a whole tree."""
    bk = tmp_path / "bk"
    bk.mkdir()
    newest = _chain(bk, [[file("a", b"A")]], [_rec("a", b"A")])
    plain_name = bk / "app_project_20261129_100000.tar"
    os.rename(newest.path, plain_name)
    code, out, err = run_cli(["backup.verify", "--backup-path", str(plain_name)])
    assert code == 0, (code, out, err)  # its chain is whole: fine
    os.unlink(bk / "app_project_20261129_000000.tar")
    code, out, err = run_cli(["backup.verify", "--backup-path", str(plain_name)])
    assert code == 4 and "app_project_20261129_000000.tar" in out, (code, out, err)


@pytest.mark.parametrize("link", [
    {"target": "s"},  # a symlink
    {"target": "d"},  # a folder
    {"target": "nothing"},
    {"target": "f", "size": 5, "sha256": hashlib.sha256(b"other").hexdigest()},  # not the bytes of f
], ids=["to-symlink", "to-folder", "to-nothing", "other-bytes"])
def test_an_inherited_hard_link_record_must_match_the_file_it_links_to(tmp_path, link):
    """What an incremental lists as a hard link and does not store is made
    by the restore from its target: the target must be a file listed before
    it, with the same size and SHA-256, or verify and restore fail."""
    bk = tmp_path / "bk"
    bk.mkdir()
    rec = {"path": "h", "type": "hardlink", "mode": 0o644, "mtime_ns": 0, "size": 1, "sha256": hashlib.sha256(b"F").hexdigest(), **link}
    newest = _chain(bk, [[file("f", b"F"), dir("d")]], [_rec("f", b"F"), {"path": "d", "type": "dir", "mode": 0o755, "mtime_ns": 0},
                                                         _rec("s", target="f"), rec])
    code, out, err = run_cli(["backup.verify", "--backup-path", str(newest.path)])
    assert code == 4 and "hard link" in out, (code, out, err)
    code, out, err = run_cli(["backup.restore", "--backup-path", str(newest.path), "--target-path", str(tmp_path / "t")])
    assert code == 4 and "hard link" in err and not (tmp_path / "t").exists(), (code, out, err)


@pytest.mark.parametrize("field", [{"mode": "rw-r--r--"}, {"mode": -1}, {"mode": 0o170644}, {"mtime_ns": "0"}, {"size": [1]}],
                         ids=["mode-text", "mode-negative", "mode-type-bits", "mtime-text", "size-list"])
def test_manifest_values_that_are_not_numbers_in_range_fail_verification_and_never_crash_diff_or_ls(tmp_path, field):
    a = forge(tmp_path / "app_project_20261129_010000.tar", [file("f", b"F")])
    rec = {**_rec("f", b"F"), **field}
    meta = {k: v for k, v in a.metadata.items() if k not in ("manifest_sha256", "structure_sha256", "metadata_sha256")}
    b = forge(tmp_path / "app_project_20261129_020000.tar", [file("f", b"F")], records=[rec], metadata=meta)
    code, out, err = run_cli(["backup.verify", "--backup-path", str(b.path)])
    assert code == 4 and "not a number in range" in out, (code, out, err)
    for args in (["backup.diff", "--backup-path", str(b.path), "--against", str(a.path)],
                 ["backup.diff", "--backup-path", str(a.path), "--against", str(b.path), "--stat"],
                 ["backup.ls", "--backup-path", str(b.path)], ["backup.ls", "--backup-path", str(b.path), "--json"]):
        code, out, err = run_cli(args)
        assert code in (0, 4) and "unexpected" not in err and "Traceback" not in err, (args, code, out, err)
