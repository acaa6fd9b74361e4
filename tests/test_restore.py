"""Restore: round trips on odd trees, and refusals of hostile archives."""

import hashlib
import io
import json
import os
import stat
import tarfile

import pytest

from backup_lib.errors import IntegrityError, TargetNotEmptyError, UnsafeArchiveError
from backup_lib.project import create_backup, restore_backup
from conftest import write_tree
from helpers import run_cli


def snapshot(root) -> dict:
    """Everything a round trip must keep: type, mode, mtime, content, link target, hard links."""
    root = os.fsencode(str(root))
    out, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if rel.split(b"/")[0] == b"backups":
                continue
            rec = {"mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
            if stat.S_ISLNK(st.st_mode):
                rec.update(type="symlink", target=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                rec.update(type="dir")
            else:
                h = hashlib.sha256()
                with open(full, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                rec.update(type="file", size=st.st_size, sha=h.hexdigest())
                inodes.setdefault(st.st_ino, []).append(rel)
            out[rel] = rec
    groups = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return {"entries": out, "hardlinks": groups}


@pytest.fixture
def odd_tree(tmp_path):
    root = tmp_path / "odd"
    write_tree(root, {
        "plain.txt": "plain\n",
        "empty_file": "",
        "with space.txt": "s",
        "-starts-with-dash": "d",
        "new\nline": "n",
        "unicodé/ñame.txt": "u",
        "empty_dir/": None,
        "nested/empty/": None,
        ("x" * 255): "long component",
        "/".join(["d" * 200] * 6) + "/deep.txt": "deep",
    })
    bad = os.path.join(os.fsencode(str(root)), b"bad\xff\xfename")
    with open(bad, "wb") as fh:
        fh.write(b"not utf-8 name")
    os.symlink("plain.txt", root / "link")
    os.symlink("nowhere/at/all", root / "dangling")
    os.symlink("nested", root / "dirlink")
    os.link(root / "plain.txt", root / "hardlink.txt")
    os.chmod(root / "plain.txt", 0o664)
    (root / "script.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "script.sh", 0o755)
    (root / "readonly").write_text("r")
    os.chmod(root / "readonly", 0o444)
    os.chmod(root / "nested" / "empty", 0o750)
    for i, p in enumerate(sorted(root.rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(p, ns=(1_600_000_000_123_456_789 + i, 1_600_000_000_123_456_789 + i), follow_symlinks=False)
    return root


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_odd_tree_round_trip(odd_tree, tmp_path, compression):
    before = snapshot(odd_tree)
    res = create_backup(str(odd_tree), compression=compression, backup_dir=str(tmp_path / "bk"))
    assert res.metadata["skipped_files"] == []
    out = tmp_path / "restored"
    restore_backup(res.backup_path, str(out))
    after = snapshot(out)
    assert after["entries"].keys() == before["entries"].keys()
    for key, rec in before["entries"].items():
        assert after["entries"][key] == rec, key
    assert after["hardlinks"] == before["hardlinks"] == [[b"hardlink.txt", b"plain.txt"]]


def test_huge_sparse_file_round_trip(tmp_path):
    root = tmp_path / "sparse"
    root.mkdir()
    big = root / "big.img"
    with open(big, "wb") as fh:
        fh.truncate(8 * 1024**3 + 4096)
        fh.seek(8 * 1024**3)
        fh.write(b"tail" * 1024)
    res = create_backup(str(root), compression="gz", backup_dir=str(tmp_path / "bk"))
    assert os.path.getsize(res.backup_path) < 64 * 1024**2
    out = tmp_path / "out"
    restore_backup(res.backup_path, str(out))
    restored = out / "big.img"
    assert restored.stat().st_size == big.stat().st_size
    assert restored.stat().st_blocks * 512 < 64 * 1024**2  # written sparse
    with open(restored, "rb") as fh:
        fh.seek(8 * 1024**3)
        assert fh.read() == b"tail" * 1024


def test_setuid_setgid_sticky_dropped(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"suid": "x", "shared/": None})
    os.chmod(root / "suid", 0o4755)
    os.chmod(root / "shared", 0o3777)
    res = create_backup(str(root), backup_dir=str(tmp_path / "bk"))
    out = tmp_path / "out"
    restore_backup(res.backup_path, str(out))
    assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "shared").st_mode) == 0o777


def test_refuses_non_empty_target_and_empty_target_is_fine(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"a": "1"})
    path = create_backup(str(root), backup_dir=str(tmp_path / "bk")).backup_path
    target = tmp_path / "t"
    target.mkdir()
    restore_backup(path, str(target))  # empty: fine
    with pytest.raises(TargetNotEmptyError):
        restore_backup(path, str(target))
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]


def test_dry_run_lists_and_writes_nothing(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"a": "1", "b/c": "2"})
    path = create_backup(str(root), backup_dir=str(tmp_path / "bk")).backup_path
    target = tmp_path / "t"
    write_tree(target, {"a": "old"})
    res = restore_backup(path, str(target), dry_run=True)
    assert set(res.restored) == {"a", "b/c"} and res.existing == ("a",)
    assert sorted(os.listdir(target)) == ["a"] and (target / "a").read_text() == "old"
    code, out, _ = run_cli(["backup.restore", "--backup-path", path, "--target-path", str(target), "--dry-run", "--json"])
    assert code == 0 and json.loads(out)["existing"] == ["a"]


