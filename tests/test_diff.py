"""backup.diff and backup.ls: what changed between two backups or since a
backup, and what a backup holds, read from manifests (the cache or the
archive), never by extracting members."""

import json
import os

import pytest

from backup_lib.diff import diff_manifests, diff_worktree, list_entries, read_manifest, stat_rows, worktree_selection
from backup_lib.errors import IntegrityError
from backup_lib.project import create_backup
from conftest import write_tree
from forge import dir as fdir
from forge import file, forge, symlink
from helpers import run_cli


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "shop"
    write_tree(root, {"app/main.py": "print(1)\n", "app/util.py": "u = 1\n", "static/site.css": "body{}\n",
                      "docs/old.md": "old\n", "README.md": "# shop\n", "run.sh": "#!/bin/sh\n",
                      "link": ("symlink", "app/main.py"), "kind": "was a file\n"})
    return root


def backup(root, tmp_path, **kw):
    return create_backup(str(root), cache_dir=str(tmp_path / "cache"), **kw)


def manifest(path, tmp_path, **kw):
    return read_manifest(path, cache_dir=str(tmp_path / "cache"), **kw)


def change_tree(root):
    (root / "app" / "main.py").write_text("print(2)  # changed\n")
    os.chmod(root / "run.sh", 0o755)
    os.unlink(root / "link")
    os.symlink("app/util.py", root / "link")
    os.unlink(root / "docs" / "old.md")
    os.rmdir(root / "docs")
    (root / "static" / "new.js").write_text("x\n")
    os.unlink(root / "kind")
    os.symlink("README.md", root / "kind")


EXPECTED = {
    "app/main.py": ("changed", ["content"]),
    "docs": ("removed", []),
    "docs/old.md": ("removed", []),
    "kind": ("changed", ["type"]),
    "link": ("changed", ["target"]),
    "run.sh": ("changed", ["mode"]),
    "static/new.js": ("added", []),
}


def by_path(result):
    return {c.path: (c.status, list(c.what)) for c in result.changes}


def test_two_backups(proj, tmp_path):
    a = backup(proj, tmp_path).backup_path
    change_tree(proj)
    b = backup(proj, tmp_path).backup_path
    result = diff_manifests(manifest(a, tmp_path)[0], manifest(b, tmp_path)[0], a_label=a, b_label=b)
    assert by_path(result) == EXPECTED
    assert result.summary() == {"added": 1, "removed": 2, "changed": 4, "size_delta": 2 + 11 - 4 - 11}
    lines = {c.path: c.line() for c in result.changes}
    assert lines["run.sh"] == "M  run.sh  (mode 644 -> 755)"
    assert lines["link"] == "M  link  (-> app/util.py, was -> app/main.py)"
    assert lines["kind"] == "T  kind  (file -> symlink)"
    assert lines["docs"] == "D  docs/" and lines["static/new.js"] == "A  static/new.js"
    assert lines["app/main.py"] == "M  app/main.py  (content, +11 bytes)"
    rows = {r["folder"]: r for r in stat_rows(result.changes)}
    assert rows["docs"]["removed"] == 2 and rows["docs"]["bytes_removed"] == 4
    assert rows["app"]["changed"] == 1 and rows["app"]["bytes_added"] == 11
    assert rows[""]["changed"] == 3 and rows["static"]["added"] == 1
    assert not diff_manifests(manifest(b, tmp_path)[0], manifest(b, tmp_path)[0]).differ


def test_working_tree_reads_only_what_lstat_says_changed(proj, tmp_path):
    a = backup(proj, tmp_path)
    m, meta = manifest(a.backup_path, tmp_path)

    def now():
        sel = worktree_selection(str(proj), backup_dir=str(proj / "backups" / "project"))
        return diff_worktree(m, sel, started_ns=None)

    same = now()
    assert not same.differ and same.hashed == 0, same.changes
    os.utime(proj / "README.md")  # touched, same content: read, and not a change
    touched = now()
    assert not touched.differ and touched.hashed == 1
    change_tree(proj)
    result = now()
    assert by_path(result) == EXPECTED
    # README.md (touched), app/main.py and run.sh (chmod changes its ctime); the new file is not read
    assert result.hashed == 3


