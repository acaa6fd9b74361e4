"""push, pull, list, verify and cleanup against real remotes: S3 over HTTP
(moto's server on 127.0.0.1) and folders, with real archives."""

import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import sqlite3

import pytest

import s3server
from backup_lib.errors import (
    EXIT_USAGE,
    IntegrityError,
    NotFoundError,
    RemoteAccessError,
    RemoteFullError,
    RemoteMissingError,
    RemoteUnreachableError,
    UsageError,
)
from backup_lib.project import create_backup, verify_backups
from backup_lib.remote import (
    LocalBackup,
    RemoteState,
    classify,
    cleanup_remote,
    list_remote,
    open_remote_archive,
    plan_push,
    pull,
    push,
    remote_from_config,
    remote_info,
    verify_remote,
)
from backup_lib.retention import plan_retention
from backup_lib.storage import ObjectInfo
from backup_lib.store import BackupStore, cached_archive_sha256

s3_env = s3server.s3_env
bucket = s3server.bucket
MiB = 1 << 20


def s3_remote(bucket, tmp_path, url=None, **conf):
    conf = {"url": f"s3://{bucket}/backups", "endpoint_url": url or s3server.endpoint(), "part_size": "5MiB",
            "multipart_threshold": "5MiB", "max_concurrency": 4, **conf}
    return remote_from_config("offsite", conf, cache_dir=str(tmp_path / "cache"))


