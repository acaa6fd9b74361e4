"""Remotes as the tasks use them: configured in invoke.yaml, against a real
S3 server (moto's, on 127.0.0.1) and a folder."""

import contextlib
import json
import os
import signal

import pytest

import s3server
from conftest import write_tree
from helpers import run_cli

s3_env = s3server.s3_env
bucket = s3server.bucket


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "shop"
    write_tree(root, {"app.py": "print(1)\n", "templates/a.html": "<p>\n", "data/big.bin": os.urandom(200_000)})
    return root


@pytest.fixture
def remotes(tmp_path, bucket, monkeypatch):
    nas = tmp_path / "nas"
    nas.mkdir()
    conf = tmp_path / "remotes.yaml"
    conf.write_text(
        "remotes:\n"
        f"  offsite: {{url: 's3://{bucket}/backups', endpoint_url: '{s3server.endpoint()}', region: us-east-1}}\n"
        f"  nas: {{url: '{nas}'}}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    return conf


def _one_row_db(db, value):
    """A SQLite database with one table t holding one row (value)."""
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.commit()
    conn.close()
    return db


def cli(*args):
    return run_cli(list(args))


def test_create_push_list_info_verify_pull_round_trip(proj, tmp_path, remotes, bucket):
    code, out, err = cli("backup.create", "-p", str(proj), "--push", "offsite", "--push", "nas", "--json")
    assert code == 0, err
    made = json.loads(out)
    assert [p["remote"] for p in made["pushed"]] == ["offsite", "nas"]
    name = os.path.basename(made["backup_path"])
    keys = s3server.keys(bucket)
    assert f"backups/shop/project/{name}" in keys and f"backups/shop/project/{name}.index.json" in keys
    assert (tmp_path / "nas" / "shop" / "project" / name).is_file()
    code, out, err = cli("backup.list", "-p", str(proj), "--remote", "offsite", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == [name]
    code, out, err = cli("backup.info", "-p", str(proj), "-R", "nas", "-b", name, "--json")
    assert code == 0 and json.loads(out)["project_hash"] == made["project_hash"]
    code, out, err = cli("backup.verify", "-p", str(proj), "-R", "offsite")
    assert code == 0 and out.startswith("ok") and "size and SHA-256" in err
    code, out, err = cli("backup.push", "-p", str(proj), "-R", "offsite", "--json")
    assert code == 0 and json.loads(out)["skipped"] == [name] and json.loads(out)["uploaded"] == []
    # A new machine: an empty project folder, pull, then restore.
    fresh = tmp_path / "fresh" / "shop"
    fresh.mkdir(parents=True)
    code, out, err = cli("backup.pull", "-p", str(fresh), "-R", "offsite")
    assert code == 0, err
    pulled = fresh / "backups" / "project" / name
    assert pulled.read_bytes() == open(made["backup_path"], "rb").read()
    code, out, err = cli("backup.restore", "-p", str(fresh), "-b", name, "-t", str(tmp_path / "restored"))
    assert code == 0, err
    assert (tmp_path / "restored" / "data" / "big.bin").read_bytes() == (proj / "data" / "big.bin").read_bytes()


def test_an_object_altered_on_the_server_fails_verify(proj, remotes, bucket):
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "offsite", "--json")
    assert code == 0, err
    key = next(k for k in s3server.keys(bucket) if k.endswith(".tar.gz"))
    s3server.client().put_object(Bucket=bucket, Key=key, Body=b"replaced")
    code, out, err = cli("backup.verify", "-p", str(proj), "-R", "offsite", "--json")
    assert code == 4 and json.loads(out)[0]["ok"] is False


def test_a_push_that_fails_keeps_the_local_backup_and_exits_1(proj, tmp_path, s3_env, monkeypatch):
    conf = tmp_path / "dead.yaml"
    conf.write_text(f"remotes:\n  dead: {{url: 's3://b/x', endpoint_url: 'http://127.0.0.1:{s3server.free_port()}', max_attempts: 1}}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    code, out, err = cli("backup.create", "-p", str(proj), "--push", "dead")
    assert code == 1 and "Created" in out
    assert len(err.strip().splitlines()) == 1 and "push to dead failed" in err and "127.0.0.1" in err
    kept = [n for n in os.listdir(proj / "backups" / "project") if not n.startswith(".")]
    assert len(kept) == 2 and any(n.endswith(".tar.gz") for n in kept)  # the archive and its index
    code, out, err = cli("backup.push", "-p", str(proj))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "dead" in err


def test_remote_choice_and_bad_config(proj, remotes, tmp_path, monkeypatch):
    code, _, err = cli("backup.push", "-p", str(proj))
    assert code == 2 and "several remotes" in err and "offsite" in err
    code, _, err = cli("backup.list", "-p", str(proj), "-R", "nowhere")
    assert code == 2 and "no remote named 'nowhere'" in err
    conf = tmp_path / "bad.yaml"
    conf.write_text("remotes:\n  x: {url: 'ftp://host/path'}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    code, _, err = cli("backup.list", "-p", str(proj), "-R", "x")
    assert code == 2 and len(err.strip().splitlines()) == 1
    monkeypatch.delenv("INVOKE_RUNTIME_CONFIG")
    code, _, err = cli("backup.push", "-p", str(proj))
    assert code == 2 and "no remotes configured" in err


def test_db_push_pull_and_remote_cleanup_keep_chains(proj, tmp_path, remotes, bucket):
    _one_row_db(proj / "shop.db", 1)
    code, out, err = cli("db.backup", "-p", str(proj), "-P", "offsite")
    assert code == 0, err
    fresh = tmp_path / "fresh" / "shop"
    fresh.mkdir(parents=True)
    code, out, err = cli("db.pull", "-p", str(fresh), "-R", "offsite", "--json")
    assert code == 0 and len(json.loads(out)["downloaded"]) == 1
    # a chain on the remote: full, then two incrementals; --keep-last 1 keeps the whole chain
    names = []
    for extra in ([], ["--incremental"], ["--incremental"]):
        code, out, err = cli("backup.create", "-p", str(proj), "-P", "offsite", "--json", *extra)
        assert code == 0, err
        names.append(os.path.basename(json.loads(out)["backup_path"]))
    s3server.client().put_object(Bucket=bucket, Key="backups/shop/project/notes.txt", Body=b"not a backup")
    code, out, err = cli("backup.cleanup", "-p", str(proj), "-R", "offsite", "--keep-last", "1", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["deleted"] == [] and [d["delete"] for d in res["decisions"]] == [False, False, False]
    assert "backups/shop/project/notes.txt" in s3server.keys(bucket)
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "offsite", "--full")
    code, out, err = cli("backup.cleanup", "-p", str(proj), "-R", "offsite", "--keep-last", "1", "--json")
    assert code == 0 and sorted(json.loads(out)["deleted"]) == sorted(names)
    assert "backups/shop/project/notes.txt" in s3server.keys(bucket)


def test_restore_from_the_remote_with_its_chain_and_verify_download(proj, tmp_path, remotes, bucket):
    names = []
    for extra in ([], ["--incremental"]):
        if extra:
            (proj / "templates" / "a.html").write_text("<p>changed</p>\n")
            (proj / "added.py").write_text("x = 1\n")
        code, out, err = cli("backup.create", "-p", str(proj), "-P", "offsite", "--json", *extra)
        assert code == 0, err
        names.append(os.path.basename(json.loads(out)["backup_path"]))
    assert names[1].endswith("_incr.tar.gz")
    fresh = tmp_path / "empty-machine" / "shop"
    fresh.mkdir(parents=True)
    target = tmp_path / "restored"
    code, out, err = cli("backup.restore", "-p", str(fresh), "-R", "offsite", "-b", names[1], "-t", str(target))
    assert code == 0, err
    for rel in ("added.py", "templates/a.html", "data/big.bin", "app.py"):
        assert (target / rel).read_bytes() == (proj / rel).read_bytes(), rel
    assert not (fresh / "backups").exists()  # nothing was downloaded to disk
    code, out, err = cli("backup.verify", "-p", str(fresh), "-R", "offsite", "--download", "--json")
    assert code == 0 and all(r["ok"] and r["downloaded"] for r in json.loads(out))
    # A byte altered on the server, the recorded size and SHA-256 left as they were: only reading catches it.
    c = s3server.client()
    key = f"backups/shop/project/{names[0]}"
    obj = c.get_object(Bucket=bucket, Key=key)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 1
    c.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=obj["Metadata"])
    code, out, err = cli("backup.verify", "-p", str(fresh), "-R", "offsite", "-L", "-b", names[0], "--json")
    assert code == 4 and json.loads(out)[0]["ok"] is False
    code, out, err = cli("backup.restore", "-p", str(fresh), "-R", "offsite", "-b", names[1], "-t", str(tmp_path / "again"))
    assert code == 4 and not (tmp_path / "again").exists() and names[0] in err


def test_db_restore_from_the_remote(proj, tmp_path, remotes):
    import sqlite3

    db = _one_row_db(proj / "shop.db", 42)
    code, out, err = cli("db.backup", "-p", str(proj), "-P", "nas", "--json")
    assert code == 0, err
    name = os.path.basename(json.loads(out)["backup_path"])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE t SET x = 0")
    conn.commit()
    conn.close()
    code, out, err = cli("db.restore", "-p", str(proj), "-R", "nas", "-b", name)
    assert code == 0, err
    assert sqlite3.connect(db).execute("SELECT x FROM t").fetchone()[0] == 42


def test_status_judges_the_copies_on_the_remotes_pushed_to(proj, tmp_path, s3_env, monkeypatch):
    from prometheus_client.parser import text_string_to_metric_families

    nas = tmp_path / "nas"
    nas.mkdir()
    dead = s3server.free_port()
    conf = tmp_path / "pushes.yaml"
    conf.write_text("remotes:\n"
                    f"  nas: {{url: '{nas}'}}\n"
                    f"  dead: {{url: 's3://b/x', endpoint_url: 'http://127.0.0.1:{dead}', max_attempts: 1}}\n"
                    "backup: {push: [nas]}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    code, out, err = cli("backup.create", "-p", str(proj), "--json")
    assert code == 0, err
    name = os.path.basename(json.loads(out)["backup_path"])
    assert cli("backup.verify", "-p", str(proj))[0] == 0
    code, out, err = cli("backup.status", "-p", str(proj), "--json")
    report = json.loads(out)
    assert list(report["kinds"]) == ["project", "project@nas"]
    copy = report["kinds"]["project@nas"]
    assert copy["remote"] == "nas" and copy["newest"]["name"] == name and copy["count"] == 1
    # the local backup is verified; the copy never was
    assert code == 11 and [(p["kind"], p["code"]) for p in report["problems"]] == [("project@nas", "verify_stale")]
    assert cli("backup.verify", "-p", str(proj), "-R", "nas")[0] == 0
    prom = tmp_path / "backup.prom"
    code, out, err = cli("backup.status", "-p", str(proj), "--prometheus", str(prom))
    assert code == 0, out + err
    assert "project@nas" in out
    fams = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert {(s.labels["kind"], s.labels["remote"]): s.value for s in fams["backup_files"].samples} == {
        ("project", ""): 3, ("project", "nas"): 3}

    # status.remotes names the remotes to check.  One that cannot be listed is
    # a problem row (exit 12), and a failed push is that copy's problem, not
    # the local backup's.
    conf.write_text(conf.read_text() + "status: {remotes: [nas, dead]}\n")
    assert cli("backup.push", "-p", str(proj), "-R", "dead")[0] == 1
    code, out, err = cli("backup.status", "-p", str(proj), "--json")
    report = json.loads(out)
    assert code == 12 and list(report["kinds"]) == ["project", "project@nas", "project@dead"]
    assert report["kinds"]["project"]["status"] == report["kinds"]["project@nas"]["status"] == "ok"
    dead_kind = report["kinds"]["project@dead"]
    assert dead_kind["count"] is None and [p["code"] for p in dead_kind["problems"]] == ["unreachable", "run_failed"]
    assert "dead" in dead_kind["problems"][0]["message"] and "127.0.0.1" in dead_kind["problems"][0]["message"]
    assert "backup.push" in dead_kind["problems"][1]["message"]
    code, out, err = cli("backup.status", "-p", str(proj))
    assert code == 12 and "cannot be listed" in out and err.strip() == "status: failed"
    # a remote that is not configured is a configuration error
    conf.write_text(conf.read_text().replace("remotes: [nas, dead]", "remotes: [gone]"))
    code, out, err = cli("backup.status", "-p", str(proj))
    assert code == 2 and "no remote named 'gone'" in err


def test_drills_read_the_newest_backup_and_its_chain_from_the_remote(proj, tmp_path, remotes, bucket):
    import sqlite3

    assert cli("backup.create", "-p", str(proj), "-P", "offsite")[0] == 0
    (proj / "app.py").write_text("print('second')\n")
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "offsite", "--incremental", "--json")
    assert code == 0, err
    incr = os.path.basename(json.loads(out)["backup_path"])
    parent = json.loads(out)["parent"]["name"]
    local = proj / "backups" / "project"
    for n in os.listdir(local):  # nothing local is read: the remote is the only copy
        os.unlink(local / n)
    code, out, err = cli("backup.drill", "-p", str(proj), "-R", "offsite", "--command", "grep -q second app.py", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["ok"] and res["backup_path"] == f"offsite:{incr}" and res["files"] == 3
    history = [json.loads(line) for line in (proj / "backups" / "history.jsonl").read_text().splitlines()]
    assert (history[-1]["task"], history[-1]["remote"], history[-1]["archive"]) == ("backup.drill", "offsite", f"offsite:{incr}")
    # the chain's full backup gone from the remote: exit 20, naming it, nothing run
    s3server.client().delete_object(Bucket=bucket, Key=f"backups/shop/project/{parent}")
    marker = tmp_path / "ran"
    code, out, err = cli("backup.drill", "-p", str(proj), "-R", "offsite", "-b", incr, "--command", f"touch {marker}")
    assert code == 20 and parent in err and len(err.strip().splitlines()) == 1 and not marker.exists()

    db = proj / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (name)")
        conn.execute("INSERT INTO users VALUES ('ann')")
    conn.close()
    assert cli("db.backup", "-p", str(proj), "-P", "nas")[0] == 0
    code, out, err = cli("db.drill", "-p", str(proj), "-R", "nas", "--json")
    assert code == 0, err
    steps = [s["name"] for s in json.loads(out)["steps"]]
    assert steps[:3] == ["restore", "integrity_check", "row_counts"]
    code, out, err = cli("db.drill", "-p", str(proj), "-R", "offsite")
    assert code == 1 and "no database backups to drill on remote offsite" in err


def test_verify_of_a_folder_remote_hashes_each_copy_and_push_says_what_it_compared(proj, tmp_path, remotes):
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "nas", "--json")
    assert code == 0, err
    name = os.path.basename(json.loads(out)["backup_path"])
    copy = tmp_path / "nas" / "shop" / "project" / name
    code, out, err = cli("backup.verify", "-p", str(proj), "-R", "nas")
    assert code == 0 and out.startswith("ok") and "each copy's bytes" in err
    # one byte changed on the NAS, in place: same size, the .sha256 and the index untouched
    with open(copy, "r+b") as fh:
        fh.seek(200)
        fh.write(b"X")
    code, out, err = cli("backup.verify", "-p", str(proj), "-R", "nas")
    assert code == 4 and out.startswith("FAILED") and "damaged on the remote" in out, (out, err)
    assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.startswith("error")] == [err.splitlines()[-1]]
    code, out, err = cli("backup.verify", "-p", str(proj), "-R", "nas", "--json")
    assert code == 4 and json.loads(out)[0]["ok"] is False
    # push compares what was recorded at upload, and says so
    code, out, err = cli("backup.push", "-p", str(proj), "-R", "nas")
    assert code == 0 and "recorded at upload" in out


@contextlib.contextmanager
def deadline(seconds=20):
    """Fail (instead of hanging the suite) when a read blocks on a FIFO."""
    def expired(*_):
        raise TimeoutError(f"blocked for {seconds}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def sparse_2gb(path):
    with open(path, "wb") as fh:
        fh.truncate(2 << 30)  # a hole: no disk used


def test_hostile_files_on_a_folder_remote_are_one_line_and_exit_4(proj, tmp_path, remotes):
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "nas", "--json")
    assert code == 0, err
    name = os.path.basename(json.loads(out)["backup_path"])
    folder = tmp_path / "nas" / "shop" / "project"
    index = folder / (name + ".index.json")
    archive = folder / name
    good_index, good_archive = index.read_bytes(), archive.read_bytes()

    def one_error_line(err):
        assert "Traceback" not in err and "unexpected" not in err and "please report" not in err, err
        assert [ln for ln in err.splitlines() if ln.startswith("error")] == [err.strip().splitlines()[-1]], err

    # the index: a FIFO (would block forever), a symlink to /dev/zero (endless), a sparse 2 GB file
    for make, why in ((os.mkfifo, "not a regular file"), (lambda p: os.symlink("/dev/zero", p), "symlink"),
                      (sparse_2gb, "more than")):
        index.unlink()
        make(str(index))
        with deadline():
            code, out, err = cli("backup.info", "-p", str(proj), "-R", "nas", "-b", name)
            assert code == 4 and why in err, (why, err)
            one_error_line(err)
            code, out, err = cli("backup.verify", "-p", str(proj), "-R", "nas")
            assert code == 4 and out.startswith("FAILED"), (why, out, err)
            one_error_line(err)
            code, out, err = cli("backup.pull", "-p", str(tmp_path / "elsewhere"), "-R", "nas", "-b", name)
            assert code != 0 and "Traceback" not in err and "please report" not in err, (why, err)
    index.unlink()
    index.write_bytes(good_index)
    # the archive: a FIFO, then a symlink to /dev/zero
    for make, why in ((os.mkfifo, "not a regular file"), (lambda p: os.symlink("/dev/zero", p), "symlink")):
        archive.unlink()
        make(str(archive))
        with deadline():
            code, out, err = cli("backup.restore", "-p", str(proj), "-R", "nas", "-b", name, "-t", str(tmp_path / "out"))
            assert code == 4 and why in err, (why, err)
            one_error_line(err)
            assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    archive.unlink()
    archive.write_bytes(good_archive)
    # a FIFO for the .sha256 sidecar: no SHA-256 recorded, never a hang
    sidecar = folder / (name + ".sha256")
    sidecar.unlink()
    os.mkfifo(sidecar)
    with deadline():
        code, out, err = cli("backup.verify", "-p", str(proj), "-R", "nas")
    assert code == 4 and "no SHA-256 recorded" in out


def test_pull_takes_the_local_index_from_the_archive_not_from_the_remote_index(proj, tmp_path, remotes):
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "nas", "--json")
    assert code == 0, err
    made = json.loads(out)
    name = os.path.basename(made["backup_path"])
    index = tmp_path / "nas" / "shop" / "project" / (name + ".index.json")
    good = index.read_bytes()
    # someone with write access to the NAS rewrites the index's metadata (sizes and SHA-256 left as they were)
    forged = json.loads(good)
    forged["metadata"]["hostname"] = "evil"
    forged["metadata"]["metadata_sha256"] = "e" * 64
    index.write_text(json.dumps(forged))
    fresh = tmp_path / "fresh" / "shop"
    fresh.mkdir(parents=True)
    code, out, err = cli("backup.pull", "-p", str(fresh), "-R", "nas")
    assert code == 4 and "altered" in err and "hostname" in err and "Traceback" not in err, err
    left = fresh / "backups" / "project"
    assert not left.exists() or [n for n in os.listdir(left) if not n.startswith(".backup.lock")] == []
    # the true index: pulled, and the local index is the archive's own metadata
    index.write_bytes(good)
    code, out, err = cli("backup.pull", "-p", str(fresh), "-R", "nas")
    assert code == 0, err
    local = json.loads((left / (name + ".index.json")).read_text())
    assert local["metadata"]["metadata_sha256"] == made["metadata_sha256"]
    assert local["metadata"]["hostname"] == made["hostname"] and local["archive_sha256"] == forged["archive_sha256"]
    code, out, err = cli("backup.info", "-p", str(fresh), "-b", name, "--json")
    assert code == 0 and json.loads(out)["hostname"] == made["hostname"]