def test_working_tree_selection_is_create_s(proj, tmp_path):
    """Nothing but the tree itself differs right after a backup: the backup
    folders, the history and the database are left out the same way."""
    (proj / ".gitignore").write_text("*.log\n")
    (proj / "x.log").write_text("ignored\n")
    (proj / "app.db").write_bytes(b"SQLite format 3\0" + bytes(100))
    res = backup(proj, tmp_path, exclude=["static/"])
    (proj / "backups" / "history.jsonl").write_text("{}\n")
    m, _ = manifest(res.backup_path, tmp_path)
    sel = worktree_selection(str(proj), backup_dir=str(proj / "backups" / "project"), exclude=["static/"],
                             other_backup_dirs=[str(proj / "backups" / "history.jsonl")])
    assert not diff_worktree(m, sel).differ
    sel = worktree_selection(str(proj), backup_dir=str(proj / "backups" / "project"))
    # backups/ holds nothing but the toolkit's own, so create leaves it out whole, and so does the diff
    assert {c.path for c in diff_worktree(m, sel).changes} == {"static", "static/site.css"}
    (proj / "backups" / "notes.txt").write_text("mine\n")  # a user's file there: both look inside again
    sel = worktree_selection(str(proj), backup_dir=str(proj / "backups" / "project"))
    assert {c.path for c in diff_worktree(m, sel).changes} == {
        "static", "static/site.css", "backups", "backups/history.jsonl", "backups/notes.txt"}


