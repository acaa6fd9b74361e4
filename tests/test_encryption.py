"""Encrypted backups (age): written in one pass with nothing plaintext on
disk, listed and checked without the key, opened with it, and by the age
command without this tool."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from backup_lib.archive.crypto import AGE_MAGIC, keygen
from backup_lib.project import backup_info, create_backup, list_backups, verify_backups
from conftest import write_tree

HAVE_AGE = shutil.which("age") is not None
needs_age = pytest.mark.skipif(not HAVE_AGE, reason="the age command is not installed (apt-get install age)")
MARKER = "9f3c-never-in-plaintext-" + "x" * 20


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "keys" / "backup.key"
    path.parent.mkdir()
    return str(path), keygen(str(path))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "app"
    write_tree(root, {"app.py": f"SECRET = '{MARKER}'\n", f"{MARKER}.txt": "name is secret too\n", "static/x.js": "x\n",
                      ".env": f"KEY={MARKER}\n"})
    return root


def make(root, tmp_path, recipient, **kw):
    return create_backup(str(root), backup_dir=str(tmp_path / "bk"), cache_dir=str(tmp_path / "cache"),
                         encrypt_to=[recipient], include=[".env"], **kw)


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_archive_is_age_and_decrypts_with_the_age_command(tree, tmp_path, key, compression):
    path, recipient = key
    res = make(tree, tmp_path, recipient, compression=compression)
    suffix = {"gz": ".tar.gz.age", "zst": ".tar.zst.age", "none": ".tar.age"}[compression]
    assert res.backup_path.endswith(suffix)
    data = open(res.backup_path, "rb").read()
    assert data.startswith(AGE_MAGIC) and MARKER.encode() not in data
    assert stat.S_IMODE(os.stat(res.backup_path).st_mode) == 0o600
    assert res.metadata["encryption"] == {"format": "age", "recipients": [recipient]}
    if not HAVE_AGE:
        pytest.skip("the age command is not installed (apt-get install age)")
    out = tmp_path / "plain"
    out.mkdir()
    flags = {"gz": "-xzf", "zst": "--zstd -xf", "none": "-xf"}[compression]
    subprocess.run(f"age -d -i {path} {res.backup_path} | tar {flags} - -C {out}", shell=True, check=True)
    assert (out / "app.py").read_text() == (tree / "app.py").read_text()
    assert json.loads((out / "backup_metadata.json").read_text())["project_hash"] == res.metadata["project_hash"]


def test_nothing_plaintext_reaches_the_disk(tree, tmp_path, key, monkeypatch):
    _path, recipient = key
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    res = make(tree, tmp_path, recipient)
    seen = []
    for folder in (scratch, tmp_path / "bk", tmp_path / "cache"):
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                full = os.path.join(dirpath, name)
                seen.append(full)
                assert MARKER not in name
                assert MARKER.encode() not in open(full, "rb").read(), full
    assert res.backup_path in seen and any(p.endswith(".manifest") for p in seen)


def test_index_holds_only_what_is_safe_and_list_works_without_a_key(tree, tmp_path, key):
    _path, recipient = key
    res = make(tree, tmp_path, recipient)
    index = json.load(open(res.backup_path + ".index.json"))
    text = json.dumps(index)
    assert MARKER not in text and str(tree) not in text and "app.py" not in text
    assert index["encrypted"] is True
    assert index["archive_sha256"] == hashlib.sha256(open(res.backup_path, "rb").read()).hexdigest()
    assert set(index["metadata"]) <= {"format_version", "backup_type", "backup_timestamp", "tool_version", "total_files",
                                      "total_size", "compression", "encryption", "parent", "base", "chain_depth", "metadata_sha256"}
    rows = [b.summary() for b in list_backups(str(tmp_path / "bk"))]
    assert rows[0]["total_files"] == res.metadata["total_files"] and rows[0]["compression"] == "gzip"
    assert backup_info(res.backup_path) == index["metadata"]


def test_verify_without_the_key_checks_the_file_and_says_so(tree, tmp_path, key):
    path, recipient = key
    res = make(tree, tmp_path, recipient)
    [report] = verify_backups(str(tmp_path / "bk"))
    assert report.ok and report.checked == "encrypted file"
    [report] = verify_backups(str(tmp_path / "bk"), identity_file=path)
    assert report.ok and report.checked == "contents"
    data = bytearray(open(res.backup_path, "rb").read())
    data[len(data) // 2] ^= 1
    open(res.backup_path, "wb").write(bytes(data))
    [report] = verify_backups(str(tmp_path / "bk"))
    assert not report.ok and "SHA-256 recorded" in report.errors[0]
    [report] = verify_backups(str(tmp_path / "bk"), identity_file=path)
    assert not report.ok and "damaged" in report.errors[0]


def test_wrong_identity_is_one_clear_error(tree, tmp_path, key):
    _path, recipient = key
    make(tree, tmp_path, recipient)
    other = str(tmp_path / "other.key")
    keygen(other)
    from backup_lib.archive.crypto import DecryptError

    with pytest.raises(DecryptError, match="no identity matches"):  # the wrong key, not a damaged backup (exit 1)
        verify_backups(str(tmp_path / "bk"), identity_file=other)


def test_info_with_the_key_reads_the_whole_metadata(tree, tmp_path, key):
    path, recipient = key
    res = make(tree, tmp_path, recipient)
    full = backup_info(res.backup_path, identity_file=path)
    assert full["project_hash"] == res.metadata["project_hash"] and full["project_root"] == str(tree)


def test_incremental_on_an_encrypted_parent_needs_the_key(tree, tmp_path, key):
    path, recipient = key
    make(tree, tmp_path, recipient)
    (tree / "new.py").write_text("new\n")
    without = make(tree, tmp_path, recipient, incremental="true")
    assert without.metadata["backup_type"] == "project_full" and "encrypted" in without.warnings[0]
    (tree / "newer.py").write_text("newer\n")
    inc = make(tree, tmp_path, recipient, incremental="true", identity_file=path)
    assert inc.metadata["backup_type"] == "project_incremental" and inc.backup_path.endswith("_incr.tar.gz.age")
    assert inc.metadata["changes"]["new"] == 1


@needs_age
def test_encrypted_to_an_ssh_key(tree, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    res = make(tree, tmp_path, key.with_suffix(".pub").read_text().strip())
    out = tmp_path / "plain"
    out.mkdir()
    subprocess.run(f"age -d -i {key} {res.backup_path} | tar -xzf - -C {out}", shell=True, check=True)
    assert (out / ".env").read_text() == f"KEY={MARKER}\n"


# ------------------------------------------------------------ as the tasks do it


def run(*args):
    from helpers import run_cli

    return run_cli(list(args))


def configure(tmp_path, monkeypatch, text):
    conf = tmp_path / "enc.yaml"
    conf.write_text(text)
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))


def test_tasks_encrypt_list_verify_info_with_and_without_the_key(tree, tmp_path, key, monkeypatch):
    path, recipient = key
    configure(tmp_path, monkeypatch, f"backup:\n  encrypt_to: ['{recipient}']\n  include: ['.env']\n")
    code, out, err = run("backup.create", "-p", str(tree), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["backup_path"].endswith(".tar.gz.age")
    code, out, err = run("backup.list", "-p", str(tree), "--json")
    assert code == 0 and json.loads(out)[0]["total_files"] == made["total_files"]
    code, out, err = run("backup.verify", "-p", str(tree))
    assert code == 0 and "encrypted file only" in out
    code, out, err = run("backup.verify", "-p", str(tree), "--json")
    assert json.loads(out)[0]["checked"] == "encrypted file"
    code, out, err = run("backup.verify", "-p", str(tree), "-I", path, "--json")
    assert code == 0 and json.loads(out)[0]["checked"] == "contents"
    code, out, err = run("backup.info", "-p", str(tree), "-b", made["backup_path"])
    assert code == 0 and "public part only" in err and "project_hash" not in out
    code, out, err = run("backup.info", "-p", str(tree), "-b", made["backup_path"], "--identity", path, "--json")
    assert code == 0 and json.loads(out)["project_hash"] == made["project_hash"]
    other = str(tmp_path / "other.key")
    keygen(other)
    code, out, err = run("backup.verify", "-p", str(tree), "-I", other)
    assert code == 1 and "no identity matches" in err and len(err.strip().splitlines()) == 1
    code, _, err = run("backup.verify", "-p", str(tree), "-I", str(tmp_path / "nope.key"))
    assert code == 2 and "identity file" in err and "cannot be read" in err


def test_tasks_db_backup_encrypted_and_verified(tmp_path, key, monkeypatch):
    import sqlite3

    path, recipient = key
    root = tmp_path / "shop"
    root.mkdir()
    conn = sqlite3.connect(root / "shop.db")
    conn.execute("CREATE TABLE secrets (v)")
    conn.execute("INSERT INTO secrets VALUES (?)", (MARKER,))
    conn.commit()
    conn.close()
    configure(tmp_path, monkeypatch, f"db:\n  encrypt_to: ['{recipient}']\n")
    code, out, err = run("db.backup", "-p", str(root), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["backup_path"].endswith(".age") and MARKER.encode() not in open(made["backup_path"], "rb").read()
    code, out, err = run("db.verify", "-p", str(root), "--identity", path)
    assert code == 0, err
    if HAVE_AGE:
        out_dir = tmp_path / "x"
        out_dir.mkdir()
        subprocess.run(f"age -d -i {path} {made['backup_path']} | tar -xzf - -C {out_dir}", shell=True, check=True)
        loaded = tmp_path / "loaded.db"
        subprocess.run(f"sqlite3 {loaded} < {out_dir / 'shop.sql'}", shell=True, check=True)
        assert sqlite3.connect(loaded).execute("SELECT v FROM secrets").fetchone()[0] == MARKER


def test_keygen_task_and_bad_recipients(tmp_path, tree, monkeypatch):
    out_key = tmp_path / "new.key"
    code, out, err = run("backup.keygen", "--output", str(out_key))
    assert code == 0 and out.strip().startswith("age1") and stat.S_IMODE(os.stat(out_key).st_mode) == 0o600
    code, _, err = run("backup.keygen", "--output", str(out_key))
    assert code == 2 and "already exists" in err
    code, out, err = run("backup.keygen", "-O", str(tmp_path / "json.key"), "-j")
    assert code == 0, err
    made = json.loads(out)  # stdout is the JSON document only; the advice goes to stderr
    assert made == {"recipient": made["recipient"], "identity_file": str(tmp_path / "json.key")}
    assert made["recipient"].startswith("age1") and "backup.encrypt_to" in err
    assert (tmp_path / "json.key").read_text().count(made["recipient"]) == 1  # the key file names its recipient
    configure(tmp_path, monkeypatch, "backup:\n  encrypt_to: ['AGE-SECRET-KEY-1ABC']\n")
    code, _, err = run("backup.create", "-p", str(tree))
    assert code == 2 and "secret key" in err and not (tree / "backups").exists()


def test_restore_an_encrypted_chain_needs_the_key(tree, tmp_path, key, monkeypatch):
    path, recipient = key
    configure(tmp_path, monkeypatch, f"backup:\n  encrypt_to: ['{recipient}']\n  include: ['.env']\n"
                                     f"  cache_dir: '{tmp_path / 'cache'}'\n")
    code, out, err = run("backup.create", "-p", str(tree), "--json")
    assert code == 0, err
    (tree / "static" / "x.js").write_text("changed\n")
    code, out, err = run("backup.create", "-p", str(tree), "--incremental", "-I", path, "--json")
    assert code == 0, err
    inc = json.loads(out)["backup_path"]
    assert inc.endswith("_incr.tar.gz.age")
    code, _, err = run("backup.restore", "-p", str(tree), "-b", inc, "-t", str(tmp_path / "no-key"))
    assert code == 2 and "is encrypted" in err and not (tmp_path / "no-key").exists()
    code, out, err = run("backup.restore", "-p", str(tree), "-b", inc, "-t", str(tmp_path / "out"), "--identity", path)
    assert code == 0, err
    assert (tmp_path / "out" / "static" / "x.js").read_text() == "changed\n"
    assert (tmp_path / "out" / ".env").read_text() == f"KEY={MARKER}\n"
    other = str(tmp_path / "other.key")
    keygen(other)
    code, _, err = run("backup.restore", "-p", str(tree), "-b", inc, "-t", str(tmp_path / "wrong"), "-I", other)
    assert code == 1 and "no identity matches" in err and not (tmp_path / "wrong").exists()


@pytest.mark.parametrize("with_key", [True, False])
def test_cleanup_over_an_encrypted_incremental_with_a_stale_index(tree, tmp_path, key, monkeypatch, with_key):
    import time

    path, recipient = key
    configure(tmp_path, monkeypatch, f"backup:\n  encrypt_to: ['{recipient}']\n  identity_file: '{path}'\n")
    made = []
    for flag in ("--full", "--incremental", "--full"):
        (tree / "app.py").write_text(f"x = {len(made)}\n")
        code, out, err = run("backup.create", "-p", str(tree), flag, "--json")
        assert code == 0, err
        made.append(json.loads(out)["backup_path"])
        if flag == "--incremental":
            st = os.stat(made[-1])  # copied without -p: its index no longer matches
            os.utime(made[-1], ns=(st.st_atime_ns, st.st_mtime_ns - 60 * 10**9))
        time.sleep(1.05)
    assert made[1].endswith("_incr.tar.gz.age")
    if not with_key:
        configure(tmp_path, monkeypatch, f"backup:\n  encrypt_to: ['{recipient}']\n")
    code, out, err = run("backup.cleanup", "-p", str(tree), "--max-backups", "1", "--retention-days", "0")
    assert code == 0, err
    if with_key:  # the configured key reads it: the plan is whole
        assert [os.path.exists(p) for p in made] == [False, False, True]
    else:  # left alone, with its possible parent, and said so; the rest is cleaned up
        assert [os.path.exists(p) for p in made] == [True, True, True]
        name = os.path.basename(made[1])
        assert f"left alone {name}: encrypted, its index is stale" in err
        assert f"possible parent of {name}, which cannot be read" in out
