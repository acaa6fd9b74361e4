"""Incremental creates: what goes into the tar, what the manifest says, the
chain policy, and the parent choice."""

import hashlib
import json
import subprocess
import os
import shutil
import tarfile
import time

import pytest

from backup_lib.project import create_backup
from conftest import write_tree


def members(path):
    with tarfile.open(path) as tf:
        return [m.name.rstrip("/") for m in tf.getmembers()][:-2]


def manifest(path):
    with tarfile.open(path) as tf:
        names = tf.getnames()
        assert names[-2:] == ["backup_manifest.jsonl", "backup_metadata.json"]
        data = tf.extractfile(tf.getmember("backup_manifest.jsonl")).read()
        meta = json.loads(tf.extractfile(tf.getmember("backup_metadata.json")).read())
    return {r["path"]: r for r in map(json.loads, data.decode().splitlines())}, meta


def age(root, seconds=10):
    """Push every mtime/ctime of the tree into the past, as if the files
    were written well before the parent backup (mtime only: ctime cannot be
    set, so the parent is made after a pause instead)."""
    past = time.time() - seconds
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (past, past), follow_symlinks=False)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "app"
    write_tree(root, {
        "app/__init__.py": "init\n",
        "app/models.py": "models\n" * 100,
        "app/views.py": "views\n",
        "static/app.js": "js\n",
        "docs/a.md": "a\n",
        "docs/old/b.md": "b\n",
        "keep.txt": "keep\n",
        "empty/": None,
    })
    os.symlink("app/models.py", root / "link")
    os.link(root / "keep.txt", root / "keep-hard.txt")
    return root


def make(root, tmp_path, **kw):
    kw.setdefault("backup_dir", str(tmp_path / "bk"))
    kw.setdefault("cache_dir", str(tmp_path / "cache"))
    return create_backup(str(root), **kw)


def test_unchanged_tree_gives_an_empty_incremental_with_the_whole_manifest(tree, tmp_path):
    full = make(tree, tmp_path)
    time.sleep(0.05)
    inc = make(tree, tmp_path, incremental="true")
    assert inc.backup_path.endswith("_incr.tar.gz") and not inc.warnings
    meta = inc.metadata
    assert meta["backup_type"] == "project_incremental"
    assert meta["parent"] == {"name": os.path.basename(full.backup_path), "metadata_sha256": full.metadata["metadata_sha256"]}
    assert meta["base"]["name"] == os.path.basename(full.backup_path) and meta["chain_depth"] == 1
    assert meta["project_hash"] == full.metadata["project_hash"]
    assert meta["total_files"] == full.metadata["total_files"] and meta["total_size"] == full.metadata["total_size"]
    # Files written within the racy window are read and hashed, but equal content is not stored again.
    assert members(inc.backup_path) == []
    recs, _ = manifest(inc.backup_path)
    full_recs, _ = manifest(full.backup_path)
    assert {p: (r["type"], r.get("sha256"), r.get("target")) for p, r in recs.items()} == \
        {p: (r["type"], r.get("sha256"), r.get("target")) for p, r in full_recs.items()}
    assert meta["changes"]["new"] == 0 and meta["changes"]["modified"] == 0 and meta["changes"]["removed"] == 0
    assert meta["changes"]["unchanged"] == len(recs)


