import datetime as dt
import os
import re
import stat
import subprocess
import sys
import time

import pytest

from backup_lib import project as P
from backup_lib.errors import LockedError, NotABackupError
from backup_lib.store import INDEX_SUFFIX, BackupStore, parse_backup_name
from conftest import write_tree


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "myapp"
    write_tree(r, {"a.py": "print(1)\n", "b/c.txt": "c\n"})
    return r


def bdir(root):
    return root / "backups" / "project"


def test_name_format_and_permissions(root):
    res = P.create_backup(str(root))
    name = os.path.basename(res.backup_path)
    assert re.fullmatch(r"myapp_project_\d{8}_\d{6}\.tar\.gz", name)
    assert stat.S_IMODE(os.stat(res.backup_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(bdir(root)).st_mode) == 0o700
    stamp = dt.datetime.strptime(name[len("myapp_project_"):-len(".tar.gz")], "%Y%m%d_%H%M%S")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert abs((now - stamp).total_seconds()) < 60  # UTC


def test_same_second_never_overwrites(root):
    store = BackupStore(str(bdir(root)), "project")
    store.ensure()
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    finals = []
    for content in (b"one", b"two", b"three"):
        with store.temp_file("x") as (fd, tmp):
            os.write(fd, content)
            os.close(fd)
            finals.append(store.place(tmp, "myapp", stamp, ".tar.gz"))
    assert [os.path.basename(f) for f in finals] == [
        "myapp_project_20260102_030405.tar.gz", "myapp_project_20260102_030405_1.tar.gz", "myapp_project_20260102_030405_2.tar.gz"]
    assert [open(f, "rb").read() for f in finals] == [b"one", b"two", b"three"]
    assert [b.seq for b in store.backups()] == [2, 1, 0]


def test_two_creates_in_a_row_both_survive(root):
    a = P.create_backup(str(root)).backup_path
    b = P.create_backup(str(root)).backup_path
    assert a != b and os.path.exists(a) and os.path.exists(b)


def test_leftovers_are_ignored_then_removed(root):
    P.create_backup(str(root))
    d = bdir(root)
    leftover = d / ".tmp-myapp_project.tar.gz-999-abcd.partial"
    leftover.write_bytes(b"half an archive")
    orphan_index = d / ("myapp_project_20200101_000000.tar.gz" + INDEX_SUFFIX)
    orphan_index.write_text("{}")
    assert len(P.list_backups(str(d))) == 1
    P.create_backup(str(root))
    assert not leftover.exists() and not orphan_index.exists()


def test_parse_backup_name():
    assert parse_backup_name("my_app_project_20250807_210052.tar.gz")["name"] == "my_app"
    assert parse_backup_name("x_db_20250807_210052_3.tar.zst")["seq"] == 3
    assert parse_backup_name("x_project_20250807_210052.zip") is None
    assert parse_backup_name("notes.txt") is None


HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from backup_lib.store import BackupStore
s = BackupStore(sys.argv[2], "project"); s.ensure()
with s.lock(1):
    print("locked", flush=True)
    time.sleep(30)
"""


def test_second_writer_waits_then_fails_clearly(root):
    from helpers import REPO

    d = bdir(root)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(REPO), str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match="busy"):
            P.create_backup(str(root), lock_timeout=0.3)
        with pytest.raises(LockedError):
            P.cleanup_backups(str(d), lock_timeout=0.3)
    finally:
        holder.kill()
        holder.wait()
    assert P.create_backup(str(root), lock_timeout=0.3).backup_path  # free again


def test_list_uses_index_and_never_decompresses(root):
    res = P.create_backup(str(root))
    path = res.backup_path
    st = os.stat(path)
    # Same size and mtime, garbage content: only the index can answer.
    with open(path, "r+b") as fh:
        fh.write(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    listed = P.list_backups(str(bdir(root)))
    assert listed[0].metadata["project_hash"] == res.metadata["project_hash"]


def test_missing_index_is_rebuilt(root):
    res = P.create_backup(str(root))
    os.unlink(res.backup_path + INDEX_SUFFIX)
    listed = P.list_backups(str(bdir(root)))
    assert listed[0].metadata["project_hash"] == res.metadata["project_hash"]
    assert os.path.exists(res.backup_path + INDEX_SUFFIX)


def test_list_newest_first_and_flags_unreadable(root):
    d = bdir(root)
    P.create_backup(str(root))
    time.sleep(1.1)
    newest = P.create_backup(str(root), compression="zst").backup_path
    (d / "myapp_project_20000101_000000.tar.gz").write_bytes(b"not an archive")
    rows = [b.summary() for b in P.list_backups(str(d))]
    assert rows[0]["backup_path"] == newest
    assert rows[-1]["name"] == "myapp_project_20000101_000000.tar.gz" and "error" in rows[-1]


def test_cleanup_never_touches_foreign_files_and_keeps_newest(root):
    d = bdir(root)
    made = []
    for _ in range(3):
        made.append(P.create_backup(str(root)).backup_path)
        time.sleep(1.05)
    foreign = [d / "notes.txt", d / "myapp_project_20000101_000000.tar.gz", d / "other_project_20000101_000000.tar.gz"]
    foreign[0].write_text("mine")
    foreign[1].write_bytes(b"looks like a backup, is not one")
    import shutil

    shutil.copy(made[0], foreign[2])  # another project's backup in a shared dir
    plan = P.cleanup_backups(str(d), name="myapp", retention_days=30, max_backups=1, dry_run=True)
    assert set(d_.key for d_ in plan.decisions if d_.delete) == set(made[:2])
    assert all(os.path.exists(p) for p in made)
    res = P.cleanup_backups(str(d), name="myapp", retention_days=30, max_backups=1)
    assert set(res.deleted) == set(made[:2])
    assert os.path.exists(made[2]) and not os.path.exists(made[0] + INDEX_SUFFIX)
    assert all(f.exists() for f in foreign)
    assert str(foreign[1]) in res.not_backups


def test_cleanup_by_age_keeps_newest_even_if_old(root):
    d = bdir(root)
    only = P.create_backup(str(root)).backup_path
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)
    res = P.cleanup_backups(str(d), retention_days=1, max_backups=5, now=future)
    assert res.deleted == () and os.path.exists(only)


def test_not_a_backup_is_refused(tmp_path):
    junk = tmp_path / "junk_project_20200101_000000.tar.gz"
    junk.write_bytes(b"\x1f\x8b garbage")
    from backup_lib.errors import IntegrityError

    with pytest.raises(IntegrityError):
        P.backup_info(str(junk))
    plain = tmp_path / "x.tar"
    import tarfile

    with tarfile.open(plain, "w") as tf:
        tf.add(__file__, arcname="f.py")
    with pytest.raises(NotABackupError):
        P.backup_info(str(plain))


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_failure_midway_stops_every_writer_thread_before_the_file_closes(tmp_path, compression):
    """isal's gzip writes from threads of its own (zstd compresses on some):
    a failure while files are archived must stop them (no write may reach a
    closed, reused descriptor) and leave neither a partial file nor a thread
    behind."""
    import threading

    from backup_lib.selection import select_files

    root = tmp_path / "p"
    write_tree(root, {f"f{i:03d}": os.urandom(300_000).hex() for i in range(40)})
    entries = select_files(str(root)).entries
    store = BackupStore(str(tmp_path / "bk"), "project")
    store.ensure()
    before = threading.active_count()

    def failing():
        for i, entry in enumerate(entries):
            if i == 30:
                raise RuntimeError("boom")
            yield entry

    try:
        store.write_archive(name="p", compression=compression, root=str(root), entries=failing(),
                            metadata_for=lambda rep, w: {}, now=dt.datetime.now(dt.timezone.utc))
    except RuntimeError as exc:
        # Checked while the traceback still holds the writer: garbage
        # collection must not be what stops its threads.
        assert str(exc) == "boom"
        assert threading.active_count() == before, [t.name for t in threading.enumerate()]
    else:
        pytest.fail("write_archive did not raise")
    assert os.listdir(tmp_path / "bk") == []


@pytest.mark.parametrize("kind", ["fifo", "devzero", "huge"])
def test_an_index_beside_an_archive_that_is_no_regular_file_is_ignored_never_read(root, kind):
    """The index is a cache: a FIFO (would block), a symlink to /dev/zero
    (endless) or a huge file in its place is passed over, and the archive
    itself is read."""
    from helpers import run_subprocess

    backups = str(bdir(root))
    res = P.create_backup(str(root), backup_dir=backups)
    index = res.backup_path + INDEX_SUFFIX
    os.unlink(index)
    if kind == "fifo":
        os.mkfifo(index)
    elif kind == "devzero":
        os.symlink("/dev/zero", index)
    else:
        with open(index, "wb") as fh:
            fh.truncate(2 << 30)  # sparse
    for args in (["backup.info", "--backup-path", res.backup_path, "--json"], ["backup.list", "--backup-dir", backups, "--project-root", str(root)],
                 ["backup.verify", "--backup-path", res.backup_path]):
        proc = run_subprocess(args, cwd=root, timeout=30)
        assert proc.returncode == 0 and "unexpected" not in proc.stderr, (args, proc.returncode, proc.stdout, proc.stderr)
    assert res.metadata["project_hash"] in run_subprocess(["backup.info", "--backup-path", res.backup_path, "--json"], cwd=root).stdout


def test_cleanup_dry_run_never_rewrites_a_missing_index(root):
    d = bdir(root)
    made = P.create_backup(str(root)).backup_path
    os.unlink(made + INDEX_SUFFIX)
    before = sorted(os.listdir(d))
    res = P.cleanup_backups(str(d), retention_days=30, max_backups=1, dry_run=True)
    assert [x.key for x in res.decisions] == [made]
    assert sorted(os.listdir(d)) == before  # a dry run changes nothing
    P.cleanup_backups(str(d), retention_days=30, max_backups=1)
    assert os.path.exists(made + INDEX_SUFFIX)  # a real one may refresh the cache


def test_cleanup_never_lets_a_future_dated_backup_push_out_the_real_newest(root):
    d = bdir(root)
    made = P.create_backup(str(root)).backup_path
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)  # made while the clock was a year ahead
    future = str(d / f"myapp_project_{ahead:%Y%m%d_%H%M%S}.tar.gz")
    os.rename(made, future)
    os.rename(made + INDEX_SUFFIX, future + INDEX_SUFFIX)
    time.sleep(1.05)
    real = P.create_backup(str(root)).backup_path
    res = P.cleanup_backups(str(d), retention_days=30, max_backups=1)
    assert res.deleted == () and os.path.exists(real) and os.path.exists(future)
    assert "dated in the future" in {x.key: x for x in res.decisions}[future].reason