def test_partial_restore_with_include(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"app/a.py": "a", "app/b.txt": "b", "docs/x.md": "x", "top.py": "t"})
    for i, name in enumerate(["app/a.py", "app/b.txt", "top.py", "app"]):
        os.utime(root / name, ns=(1_500_000_000_000_000_007 + i, 1_500_000_000_000_000_007 + i))
    path = create_backup(str(root), backup_dir=str(tmp_path / "bk")).backup_path
    out = tmp_path / "out"
    res = restore_backup(path, str(out), include=["*.py"])
    assert set(res.restored) == {"app/a.py", "top.py"}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["app/a.py", "top.py"]
    for name in ["app/a.py", "top.py", "app"]:  # exact times, also on a partial restore
        assert (out / name).stat().st_mtime_ns == (root / name).stat().st_mtime_ns, name
    out2 = tmp_path / "out2"
    restore_backup(path, str(out2), include=["docs/"])
    assert [p.relative_to(out2).as_posix() for p in out2.rglob("*") if p.is_file()] == ["docs/x.md"]


def test_verification_failure_restores_nothing_even_with_force(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"a": "1" * 5000, "b": "2"})
    path = create_backup(str(root), compression="none", backup_dir=str(tmp_path / "bk")).backup_path
    data = bytearray(open(path, "rb").read())
    data[600] ^= 0x20  # inside the content of "a"
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    target = tmp_path / "t"
    write_tree(target, {"keep": "mine"})
    with pytest.raises(IntegrityError, match="'a'"):
        restore_backup(str(bad), str(target), force=True)
    assert sorted(os.listdir(target)) == ["keep"]
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]
    code, _, err = run_cli(["backup.restore", "--backup-path", str(bad), "--target-path", str(target), "--force"])
    assert code == 4 and "nothing restored" in err


# ------------------------------------------------------------- hostile archives


def _ti(name, type_=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.size = len(data) if type_ == tarfile.REGTYPE else 0
    ti.mode = kw.pop("mode", 0o644)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, (io.BytesIO(data) if type_ == tarfile.REGTYPE else None)


def hostile(path, members):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, data)
    return str(path)


@pytest.fixture
def sentinel(tmp_path):
    """A directory outside every target; no restore may change it."""
    d = tmp_path / "outside"
    write_tree(d, {"keep.txt": "keep"})
    return d