def folder_remote(path, tmp_path):
    return remote_from_config("nas", {"url": str(path)}, cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "app"
    (root / "src").mkdir(parents=True)
    (root / "src/main.py").write_text("print('hi')\n" * 50)
    (root / "README.md").write_text("# app\n")
    return root


def make_backup(root, bdir) -> str:
    return create_backup(str(root), backup_dir=str(bdir), name="app").backup_path


def copies(path: str, stamps: list[str]) -> list[str]:
    """The same archive under other timestamps (with its index), as the
    bench does: real archives, many names."""
    out = []
    folder = os.path.dirname(path)
    for stamp in stamps:
        name = f"app_project_{stamp}.tar.gz"
        dest = os.path.join(folder, name)
        os.link(path, dest)
        shutil.copy2(path + ".index.json", dest + ".index.json")
        out.append(dest)
    return out


# ----------------------------------------------------------------- pure plans


def test_plan_push_decides_from_names_sizes_and_digests():
    def lb(a, size=10, digest="a" * 64):
        return LocalBackup(a, f"/b/{a}", f"app/project/{a}", size, digest)

    local = [lb("new"), lb("same"), lb("noindex"), lb("damaged"), lb("other"), lb("unknown")]
    remote = {
        "same": RemoteState(10, "a" * 64, "a" * 64, 10),
        "noindex": RemoteState(10, "a" * 64, None, None),
        "damaged": RemoteState(7, "a" * 64, "a" * 64, 10),
        "other": RemoteState(10, "b" * 64, "b" * 64, 10),
        "unknown": RemoteState(10, None, None, None),
    }
    plan = {s.archive: s.action for s in plan_push(local, remote)}
    assert plan == {"new": "upload", "same": "skip", "noindex": "index", "damaged": "upload", "other": "conflict", "unknown": "conflict"}
    plan = {s.archive: s.action for s in plan_push(local, remote, overwrite=True)}
    assert plan["other"] == plan["unknown"] == "upload"


def test_classify_keeps_only_this_projects_backups():
    objs = [ObjectInfo(k, 1) for k in (
        "app/project/app_project_20250101_000000.tar.gz",
        "app/project/app_project_20250101_000000.tar.gz.index.json",
        "app/project/app_project_20250102_000000_1.tar.zst.index.json",
        "app/project/notes.txt",
        "app/project/old/app_project_20250101_000000.tar.gz",
        "app/project/other_project_20250101_000000.tar.gz",
        "app/project/app_db_20250101_000000.tar.gz",
        "app/db/app_db_20250101_000000.tar.gz",
    )]
    listing = classify(objs, "app", "project")
    assert list(listing.archives) == ["app_project_20250101_000000.tar.gz"]
    assert sorted(listing.indexes) == ["app_project_20250101_000000.tar.gz", "app_project_20250102_000000_1.tar.zst"]
    assert len(listing.foreign) == 5


def test_remote_configuration_is_validated():
    with pytest.raises(UsageError, match="unknown key"):
        remote_from_config("r", {"url": "s3://bkt/p", "bukket": "x"})
    with pytest.raises(UsageError, match="only apply to s3"):
        remote_from_config("r", {"url": "/mnt/nas", "region": "eu-west-1"})
    with pytest.raises(UsageError, match="part_size"):
        remote_from_config("r", {"url": "s3://bkt/p", "part_size": "1MiB"})
    with pytest.raises(UsageError, match="endpoint_url"):
        remote_from_config("r", {"url": "s3://bkt/p", "endpoint_url": "minio:9000"})
    with pytest.raises(UsageError) as info:
        remote_from_config("bad name", {"url": "s3://bkt/p"})
    assert info.value.exit_code == EXIT_USAGE
    r = remote_from_config("r", "s3://bkt/p")
    assert r.url == "s3://bkt/p" and r.label == "remote r (s3://bkt/p)"
    r = remote_from_config("r", {"url": "s3://bkt/p", "part_size": "8MiB", "max_concurrency": 3, "storage_class": "STANDARD_IA"})
    assert r.storage.transfer.part_size == 8 * MiB and r.storage.storage_class == "STANDARD_IA"


# ----------------------------------------------------------------- round trips


def test_push_and_pull_round_trip_project_and_db(bucket, tmp_path, project):
    db = project / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    con.commit()
    con.close()
    from backup_lib.database import db_backup, db_verify

    pdir, ddir = tmp_path / "backups/project", tmp_path / "backups/db"
    archive = make_backup(project, pdir)
    db_archive = db_backup(str(project), db_path=str(db), backup_dir=str(ddir), name="app").backup_path
    remote = s3_remote(bucket, tmp_path)

    dry = push(BackupStore(str(pdir), "project"), remote, dry_run=True)
    assert [s.action for s in dry.steps] == ["upload"] and s3server.keys(bucket) == []
    res = push(BackupStore(str(pdir), "project"), remote)
    assert res.ok and res.as_dict()["uploaded"] == [os.path.basename(archive)]
    res_db = push(BackupStore(str(ddir), "db"), remote)
    assert res_db.as_dict()["uploaded"] == [os.path.basename(db_archive)]
    assert sorted(s3server.keys(bucket)) == sorted([
        f"backups/app/project/{os.path.basename(archive)}", f"backups/app/project/{os.path.basename(archive)}.index.json",
        f"backups/app/db/{os.path.basename(db_archive)}", f"backups/app/db/{os.path.basename(db_archive)}.index.json",
    ])
    # the digest computed for the upload is cached beside the archive
    assert cached_archive_sha256(archive) == hashlib.sha256(open(archive, "rb").read()).hexdigest()

    again = push(BackupStore(str(pdir), "project"), remote)
    assert again.as_dict()["skipped"] == [os.path.basename(archive)] and again.bytes_sent == 0

    rows = list_remote(remote, "app", "project")
    assert [r["name"] for r in rows] == [os.path.basename(archive)]
    assert rows[0]["backup_type"] == "project_full" and rows[0]["total_files"] >= 2 and "error" not in rows[0]
    assert remote_info(remote, "app", "db", os.path.basename(db_archive))["backup_type"] == "database"
    with pytest.raises(NotFoundError):
        remote_info(remote, "app", "db", "app_db_20000101_000000.tar.gz")
    assert all(r.ok for r in verify_remote(remote, "app", "project"))

    # a new machine: empty backup dirs, pull, then the archives verify
    new = tmp_path / "new-machine"
    got = pull(BackupStore(str(new / "project"), "project"), remote, name="app")
    got_db = pull(BackupStore(str(new / "db"), "db"), remote, name="app")
    assert got.done == [os.path.basename(archive)] and got_db.done == [os.path.basename(db_archive)]
    assert open(new / "project" / os.path.basename(archive), "rb").read() == open(archive, "rb").read()
    assert all(r.ok for r in verify_backups(str(new / "project")))
    assert all(r.ok for r in db_verify(str(new / "db")))
    assert pull(BackupStore(str(new / "project"), "project"), remote, name="app").done == []  # nothing left to copy
    assert not [n for n in os.listdir(new / "project") if n.endswith(".partial")]


def test_folder_remote_round_trip(tmp_path, project):
    pdir = tmp_path / "backups"
    archive = make_backup(project, pdir)
    nas = tmp_path / "nas"
    nas.mkdir()
    remote = folder_remote(nas, tmp_path)
    assert push(BackupStore(str(pdir), "project"), remote).done == [os.path.basename(archive)]
    base = nas / "app/project" / os.path.basename(archive)
    assert base.read_bytes() == open(archive, "rb").read()
    assert json.loads((nas / "app/project" / (base.name + ".index.json")).read_bytes())["archive_sha256"] == cached_archive_sha256(archive)
    assert [r["name"] for r in list_remote(remote, "app", "project")] == [base.name]
    assert all(r.ok for r in verify_remote(remote, "app", "project"))
    got = pull(BackupStore(str(tmp_path / "restored"), "project"), remote, name="app")
    assert got.done == [base.name]
    assert all(r.ok for r in verify_backups(str(tmp_path / "restored")))


def test_large_archive_goes_up_in_parts(bucket, tmp_path, project):
    (project / "blob.bin").write_bytes(os.urandom(22 * MiB))
    pdir = tmp_path / "backups"
    archive = make_backup(project, pdir)
    remote = s3_remote(bucket, tmp_path)
    push(BackupStore(str(pdir), "project"), remote)
    key = f"backups/app/project/{os.path.basename(archive)}"
    head = s3server.client().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-5") and head["ContentLength"] == os.path.getsize(archive)
    index = json.loads(s3server.client().get_object(Bucket=bucket, Key=key + ".index.json")["Body"].read())
    assert index["checksum"].endswith("-5") and index["archive_sha256"] == head["Metadata"]["sha256"]
    assert all(r.ok for r in verify_remote(remote, "app", "project"))
    assert s3server.multipart_uploads(bucket) == []
    with open_remote_archive(remote, "app", "project", os.path.basename(archive)) as stream:
        assert stream.size == os.path.getsize(archive)
        assert hashlib.file_digest(stream, "sha256").hexdigest() == index["archive_sha256"]


# ----------------------------------------------------------------- damage, conflicts, resumption


def test_verify_catches_an_object_altered_on_the_server(bucket, tmp_path, project):
    pdir = tmp_path / "backups"
    first = make_backup(project, pdir)
    second, third = copies(first, ["20200101_000000", "20200102_000000"])
    remote = s3_remote(bucket, tmp_path)
    push(BackupStore(str(pdir), "project"), remote)
    c = s3server.client()
    data = open(first, "rb").read()
    meta = {"sha256": hashlib.sha256(data).hexdigest()}
    # truncated, by another tool
    c.put_object(Bucket=bucket, Key=f"backups/app/project/{os.path.basename(second)}", Body=data[:-10])
    # same size and same metadata, other bytes: only the storage's checksum tells
    forged = bytearray(data)
    forged[100] ^= 1
    c.put_object(Bucket=bucket, Key=f"backups/app/project/{os.path.basename(third)}", Body=bytes(forged), Metadata=meta,
                 ChecksumAlgorithm="SHA256")
    reports = {r.archive: r for r in verify_remote(remote, "app", "project")}
    assert reports[os.path.basename(first)].ok
    bad = reports[os.path.basename(second)]
    assert not bad.ok and any("bytes on the remote" in e for e in bad.errors) and any("no SHA-256 recorded" in e for e in bad.errors)
    bad = reports[os.path.basename(third)]
    assert not bad.ok and any("the object was replaced" in e for e in bad.errors)


def test_download_verify_streams_through_the_hook_and_catches_altered_bytes(tmp_path, project):
    pdir = tmp_path / "backups"
    archive = make_backup(project, pdir)
    nas = tmp_path / "nas"
    nas.mkdir()
    remote = folder_remote(nas, tmp_path)
    push(BackupStore(str(pdir), "project"), remote)
    with pytest.raises(UsageError):
        verify_remote(remote, "app", "project", download=True)
    seen = []

    def check_stream(stream, backup):  # stands in for the streaming archive reader
        seen.append((backup.archive, stream.read(512)[:5]))
        return []

    assert all(r.ok and r.downloaded for r in verify_remote(remote, "app", "project", download=True, check_stream=check_stream))
    # flip a byte in place: same size, sidecar unchanged, no storage checksum
    path = nas / "app/project" / os.path.basename(archive)
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    # a folder keeps no checksum of its own: the quick check hashes the file
    [report] = verify_remote(remote, "app", "project")
    assert not report.ok and not report.downloaded and "damaged on the remote" in report.errors[0]
    [report] = verify_remote(remote, "app", "project", download=True, check_stream=check_stream)
    assert not report.ok and "SHA-256 of the bytes read" in report.errors[0]
    assert seen == [(os.path.basename(archive), b"\x1f\x8b\x08\x04\x00")] * 2  # gzip, read through the hook
    # and a pull refuses it, keeping nothing
    with pytest.raises(IntegrityError, match="nothing was kept"):
        pull(BackupStore(str(tmp_path / "restored"), "project"), remote, name="app")
    assert [n for n in os.listdir(tmp_path / "restored") if not n.startswith(".backup.lock")] == []


def test_a_push_after_an_interrupted_one_sends_only_what_is_missing(bucket, tmp_path, project):
    pdir = tmp_path / "backups"
    first = make_backup(project, pdir)
    (second,) = copies(first, ["20200101_000000"])
    remote = s3_remote(bucket, tmp_path)
    push(BackupStore(str(pdir), "project"), remote)
    c = s3server.client()
    key = f"backups/app/project/{os.path.basename(second)}"
    before = c.head_object(Bucket=bucket, Key=key)
    c.delete_object(Bucket=bucket, Key=key + ".index.json")  # as if stopped between archive and index
    res = push(BackupStore(str(pdir), "project"), remote)
    assert res.as_dict()["indexed"] == [os.path.basename(second)] and res.as_dict()["uploaded"] == []
    assert res.bytes_sent == 0
    assert c.head_object(Bucket=bucket, Key=key)["LastModified"] == before["LastModified"]
    assert all(r.ok for r in verify_remote(remote, "app", "project"))


def test_a_different_object_of_the_same_name_is_a_conflict_not_overwritten(bucket, tmp_path, project):
    pdir = tmp_path / "backups"
    archive = make_backup(project, pdir)
    remote = s3_remote(bucket, tmp_path)
    key = f"backups/app/project/{os.path.basename(archive)}"
    s3server.client().put_object(Bucket=bucket, Key=key, Body=b"another machine's", Metadata={"sha256": "c" * 64})
    res = push(BackupStore(str(pdir), "project"), remote)
    assert not res.ok and [s.archive for s in res.conflicts] == [os.path.basename(archive)]
    assert s3server.client().get_object(Bucket=bucket, Key=key)["Body"].read() == b"another machine's"
    res = push(BackupStore(str(pdir), "project"), remote, overwrite=True)
    assert res.ok and all(r.ok for r in verify_remote(remote, "app", "project"))


def test_a_damaged_copy_of_the_same_backup_is_sent_again(tmp_path, project):
    pdir = tmp_path / "backups"
    archive = make_backup(project, pdir)
    nas = tmp_path / "nas"
    nas.mkdir()
    remote = folder_remote(nas, tmp_path)
    push(BackupStore(str(pdir), "project"), remote)
    path = nas / "app/project" / os.path.basename(archive)
    with open(path, "r+b") as fh:
        fh.truncate(100)
    res = push(BackupStore(str(pdir), "project"), remote)
    assert res.as_dict()["uploaded"] == [os.path.basename(archive)] and "damaged" in res.steps[0].reason
    assert path.read_bytes() == open(archive, "rb").read()


def test_server_dying_mid_push_then_the_next_push_completes(bucket, tmp_path, project):
    (project / "blob.bin").write_bytes(os.urandom(20 * MiB))
    pdir = tmp_path / "backups"
    archive = make_backup(project, pdir)
    proxy = s3server.CutProxy(s3server.endpoint(), cut_after=8 * MiB)
    dying = s3_remote(bucket, tmp_path, url=proxy.url, max_attempts=2, connect_timeout=2, read_timeout=10)
    with pytest.raises(RemoteUnreachableError) as info:
        push(BackupStore(str(pdir), "project"), dying)
    assert proxy.cut.is_set() and str(info.value).startswith("remote offsite (s3://")
    key = f"backups/app/project/{os.path.basename(archive)}"
    assert s3server.keys(bucket) == []  # no partial object, no index
    assert [u["Key"] for u in s3server.multipart_uploads(bucket)] == [key]  # the abort could not get through
    assert os.path.exists(archive)
    res = push(BackupStore(str(pdir), "project"), s3_remote(bucket, tmp_path))
    assert res.as_dict()["uploaded"] == [os.path.basename(archive)] and res.aborted_uploads == [f"app/project/{os.path.basename(archive)}"]
    assert s3server.multipart_uploads(bucket) == []
    assert sorted(s3server.keys(bucket)) == [key, key + ".index.json"]
    assert all(r.ok for r in verify_remote(s3_remote(bucket, tmp_path), "app", "project"))


def test_missing_bucket_and_unreachable_endpoint(s3_env, tmp_path, project):
    pdir = tmp_path / "backups"
    archive = make_backup(project, pdir)
    store = BackupStore(str(pdir), "project")
    with pytest.raises(RemoteMissingError, match=r"^remote offsite \(s3://no-bucket/backups\): bucket no-bucket does not exist$"):
        push(store, s3_remote("no-bucket", tmp_path))
    url = f"http://127.0.0.1:{s3server.free_port()}"
    dead = s3_remote("bkt", tmp_path, url=url, max_attempts=1, connect_timeout=2)
    for action in (lambda: push(store, dead), lambda: list_remote(dead, "app", "project"), lambda: pull(store, dead, name="app")):
        with pytest.raises(RemoteUnreachableError, match=rf"^remote offsite \(s3://bkt/backups\): cannot reach {url}"):
            action()
    assert os.path.exists(archive) and [b.path for b in store.backups()] == [archive]


def test_folder_remote_full_or_read_only(tmp_path, project):
    (project / "blob.bin").write_bytes(os.urandom(400_000))
    pdir = tmp_path / "backups"
    make_backup(project, pdir)
    store = BackupStore(str(pdir), "project")
    full = tmp_path / "full"
    if not s3server.mount_tmpfs(full, "size=256k"):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        with pytest.raises(RemoteFullError, match=r"^remote nas \(.*\): disk full"):
            push(store, folder_remote(full, tmp_path))
        assert os.listdir(full / "app/project") == []
    finally:
        s3server.umount(full)
    ro = tmp_path / "ro"
    assert s3server.mount_tmpfs(ro, "size=1m,ro")
    try:
        with pytest.raises(RemoteAccessError, match=r"^remote nas \(.*\): read-only file system"):
            push(store, folder_remote(ro, tmp_path))
    finally:
        s3server.umount(ro)


# ----------------------------------------------------------------- listing and cleanup


def test_listing_reads_each_index_once(bucket, tmp_path, project):
    pdir = tmp_path / "backups"
    first = make_backup(project, pdir)
    copies(first, [f"20200101_{i:06d}" for i in range(30)])
    remote = s3_remote(bucket, tmp_path)
    push(BackupStore(str(pdir), "project"), remote)
    rows = list_remote(remote, "app", "project")
    assert len(rows) == 31 and not [r for r in rows if "error" in r]
    assert rows[0]["name"] == os.path.basename(first)  # newest first
    # the second listing answers from the cache: a marker put in it shows
    [cache_file] = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "cache") for f in fs]
    with open(cache_file) as fh:
        cache = json.load(fh)
    key = "app/project/app_project_20200101_000005.tar.gz.index.json"
    cache["entries"][key]["index"]["metadata"]["total_files"] = 12345
    with open(cache_file, "w") as fh:
        json.dump(cache, fh)
    by_name = {r["name"]: r for r in list_remote(remote, "app", "project")}
    assert by_name["app_project_20200101_000005.tar.gz"]["total_files"] == 12345
    # an index changed on the server has another ETag: read again
    c = s3server.client()
    index = json.loads(c.get_object(Bucket=bucket, Key="backups/" + key)["Body"].read())
    index["metadata"]["total_files"] = 777
    c.put_object(Bucket=bucket, Key="backups/" + key, Body=json.dumps(index).encode())
    by_name = {r["name"]: r for r in list_remote(remote, "app", "project")}
    assert by_name["app_project_20200101_000005.tar.gz"]["total_files"] == 777