def test_the_manifest_comes_from_the_cache_when_fresh(proj, tmp_path):
    path = backup(proj, tmp_path).backup_path
    data, _ = manifest(path, tmp_path)
    st = os.stat(path)
    with open(path, "r+b") as fh:  # damage the archive, keep its size and time: the cache entry still describes it
        fh.seek(st.st_size // 2)
        fh.write(b"\xff" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert manifest(path, tmp_path)[0] == data
    with pytest.raises(IntegrityError):
        read_manifest(path, cache_dir=str(tmp_path / "empty-cache"))


def test_a_manifest_read_from_the_archive_is_cached(proj, tmp_path):
    path = backup(proj, tmp_path).backup_path
    other = str(tmp_path / "other-cache")
    data, meta = read_manifest(path, cache_dir=other)
    assert meta["backup_type"] == "project_full" and os.listdir(other)
    assert read_manifest(path, cache_dir=other)[0] == data


def test_encrypted_backups_need_the_identity(proj, tmp_path):
    from backup_lib.archive.crypto import keygen
    from backup_lib.errors import BackupError

    key = str(tmp_path / "id.key")
    recipient = keygen(key)
    a = backup(proj, tmp_path, encrypt_to=[recipient]).backup_path
    (proj / "README.md").write_text("# shop 2\n")
    b = backup(proj, tmp_path, encrypt_to=[recipient]).backup_path
    fresh = str(tmp_path / "fresh-cache")
    with pytest.raises(BackupError, match="--identity"):
        read_manifest(b, cache_dir=fresh)
    result = diff_manifests(read_manifest(a, cache_dir=fresh, identity_file=key)[0],
                            read_manifest(b, cache_dir=fresh, identity_file=key)[0])
    assert by_path(result) == {"README.md": ("changed", ["content"])}
    cached = os.listdir(os.path.join(fresh, os.listdir(fresh)[0]))
    for name in cached:  # what the cache keeps of an encrypted backup is encrypted too
        assert b"README.md" not in open(os.path.join(fresh, os.listdir(fresh)[0], name), "rb").read()


def test_incremental_manifests_describe_the_whole_tree(proj, tmp_path):
    full = backup(proj, tmp_path).backup_path
    (proj / "README.md").write_text("# changed\n")
    incr = backup(proj, tmp_path, incremental="true").backup_path
    assert incr.endswith("_incr.tar.gz")
    os.unlink(full)  # the chain is broken; the incremental's manifest still lists everything
    entries = [r["path"] for r in list_entries(read_manifest(incr, cache_dir=str(tmp_path / "c2"))[0])]
    assert "app/main.py" in entries and "README.md" in entries


def test_ls_patterns_select_paths_and_what_is_below(proj, tmp_path):
    m, _ = manifest(backup(proj, tmp_path).backup_path, tmp_path)
    paths = lambda pats: [r["path"] for r in list_entries(m, pats)]  # noqa: E731
    assert paths(["app"]) == ["app", "app/main.py", "app/util.py"]
    assert paths(["*.py"]) == ["app/main.py", "app/util.py"]
    assert paths(["app/", "!app/util.py"]) == ["app", "app/main.py", "app/util.py"]  # as restore --include: a folder takes all
    assert paths(["/README.md", "static/*.css"]) == ["README.md", "static/site.css"]
    assert paths(["nothing-matches"]) == []
    assert len(paths([])) == len(list(list_entries(m)))


def test_a_manifest_out_of_order_is_refused(tmp_path):
    a = b'{"path":"b","type":"file","mode":420,"size":1,"sha256":"00"}\n{"path":"a","type":"file","mode":420,"size":1,"sha256":"00"}\n'
    with pytest.raises(IntegrityError, match="tree order"):
        diff_manifests(a, b"")


# ------------------------------------------------------------------- tasks


def test_diff_task_exit_code_stat_and_json(proj, tmp_path):
    code, out, err = run_cli(["backup.create", "-p", str(proj), "--json"])
    assert code == 0, err
    a = json.loads(out)["backup_path"]
    code, out, err = run_cli(["backup.diff", "-p", str(proj), "--exit-code"])
    assert code == 0 and out == "" and "0 added, 0 removed, 0 changed" in err, err
    change_tree(proj)
    code, out, err = run_cli(["backup.diff", "-p", str(proj)])
    assert code == 0 and len(out.splitlines()) == len(EXPECTED)
    code, out, err = run_cli(["backup.diff", "-p", str(proj), "--exit-code", "--stat"])
    assert code == 1 and err == "" and out.splitlines()[0].split() == ["FOLDER", "ADDED", "REMOVED", "CHANGED", "+BYTES", "-BYTES"]
    assert out.splitlines()[-1].split()[:4] == ["total", "1", "2", "4"]
    code, out, err = run_cli(["backup.create", "-p", str(proj), "--json"])
    b = json.loads(out)["backup_path"]
    code, out, err = run_cli(["backup.diff", "-p", str(proj), "-b", os.path.basename(a), "--against", b, "--json", "--stat"])
    data = json.loads(out)
    assert code == 0 and data["differ"] and {c["path"]: (c["status"], c["what"]) for c in data["changes"]} == EXPECTED
    assert data["a"] == a and data["b"] == b and {r["folder"] for r in data["stat"]} == {"", "app", "docs", "static"}


def test_diff_between_projects_warns_and_goes_on(proj, tmp_path):
    other = tmp_path / "blog"
    write_tree(other, {"app/main.py": "print(1)\n"})
    code, out, _ = run_cli(["backup.create", "-p", str(proj), "--json"])
    a = json.loads(out)["backup_path"]
    code, out, _ = run_cli(["backup.create", "-p", str(other), "--json"])
    b = json.loads(out)["backup_path"]
    code, out, err = run_cli(["backup.diff", "-p", str(proj), "-b", a, "--against", b])
    assert code == 0 and "different projects (shop, blog)" in err and err.startswith("warning: ")
    assert "D  README.md" in out.splitlines()


def test_diff_and_ls_bad_input(proj, tmp_path):
    code, _, err = run_cli(["backup.diff", "-p", str(proj)])
    assert code == 1 and "no project backups to compare" in err
    code, _, err = run_cli(["backup.ls", "-p", str(proj), "-b", "nope.tar.gz"])
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
    bdir = proj / "backups" / "project"
    bdir.mkdir(parents=True)
    junk = bdir / "shop_project_20260101_000000.tar.gz"
    junk.write_bytes(b"not an archive at all")
    code, _, err = run_cli(["backup.ls", "-p", str(proj)])
    assert code == 4 and err.startswith("error: ") and err.count("\n") == 1


def test_ls_task_quotes_names_and_json_keeps_them(tmp_path):
    root = tmp_path / "odd"
    root.mkdir()
    bdir = tmp_path / "bk"
    bdir.mkdir()
    path = forge(bdir / "odd_project_20260101_000000.tar", [fdir("d"), file("d/new\nline.txt", b"x\n"),
                                                            file("d/\x1b[2Jclear", b"y"), symlink("d/l", "new\nline.txt")]).path
    code, out, err = run_cli(["backup.ls", "-p", str(root), "-B", str(bdir), "-b", path])
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("drwxr-xr-x") and lines[0].endswith("  d/")
    assert any(ln.endswith('"d/new\\nline.txt"') for ln in lines) and any('"d/\\033[2Jclear"' in ln for ln in lines)
    assert any(ln.startswith("lrwxrwxrwx") and ln.endswith('d/l -> "new\\nline.txt"') for ln in lines)
    assert "4 entries, 3 B" in err
    code, out, err = run_cli(["backup.ls", "-p", str(root), "-B", str(bdir), "-b", path, "--json", "--path", "*line*"])
    assert code == 0 and [r["path"] for r in json.loads(out)] == ["d/new\nline.txt"]
    rec = json.loads(out)[0]
    assert rec["type"] == "file" and rec["size"] == 2 and rec["mode"] == 0o644 and "sha256" in rec