def state(d):
    return sorted((str(p.relative_to(d)), p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in d.rglob("*"))


HOSTILE = {
    "absolute": lambda s: [_ti(f"{s}/evil", data=b"x")],
    "dotdot": lambda s: [_ti("../outside/evil", data=b"x")],
    "dotdot_inside": lambda s: [_ti("a/../../outside/evil", data=b"x")],
    "hardlink_absolute": lambda s: [_ti("h", tarfile.LNKTYPE, linkname=f"{s}/keep.txt")],
    "hardlink_outside": lambda s: [_ti("h", tarfile.LNKTYPE, linkname="../outside/keep.txt")],
    "hardlink_not_in_archive": lambda s: [_ti("h", tarfile.LNKTYPE, linkname="nothere")],
    "hardlink_to_symlink": lambda s: [_ti("l", tarfile.SYMTYPE, linkname=f"{s}/keep.txt"), _ti("h", tarfile.LNKTYPE, linkname="l")],
    "char_device": lambda s: [_ti("dev", tarfile.CHRTYPE, devmajor=1, devminor=3)],
    "block_device": lambda s: [_ti("blk", tarfile.BLKTYPE, devmajor=8, devminor=0)],
    "fifo": lambda s: [_ti("fifo", tarfile.FIFOTYPE)],
    "write_through_symlink": lambda s: [_ti("l", tarfile.SYMTYPE, linkname=str(s)), _ti("l/evil", data=b"x")],
    "write_through_inside_symlink": lambda s: [_ti("d", tarfile.DIRTYPE), _ti("l", tarfile.SYMTYPE, linkname="d"), _ti("l/x", data=b"x")],
    "write_through_file": lambda s: [_ti("f", data=b"x"), _ti("f/g", data=b"y")],
    "duplicate": lambda s: [_ti("a", data=b"1"), _ti("a", data=b"2")],
    "symlink_then_file_same_name": lambda s: [_ti("a", tarfile.SYMTYPE, linkname=f"{s}/keep.txt"), _ti("a", data=b"x")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(tmp_path, sentinel, case):
    path = hostile(tmp_path / f"{case}.tar", HOSTILE[case](sentinel))
    before = state(sentinel)
    target = tmp_path / "target"
    with pytest.raises((UnsafeArchiveError, IntegrityError)):
        restore_backup(path, str(target))
    assert state(sentinel) == before
    assert not target.exists()
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]
    code, _, err = run_cli(["backup.restore", "--backup-path", path, "--target-path", str(target)])
    assert code == 4 and "Traceback" not in err


def test_existing_symlink_in_target_is_never_written_through(tmp_path, sentinel):
    root = tmp_path / "p"
    write_tree(root, {"sub/file.txt": "payload", "top": "t"})
    path = create_backup(str(root), backup_dir=str(tmp_path / "bk")).backup_path
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(str(sentinel), target / "sub")
    before = state(sentinel)
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        restore_backup(path, str(target), force=True)
    assert state(sentinel) == before
    assert sorted(os.listdir(target)) == ["sub"]


def test_outside_symlinks_skipped_by_default(tmp_path, sentinel):
    root = tmp_path / "p"
    write_tree(root, {"a.txt": "a", "d/": None})
    os.symlink(str(sentinel), root / "media")
    os.symlink("../../etc/passwd", root / "d" / "up")
    os.symlink("d/..", root / "fine")
    os.symlink("chain2", root / "chain1")
    os.symlink("d/../..", root / "chain2")
    os.symlink("a.txt", root / "inside")
    path = create_backup(str(root), backup_dir=str(tmp_path / "bk")).backup_path
    out = tmp_path / "out"
    res = restore_backup(path, str(out))
    assert {l["path"] for l in res.outside_links} == {"media", "d/up", "chain1", "chain2"}
    assert os.readlink(out / "inside") == "a.txt" and os.readlink(out / "fine") == "d/.."
    assert not os.path.lexists(out / "media")
    code, out_json, err = run_cli(["backup.restore", "--backup-path", path, "--target-path", str(tmp_path / "out2"), "--json"])
    assert code == 3 and "media" in err
    assert {l["path"] for l in json.loads(out_json)["outside_links"]} == {"media", "d/up", "chain1", "chain2"}
    res = restore_backup(path, str(tmp_path / "out3"), allow_outside_links=True)
    assert res.outside_links == () and os.readlink(tmp_path / "out3" / "media") == str(sentinel)


# ----------------------------------------------------- partial restores, targets


def test_include_creates_only_the_folders_that_lead_to_what_is_restored(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"app/a.py": "a", "app/b.txt": "b", "docs/x.md": "x", "docs/sub/empty/": None, "other/deep/dir/": None,
                      "other/deep/f.txt": "f", "empty/": None, "top.py": "t"})
    path = create_backup(str(root), backup_dir=str(tmp_path / "bk")).backup_path

    def tree(d):
        return sorted(p.relative_to(d).as_posix() + ("/" if p.is_dir() else "") for p in d.rglob("*"))

    out = tmp_path / "none"
    code, stdout, err = run_cli(["backup.restore", "--backup-path", path, "--target-path", str(out), "--include", "nomatch/"])
    assert code == 0 and "Restored 0 paths" in stdout
    assert tree(out) == []
    out = tmp_path / "docs"
    restore_backup(path, str(out), include=["docs/"])
    assert tree(out) == ["docs/", "docs/sub/", "docs/sub/empty/", "docs/x.md"]
    out = tmp_path / "py"
    restore_backup(path, str(out), include=["*.py"])
    assert tree(out) == ["app/", "app/a.py", "top.py"]
    # the same with --force into a target that has other folders: none added
    out = tmp_path / "force"
    write_tree(out, {"mine/": None})
    restore_backup(path, str(out), include=["*.py"], force=True)
    assert tree(out) == ["app/", "app/a.py", "mine/", "top.py"]
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]


def test_target_whose_parent_is_a_file(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"a": "1"})
    path = create_backup(str(root), backup_dir=str(tmp_path / "bk")).backup_path
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile" / "t", tmp_path / "afile" / "deeper" / "t"):
        code, _, err = run_cli(["backup.restore", "--backup-path", path, "--target-path", str(target)])
        assert code == 2 and f"{tmp_path / 'afile'} is a file, not a folder" in err, err
        assert "File exists" not in err
    assert (tmp_path / "afile").read_text() == "x"
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]