def test_cleanup_on_the_remote_leaves_foreign_objects_alone(bucket, tmp_path, project):
    pdir = tmp_path / "backups"
    newest = make_backup(project, pdir)
    old = copies(newest, ["20200101_000000", "20200102_000000", "20200103_000000"])
    remote = s3_remote(bucket, tmp_path)
    push(BackupStore(str(pdir), "project"), remote)
    c = s3server.client()
    foreign = [
        "backups/app/project/notes.txt",
        "backups/app/project/other_project_20190101_000000.tar.gz",
        "backups/app/project/keep/app_project_20190101_000000.tar.gz",
        "backups/app/db/app_db_20190101_000000.tar.gz",
        "backups/other/project/other_project_20190101_000000.tar.gz",
        "elsewhere/app_project_20190101_000000.tar.gz",
    ]
    for key in foreign:
        c.put_object(Bucket=bucket, Key=key, Body=b"not ours")
    # named as ours, but no index confirms it: kept too
    unconfirmed = "backups/app/project/app_project_20190101_000000.tar.gz"
    c.put_object(Bucket=bucket, Key=unconfirmed, Body=b"not ours")
    before = sorted(s3server.keys(bucket))
    plan = functools.partial(plan_retention, now=dt.datetime.now(dt.timezone.utc), retention_days=100000, max_backups=2)
    dry = cleanup_remote(remote, "app", "project", plan, dry_run=True)
    assert sorted(s3server.keys(bucket)) == before
    assert [d.key for d in dry.decisions if d.delete] == [os.path.basename(p) for p in (old[1], old[0])]
    res = cleanup_remote(remote, "app", "project", plan)
    assert res.deleted == [os.path.basename(old[1]), os.path.basename(old[0])]
    assert res.unconfirmed == [os.path.basename(unconfirmed)]
    after = set(s3server.keys(bucket))
    for key in foreign + [unconfirmed]:
        assert key in after
    for p in old[:2]:
        assert f"backups/app/project/{os.path.basename(p)}" not in after
        assert f"backups/app/project/{os.path.basename(p)}.index.json" not in after
    assert [r["name"] for r in list_remote(remote, "app", "project")] == [os.path.basename(newest), os.path.basename(old[2]), os.path.basename(unconfirmed)]
    assert json.loads(json.dumps(res.as_dict()))["deleted"] == res.deleted