def test_changes_of_every_kind(tree, tmp_path):
    age(tree)
    make(tree, tmp_path)
    (tree / "app" / "views.py").write_text("views changed\n")  # modified
    (tree / "new.txt").write_text("new\n")  # new
    os.chmod(tree / "static" / "app.js", 0o755)  # mode only
    os.unlink(tree / "link")
    os.symlink("app/views.py", tree / "link")  # retargeted
    shutil.rmtree(tree / "docs")  # a whole folder removed
    os.rename(tree / "app" / "__init__.py", tree / "app" / "init_renamed.py")  # a rename
    (tree / "newdir" / "sub").mkdir(parents=True)  # new empty folders
    inc = make(tree, tmp_path, incremental=True)
    got = members(inc.backup_path)
    assert sorted(got) == sorted(["app/init_renamed.py", "app/views.py", "link", "new.txt", "newdir", "newdir/sub", "static/app.js"]), got
    recs, meta = manifest(inc.backup_path)
    assert "docs/a.md" not in recs and "docs" not in recs and "app/__init__.py" not in recs
    assert recs["link"]["target"] == "app/views.py"
    assert recs["static/app.js"]["mode"] == 0o755
    assert recs["keep.txt"]["type"] == "hardlink" and recs["keep.txt"]["target"] == "keep-hard.txt"  # "-" sorts before "."
    ch = meta["changes"]
    assert ch["removed"] == 5  # docs, docs/a.md, docs/old, docs/old/b.md, app/__init__.py
    assert ch["new"] == 4 and ch["modified"] == 3  # new.txt, newdir, newdir/sub, init_renamed; views, app.js, link
    # project_hash equals a full backup's of the same tree, whatever the chain.
    full_again = make(tree, tmp_path, backup_dir=str(tmp_path / "other"))
    assert meta["project_hash"] == full_again.metadata["project_hash"]


def test_an_edit_within_the_same_second_is_not_missed(tree, tmp_path):
    """Same size, same mtime (set back by hand), new content: the ctime or
    the racy rule catches it."""
    make(tree, tmp_path)
    f = tree / "app" / "views.py"
    st = f.stat()
    f.write_text("VIEWS\n")  # same length as "views\n"
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    inc = make(tree, tmp_path, incremental="true")
    assert "app/views.py" in members(inc.backup_path)
    recs, _ = manifest(inc.backup_path)
    assert recs["app/views.py"]["sha256"] == hashlib.sha256(b"VIEWS\n").hexdigest()


def opened_during(root, fn):
    """Names of the files under ``root`` opened while ``fn`` runs (inotify
    IN_OPEN on every folder), and fn's result."""
    import ctypes
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0:
        pytest.skip("inotify is not available")
    IN_OPEN = 0x20
    watches = {}
    try:
        for dirpath, _dirs, _files in os.walk(root):
            wd = libc.inotify_add_watch(fd, os.fsencode(dirpath), IN_OPEN)
            watches[wd] = os.path.relpath(dirpath, root)
        result = fn()
        opened = set()
        while True:
            try:
                buf = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            at = 0
            while at < len(buf):
                wd, mask, _cookie, size = struct.unpack_from("iIII", buf, at)
                name = buf[at + 16: at + 16 + size].rstrip(b"\0").decode()
                at += 16 + size
                if name and mask & IN_OPEN:
                    opened.add(os.path.normpath(os.path.join(watches[wd], name)))
        return opened, result
    finally:
        os.close(fd)


def settled(root):
    """Every file's times safely before the next backup's start: older
    ones are trusted on lstat, newer ones re-read (the racy window)."""
    age(root, 30)
    time.sleep(2.1)  # ctime cannot be set back: wait for it to leave the window


def test_unchanged_files_are_never_opened(tree, tmp_path):
    settled(tree)
    make(tree, tmp_path)
    (tree / "app" / "views.py").write_text("changed\n")
    opened, inc = opened_during(tree, lambda: make(tree, tmp_path, incremental="true"))
    assert inc.metadata["backup_type"] == "project_incremental"
    files = {p for p in opened if (tree / p).is_file()}
    assert files == {"app/views.py"}, files  # the one changed file; .gitignore files would show up too
    # A full backup opens every file: the watch does see opens.
    opened, _ = opened_during(tree, lambda: make(tree, tmp_path, full=True))
    assert {"app/models.py", "keep.txt", "static/app.js"} <= opened