def test_pull_of_an_encrypted_backup_keeps_only_the_public_part_of_a_consistent_index(proj, tmp_path, bucket, monkeypatch):
    from backup_lib.archive.crypto import keygen

    recipient = keygen(str(tmp_path / "backup.key"))
    nas = tmp_path / "nas"
    nas.mkdir()
    conf = tmp_path / "enc.yaml"
    conf.write_text(f"backup: {{encrypt_to: ['{recipient}']}}\nremotes:\n  nas: {{url: '{nas}'}}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "nas", "--json")
    assert code == 0, err
    name = os.path.basename(json.loads(out)["backup_path"])
    index = nas / "shop" / "project" / (name + ".index.json")
    good = json.loads(index.read_text())
    forged = json.loads(index.read_text())
    forged["metadata"]["hostname"] = "evil"  # not a public field: never kept beside an encrypted archive
    index.write_text(json.dumps(forged))
    fresh = tmp_path / "fresh" / "shop"
    fresh.mkdir(parents=True)
    code, out, err = cli("backup.pull", "-p", str(fresh), "-R", "nas")
    assert code == 0, err
    local = json.loads((fresh / "backups" / "project" / (name + ".index.json")).read_text())
    assert "hostname" not in local["metadata"] and local["encrypted"] is True
    assert local["metadata"]["encryption"] == good["metadata"]["encryption"]
    # an index that hides the encryption the bytes have is refused
    os.unlink(fresh / "backups" / "project" / name)
    os.unlink(fresh / "backups" / "project" / (name + ".index.json"))
    del forged["metadata"]["encryption"]
    index.write_text(json.dumps(forged))
    code, out, err = cli("backup.pull", "-p", str(fresh), "-R", "nas")
    assert code == 4 and "encrypted" in err and not (fresh / "backups" / "project" / name).exists(), err


def test_verify_download_of_an_encrypted_copy_without_the_key_checks_the_encrypted_bytes(proj, tmp_path, bucket, monkeypatch):
    from backup_lib.archive.crypto import keygen

    key = tmp_path / "backup.key"
    recipient = keygen(str(key))
    nas = tmp_path / "nas"
    nas.mkdir()
    conf = tmp_path / "enc.yaml"
    conf.write_text(f"backup: {{encrypt_to: ['{recipient}']}}\nremotes:\n  nas: {{url: '{nas}'}}\n"
                    f"  offsite: {{url: 's3://{bucket}/backups', endpoint_url: '{s3server.endpoint()}', region: us-east-1}}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "nas", "-P", "offsite", "--json")
    assert code == 0, err
    name = os.path.basename(json.loads(out)["backup_path"])
    assert name.endswith(".age")
    for remote in ("nas", "offsite"):
        code, out, err = cli("backup.verify", "-p", str(proj), "-R", remote, "--download")
        assert code == 0 and out.startswith("ok") and "encrypted file only" in out, (remote, out, err)
        code, out, err = cli("backup.verify", "-p", str(proj), "-R", remote, "--download", "--json")
        [report] = json.loads(out)
        assert code == 0 and report["ok"] and report["downloaded"] and report["checked"] == "encrypted file", (remote, out)
        code, out, err = cli("backup.verify", "-p", str(proj), "-R", remote, "--download", "--identity", str(key), "--json")
        assert code == 0 and json.loads(out)[0]["checked"] == "contents", (remote, out, err)
    # a byte changed in the encrypted copy, size, sidecar and index untouched: FAILED, exit 4, even without the key
    copy = nas / "shop" / "project" / name
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    code, out, err = cli("backup.verify", "-p", str(proj), "-R", "nas", "--download", "--json")
    [report] = json.loads(out)
    assert code == 4 and not report["ok"] and "SHA-256 of the bytes read" in report["errors"][0], out


def test_remote_cleanup_keeps_every_possible_parent_of_an_incremental_whose_index_is_missing(proj, tmp_path, remotes):
    import time

    names = []
    for extra in (["--full"], ["--incremental"]):
        code, out, err = cli("backup.create", "-p", str(proj), "-P", "nas", "--json", *extra)
        assert code == 0, err
        names.append(os.path.basename(json.loads(out)["backup_path"]))
        time.sleep(1.05)
    folder = tmp_path / "nas" / "shop" / "project"
    for index in folder.glob(names[1] + ".index.json*"):  # the push was cut off before the incremental's index
        index.unlink()
    code, out, err = cli("backup.create", "-p", str(proj), "-P", "nas", "--full")
    assert code == 0, err
    code, out, err = cli("backup.cleanup", "-p", str(proj), "-R", "nas", "--max-backups", "1", "--retention-days", "0", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["deleted"] == [] and res["unconfirmed"] == [names[1]]
    assert (folder / names[0]).is_file() and (folder / names[1]).is_file()
    full = [d for d in res["decisions"] if d["name"] == names[0]][0]
    assert f"possible parent of {names[1]}, whose index is missing" in full["reason"] and not full["delete"]