PUSH_SCRIPT = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from backup_lib.remote import push, remote_from_config
from backup_lib.store import BackupStore
remote = remote_from_config("offsite", {"url": "s3://" + sys.argv[2] + "/backups", "endpoint_url": sys.argv[3],
                                        "part_size": "5MiB", "multipart_threshold": "5MiB", "max_concurrency": 2},
                            cache_dir=None)
def progress(n):
    os.write(1, b"part\n")  # one write: two threads may report at once
    time.sleep(0.5)
push(BackupStore(sys.argv[4], "project"), remote, progress=progress, max_files=2)
print("completed", flush=True)
"""


def test_interrupted_push_of_several_files_leaves_nothing_partial(bucket, tmp_path, project):
    import signal
    import subprocess
    import sys

    (project / "blob.bin").write_bytes(os.urandom(12 * MiB))
    pdir = tmp_path / "backups"
    first = make_backup(project, pdir)
    copies(first, ["20200101_000000"])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, **s3server.CREDENTIALS)
    proc = subprocess.Popen([sys.executable, "-c", PUSH_SCRIPT, repo, bucket, s3server.endpoint(), str(pdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "part"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "completed" not in out and "KeyboardInterrupt" in err
    assert s3server.keys(bucket) == []
    assert s3server.multipart_uploads(bucket) == []
    res = push(BackupStore(str(pdir), "project"), s3_remote(bucket, tmp_path))
    assert len(res.as_dict()["uploaded"]) == 2 and all(r.ok for r in verify_remote(s3_remote(bucket, tmp_path), "app", "project"))