def test_rehash_stores_only_what_differs(tree, tmp_path):
    settled(tree)
    make(tree, tmp_path)
    f = tree / "app" / "models.py"
    st = f.stat()
    data = f.read_bytes()
    f.write_bytes(data.replace(b"models", b"MODELS", 1))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    plain = make(tree, tmp_path, incremental="true")
    # ctime gives the edit away even with the old mtime; --rehash reads everything and stores the same.
    assert members(plain.backup_path) == ["app/models.py"]
    again = make(tree, tmp_path, incremental="true", rehash=True)
    assert members(again.backup_path) == [] and again.metadata["rehash"] is True


def test_no_parent_unusable_parent_and_full(tree, tmp_path):
    first = make(tree, tmp_path, incremental="true")
    assert first.metadata["backup_type"] == "project_full"
    assert first.warnings and "no earlier backup" in first.warnings[0]
    auto = make(tree, tmp_path / "auto", incremental="auto", backup_dir=str(tmp_path / "auto-bk"))
    assert auto.metadata["backup_type"] == "project_full" and auto.warnings == ()  # auto: nothing to say
    forced = make(tree, tmp_path, incremental="true", full=True)
    assert forced.metadata["backup_type"] == "project_full" and not forced.backup_path.endswith("_incr.tar.gz")
    # The newest backup damaged and no cache: the next readable one is the parent.
    shutil.rmtree(tmp_path / "cache")
    data = bytearray(open(forced.backup_path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(forced.backup_path, "wb").write(bytes(data))
    inc = make(tree, tmp_path, incremental="true")
    assert inc.metadata["backup_type"] == "project_incremental"
    assert inc.metadata["parent"]["name"] == os.path.basename(first.backup_path)


def test_chain_policy(tree, tmp_path):
    make(tree, tmp_path)
    for depth in (1, 2):
        inc = make(tree, tmp_path, incremental="true", max_chain=2)
        assert inc.metadata["chain_depth"] == depth
    third = make(tree, tmp_path, incremental="true", max_chain=2)
    assert third.metadata["backup_type"] == "project_full"
    assert third.warnings and "backup.max_chain 2" in third.warnings[0]
    # A chain whose full backup is older than full_every_days ends.
    inc = make(tree, tmp_path, incremental="true", full_every_days=0)
    assert inc.metadata["backup_type"] == "project_full" and "full_every_days 0" in inc.warnings[0]


def test_parent_from_a_newer_format_is_not_used(tree, tmp_path):
    full = make(tree, tmp_path)
    index = full.backup_path + ".index.json"
    data = json.load(open(index))
    data["metadata"]["format_version"] = 99
    json.dump(data, open(index, "w"))
    inc = make(tree, tmp_path, incremental="true")
    assert inc.metadata["backup_type"] == "project_full" and "newer format" in inc.warnings[0]


def test_without_the_cache_the_manifest_is_read_from_the_parent(tree, tmp_path):
    full = make(tree, tmp_path)
    shutil.rmtree(tmp_path / "cache")
    inc = make(tree, tmp_path, incremental="true")
    assert inc.metadata["parent"]["name"] == os.path.basename(full.backup_path)
    assert inc.metadata["project_hash"] == full.metadata["project_hash"]


def test_names_sort_and_parse(tree, tmp_path):
    from backup_lib.store import BackupStore, parse_backup_name

    make(tree, tmp_path)
    make(tree, tmp_path, incremental="true")
    make(tree, tmp_path, incremental="true")
    listed = BackupStore(str(tmp_path / "bk"), "project").backups()
    assert [b.incremental for b in listed] == [True, True, False]
    info = parse_backup_name("myapp_project_20261129_020000_1_incr.tar.zst.age")
    assert info["seq"] == 1 and info["incremental"] and info["encrypted"] and info["compression"] == "zstd"
    assert parse_backup_name("myapp_project_20261129_020000.tar.gz")["incremental"] is False


def test_a_new_hard_link_to_an_old_file_stores_the_group(tree, tmp_path):
    settled(tree)
    make(tree, tmp_path)
    os.link(tree / "app" / "views.py", tree / "views-link.py")
    inc = make(tree, tmp_path, incremental="true")
    got = members(inc.backup_path)
    assert "app/views.py" in got and "views-link.py" in got
    with tarfile.open(inc.backup_path) as tf:
        assert tf.getmember("views-link.py").islnk() and tf.getmember("views-link.py").linkname == "app/views.py"


def test_cleanup_keeps_whole_chains_and_deletes_dependants_first(tree, tmp_path):
    from backup_lib.project import cleanup_backups
    from backup_lib.retention import KeepPolicy

    f1 = make(tree, tmp_path).backup_path
    i1 = make(tree, tmp_path, incremental="true").backup_path
    i2 = make(tree, tmp_path, incremental="true").backup_path
    f2 = make(tree, tmp_path, full=True).backup_path
    j1 = make(tree, tmp_path, incremental="true").backup_path
    assert manifest(j1)[1]["parent"]["name"] == os.path.basename(f2)
    res = cleanup_backups(str(tmp_path / "bk"), name="app", keep=KeepPolicy.from_values(last=1), dry_run=True,
                          cache_dir=str(tmp_path / "cache"))
    plan = {os.path.basename(d.key): d for d in res.decisions}
    assert not plan[os.path.basename(j1)].delete and not plan[os.path.basename(f2)].delete
    assert plan[os.path.basename(f2)].reasons == (f"base of {os.path.basename(j1)}",)
    assert [os.path.basename(d.key) for d in res.decisions if d.delete] == [os.path.basename(p) for p in (i2, i1, f1)]
    assert res.deleted == () and all(os.path.exists(p) for p in (f1, i1, i2, f2, j1))
    res = cleanup_backups(str(tmp_path / "bk"), name="app", retention_days=30, max_backups=1, cache_dir=str(tmp_path / "cache"))
    assert [os.path.basename(p) for p in res.deleted] == [os.path.basename(p) for p in (i2, i1, f1)]
    assert sorted(os.listdir(tmp_path / "bk")) == sorted([os.path.basename(p) + s for p in (f2, j1) for s in ("", ".index.json")] + [".backup.lock"])
    cached = os.listdir(next((tmp_path / "cache").iterdir()))
    assert sorted(cached) == sorted(os.path.basename(p) + ".manifest" for p in (f2, j1))


def test_cleanup_task_keep_flags_and_json_reasons(tree, tmp_path):
    from helpers import run_cli

    make(tree, tmp_path)
    make(tree, tmp_path, incremental="true")
    args = ["backup.cleanup", "--project-root", str(tree), "--backup-dir", str(tmp_path / "bk")]
    code, out, err = run_cli([*args, "--keep-last", "1", "--dry-run", "--json"])
    assert code == 0, err
    rows = json.loads(out)["backups"]
    assert [r["action"] for r in rows] == ["keep", "keep"]
    assert rows[0]["reasons"][:2] == ["newest backup, always kept", "last 1"] and rows[1]["reasons"][0].startswith("base of ")
    for bad in (["--keep-daily", "-1"], ["--keep-within", "7x"], ["--keep-daily", "0"]):
        code, _, err = run_cli([*args, *bad])
        assert code == 2 and len(err.strip().splitlines()) == 1, (bad, err)


# ------------------------------------------------------------ chains: restore and verify

from test_restore import snapshot  # noqa: E402  (type, mode, mtime, content, link target, hard links)

from backup_lib.project import restore_backup, verify_one  # noqa: E402


def steps(root):
    """Changes of every kind, one step at a time (each then backed up)."""
    def s1():
        (root / "app" / "views.py").write_text("views v2\n")  # edit
        (root / "new.txt").write_text("new\n")  # add
    def s2():
        f = root / "app" / "models.py"
        st = f.stat()
        f.write_text(f.read_text().replace("models", "MODELS", 1))  # same size, same mtime: the same second
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chmod(root / "static" / "app.js", 0o700)  # mode only
    def s3():
        os.unlink(root / "link")
        os.symlink("new.txt", root / "link")  # retarget
        shutil.rmtree(root / "docs")  # a whole folder
    def s4():
        os.rename(root / "app" / "views.py", root / "app" / "pages.py")  # rename
        (root / "empty" / "deeper").mkdir()  # a new empty folder
        os.unlink(root / "keep-hard.txt")
    def s5():
        (root / "docs").mkdir()  # a folder comes back, with other content
        (root / "docs" / "a.md").write_text("a again, different\n")
        os.link(root / "new.txt", root / "new-hard.txt")
    return [s1, s2, s3, s4, s5]


def test_every_point_of_a_chain_restores_exactly(tree, tmp_path):
    points = [(make(tree, tmp_path).backup_path, snapshot(tree))]
    for step in steps(tree):
        step()
        res = make(tree, tmp_path, incremental="true")
        assert res.metadata["backup_type"] == "project_incremental"
        points.append((res.backup_path, snapshot(tree)))
    for i, (archive, expected) in enumerate(points):
        assert verify_one(archive).ok, archive
        out = tmp_path / f"restored-{i}"
        restore_backup(archive, str(out))
        got = snapshot(out)
        assert got["entries"].keys() == expected["entries"].keys(), i
        for key, rec in expected["entries"].items():
            assert got["entries"][key] == rec, (i, key)
        assert got["hardlinks"] == expected["hardlinks"], i
    # The newest reads every archive of its chain, newest first.
    from backup_lib.extract import scan_chain

    assert scan_chain(points[-1][0]).chain == [os.path.basename(p) for p, _ in reversed(points)]


def _restore_fails(archive, target, needle):
    from helpers import run_cli

    code, _out, err = run_cli(["backup.restore", "--backup-path", archive, "--target-path", str(target)])
    assert code == 4 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not target.exists()
    assert not [n for n in os.listdir(target.parent) if ".restore-" in n]


def test_a_missing_truncated_or_replaced_parent_restores_nothing(tree, tmp_path):
    full = make(tree, tmp_path).backup_path
    (tree / "x.txt").write_text("x\n")
    i1 = make(tree, tmp_path, incremental="true").backup_path
    (tree / "y.txt").write_text("y\n")
    i2 = make(tree, tmp_path, incremental="true").backup_path
    saved = open(i1, "rb").read()
    os.unlink(i1)
    _restore_fails(i2, tmp_path / "t1", os.path.basename(i1))
    assert not verify_one(i2).ok and os.path.basename(i1) in verify_one(i2).errors[0]
    open(i1, "wb").write(saved[: len(saved) // 2])
    _restore_fails(i2, tmp_path / "t2", os.path.basename(i1))
    other = create_backup(str(tree), backup_dir=str(tmp_path / "elsewhere"), cache_dir=str(tmp_path / "c2")).backup_path
    shutil.copyfile(other, i1)  # a valid full backup, but not the one i2 was made on
    _restore_fails(i2, tmp_path / "t3", "not the backup it was made on")
    open(i1, "wb").write(saved)
    restore_backup(i2, str(tmp_path / "t4"))
    assert (tmp_path / "t4" / "y.txt").read_text() == "y\n"
    assert os.path.exists(full)


def test_a_chain_with_include_dry_run_and_force(tree, tmp_path):
    make(tree, tmp_path)
    (tree / "app" / "views.py").write_text("views v2\n")
    (tree / "docs" / "b.md").write_text("b\n")
    inc = make(tree, tmp_path, incremental="true").backup_path
    res = restore_backup(inc, str(tmp_path / "part"), include=["app/"])
    assert sorted(res.restored) == ["app/__init__.py", "app/models.py", "app/views.py"]
    assert sorted(os.listdir(tmp_path / "part")) == ["app"]
    assert (tmp_path / "part" / "app" / "views.py").read_text() == "views v2\n"
    dry = restore_backup(inc, str(tmp_path / "nothing"), dry_run=True)
    assert "docs/b.md" in dry.restored and not (tmp_path / "nothing").exists()
    target = tmp_path / "over"
    restore_backup(inc, str(target))
    (target / "app" / "views.py").write_text("local edit\n")
    (target / "mine.txt").write_text("mine\n")
    restore_backup(inc, str(target), force=True)
    assert (target / "app" / "views.py").read_text() == "views v2\n" and (target / "mine.txt").read_text() == "mine\n"


def test_an_incremental_alone_is_never_restored_as_a_whole_tree(tree, tmp_path):
    from backup_lib.errors import IntegrityError
    from backup_lib.extract import scan_archive

    make(tree, tmp_path)
    (tree / "new.txt").write_text("new\n")
    inc = make(tree, tmp_path, incremental="true").backup_path
    renamed = tmp_path / "renamed.tar.gz"  # no _incr in its name, no index beside it
    shutil.copyfile(inc, renamed)
    (tmp_path / "d").mkdir()
    with pytest.raises(IntegrityError, match="incremental"):
        scan_archive(str(renamed), dest=str(tmp_path / "d"))


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
def test_gnu_tar_extracts_a_chain_as_the_readme_says(tree, tmp_path):
    """Each archive of the chain in order, base first: every file's newest
    content; the files removed during the chain are still there until the
    README's commands remove what the manifest does not list."""
    archives = [make(tree, tmp_path).backup_path]
    for step in steps(tree):
        step()
        archives.append(make(tree, tmp_path, incremental="true").backup_path)
    out = tmp_path / "gnu"
    out.mkdir()
    for archive in archives:
        subprocess.run(["tar", "-xzf", archive, "-C", str(out)], check=True)
    assert (out / "app" / "pages.py").read_text() == (tree / "app" / "pages.py").read_text()
    assert (out / "app" / "models.py").read_bytes() == (tree / "app" / "models.py").read_bytes()
    assert os.readlink(out / "link") == "new.txt"
    assert (out / "app" / "views.py").exists()  # removed during the chain: still here
    # The README's removal step, run as written there.
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    block = readme.split("<!-- chain-cleanup -->")[1].split("```sh\n")[1].split("```")[0]
    subprocess.run(["sh", "-ec", block], cwd=out, check=True)
    expected = {str(p.relative_to(tree)) for p in tree.rglob("*")}
    got = {str(p.relative_to(out)) for p in out.rglob("*")} - {"backup_manifest.jsonl", "backup_metadata.json"}
    assert got == expected


def test_list_shows_kind_and_parent_and_info_the_chain(tree, tmp_path):
    from helpers import run_cli

    full = make(tree, tmp_path).backup_path
    (tree / "n.txt").write_text("n\n")
    i1 = make(tree, tmp_path, incremental="true").backup_path
    args = ["--project-root", str(tree), "--backup-dir", str(tmp_path / "bk")]
    code, out, err = run_cli(["backup.list", *args])
    assert code == 0, err
    lines = out.splitlines()
    assert "KIND" in lines[0]
    row_inc = next(line for line in lines if os.path.basename(i1) in line)
    assert " incr " in row_inc and f"on {os.path.basename(full)}" in row_inc
    assert " full " in next(line for line in lines if line.startswith(os.path.basename(full)))
    code, out, err = run_cli(["backup.list", *args, "--json"])
    rows = json.loads(out)
    assert rows[0]["parent"] == os.path.basename(full) and rows[0]["chain_depth"] == 1
    code, out, err = run_cli(["backup.info", *args, "-b", os.path.basename(i1)])
    assert code == 0 and f"chain (newest first): {os.path.basename(i1)} <- {os.path.basename(full)}" in out
    os.unlink(full)
    code, out, err = run_cli(["backup.info", *args, "-b", os.path.basename(i1)])
    assert f"{os.path.basename(full)} (MISSING)" in out


def test_a_parent_manifest_with_odd_values_is_built_on_without_a_crash(tree, tmp_path):
    """A parent whose manifest records hold lists and objects where numbers
    and names belong (it still verifies: modes and types of unstored paths
    are not checked there): the next incremental compares them as unequal
    and stores those files again, instead of failing."""
    import forge as F

    first = make(tree, tmp_path, incremental="true")
    with tarfile.open(first.backup_path) as tf:
        meta = json.loads(tf.extractfile("backup_metadata.json").read())
        records = [json.loads(line) for line in tf.extractfile("backup_manifest.jsonl").read().splitlines()]
        built = []
        for ti in tf.getmembers()[:-2]:
            if ti.isdir():
                built.append(F.dir(ti.name, mode=ti.mode))
            elif ti.issym():
                built.append(F.symlink(ti.name, ti.linkname))
            elif ti.islnk():
                built.append(F.hardlink(ti.name, ti.linkname))
            else:
                built.append(F.file(ti.name, tf.extractfile(ti).read(), mode=ti.mode))
    odd = [r["path"] for r in records if r["type"] == "file"][:3]
    assert len(odd) == 3
    for r in records:
        if r["path"] == odd[0]:
            r["mode"] = [r["mode"]]
        elif r["path"] == odd[1]:
            r["mtime_ns"], r["ino"] = {"n": 1}, [1]
        elif r["path"] == odd[2]:
            r["sha256"] = [r["sha256"]]
    for k in ("manifest_sha256", "structure_sha256", "metadata_sha256"):
        meta.pop(k)
    for name in os.listdir(tmp_path / "bk"):
        if name != os.path.basename(first.backup_path):
            os.unlink(tmp_path / "bk" / name)  # its index and the manifest cache's copy go with the original
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    F.forge(first.backup_path, built, compression="gz", records=records, metadata=meta)
    second = make(tree, tmp_path, incremental="true")
    assert second.metadata["backup_type"] == "project_incremental"
    stored = set(members(second.backup_path))
    assert odd[0] in stored and odd[2] in stored  # its mode judged changed, its hash unusable: stored again
    assert odd[1] not in stored  # its times judged changed: read, hashed, found the same
    recs = manifest(second.backup_path)[0]
    assert type(recs[odd[1]]["mtime_ns"]) is int and type(recs[odd[0]]["mode"]) is int
    assert recs[odd[2]]["sha256"] == hashlib.sha256((tree / odd[2]).read_bytes()).hexdigest()
    # the parent itself does not verify (one hash is not a hash): its chain is not restored
    from backup_lib.errors import IntegrityError
    from backup_lib.project import restore_backup

    with pytest.raises(IntegrityError, match="fails verification"):
        restore_backup(second.backup_path, str(tmp_path / "restored"))
    assert not (tmp_path / "restored").exists()


def test_a_chain_whose_full_backup_is_gone_is_not_built_on(tree, tmp_path):
    """An incremental on a chain missing its full backup could never be
    restored: a full backup is written instead, with a warning that says why."""
    full = make(tree, tmp_path, incremental="true")
    first = make(tree, tmp_path, incremental="true")
    assert first.metadata["backup_type"] == "project_incremental"
    os.unlink(full.backup_path)
    (tree / "keep.txt").write_text("changed\n")
    res = make(tree, tmp_path, incremental="true")
    assert res.metadata["backup_type"] == "project_full"
    assert any("broken" in w and os.path.basename(full.backup_path) in w for w in res.warnings), res.warnings
    from backup_lib.project import restore_backup

    restore_backup(res.backup_path, str(tmp_path / "out"))
    assert (tmp_path / "out" / "keep.txt").read_text() == "changed\n"
