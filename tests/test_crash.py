"""Killed with SIGKILL at any moment, create and restore leave nothing that is taken for a result."""

import os
import signal
import subprocess
import sys
import time

import pytest

from backup_lib.project import create_backup, list_backups, verify_backups
from backup_lib.store import TMP_SUFFIX
from conftest import write_tree
from helpers import REPO

CREATE = """
import sys
sys.path.insert(0, sys.argv[1])
from backup_lib.project import create_backup
print("start", flush=True)
create_backup(sys.argv[2], compression=sys.argv[3])
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def big_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash") / "proj"
    rnd = os.urandom(1 << 20)
    write_tree(root, {f"data/{i:03d}.bin": rnd[i:] + rnd[:i] for i in range(80)})
    write_tree(root, {f"src/m{i}.py": f"x = {i}\n" * 200 for i in range(300)})
    return root


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_sigkill_during_create(big_project, compression):
    bdir = big_project / "backups" / "project"
    delays = [0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8]
    caught_mid_write = 0
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-c", CREATE, str(REPO), str(big_project), compression], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if not os.path.isdir(bdir):
            continue
        caught_mid_write += any(n.endswith(TMP_SUFFIX) for n in os.listdir(bdir))
        # Whatever list shows is a complete, verifiable backup.
        listed = list_backups(str(bdir))
        assert all(b.error is None for b in listed), [b.error for b in listed]
        if listed:
            assert all(r.ok for r in verify_backups(str(bdir))), "a killed create left a broken backup"
    before = len(list_backups(str(bdir))) if os.path.isdir(bdir) else 0
    res = create_backup(str(big_project), compression=compression)
    assert not [n for n in os.listdir(bdir) if n.endswith(TMP_SUFFIX)]
    assert len(list_backups(str(bdir))) == before + 1
    assert verify_backups(str(bdir), [res.backup_path])[0].ok
    assert caught_mid_write, "no kill landed while an archive was being written; the test proved nothing"


RESTORE = """
import sys
sys.path.insert(0, sys.argv[1])
from backup_lib.project import restore_backup
print("start", flush=True)
restore_backup(sys.argv[2], sys.argv[3])
print("done", flush=True)
"""


def test_sigkill_during_restore_leaves_no_half_tree(big_project, tmp_path):
    path = create_backup(str(big_project), compression="none", backup_dir=str(tmp_path / "bk")).backup_path
    for delay in (0.1, 0.3):
        target = tmp_path / f"target{delay}"
        proc = subprocess.Popen([sys.executable, "-c", RESTORE, str(REPO), path, str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if "done" not in out:
            assert not target.exists(), "an interrupted restore left a partial tree in the target"
        else:
            assert len(list(target.rglob("*.bin"))) == 80


# ------------------------------------------- work folders of killed runs (issue 11, item 5)


def killed_restore(archive, target, script=RESTORE, extra=()):
    """Start a restore in a real process, SIGKILL it while it writes into its
    work folder, and return that folder."""
    parent, name = os.path.split(str(target))
    proc = subprocess.Popen([sys.executable, "-c", script, str(REPO), str(archive), str(target), *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.monotonic() + 60
    while True:
        found = [n for n in os.listdir(parent) if n.startswith(f".{name}.restore-")]
        # mid-extraction: something of the archive is in it (in tree/, or directly in older versions)
        if found and any(os.path.exists(os.path.join(parent, found[0], *sub)) for sub in (("tree", "data"), ("data",), ("tree", "app.db"), ("app.db",))):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the restore ended before it could be killed")
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return os.path.join(parent, found[0])


def test_killed_restore_folder_is_removed_and_reported_by_the_next_restore(big_project, tmp_path):
    import json

    from helpers import run_cli

    path = create_backup(str(big_project), compression="none", backup_dir=str(tmp_path / "bk")).backup_path
    left = killed_restore(path, tmp_path / "target")
    assert os.path.isdir(left) and not (tmp_path / "target").exists()
    # The next restore (of anything, to anywhere in that folder) cleans up and says so.
    code, out, err = run_cli(["backup.restore", "--backup-path", path, "--target-path", str(tmp_path / "other"), "--json"])
    assert code == 0, err
    notes = json.loads(out)["work_folders"]
    assert [(n["path"], n["removed"]) for n in notes] == [(left, True)] and "has ended" in notes[0]["reason"]
    assert not os.path.exists(left)
    left = killed_restore(path, tmp_path / "target")
    code, out, err = run_cli(["backup.restore", "--backup-path", path, "--target-path", str(tmp_path / "target")])
    assert code == 0 and f"warning: removed {left}: left by a run that is gone" in err
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]


DB_RESTORE = """
import sys
sys.path.insert(0, sys.argv[1])
from backup_lib.database import db_restore
print("start", flush=True)
db_restore(sys.argv[2], root=sys.argv[4], db_path=sys.argv[3])
print("done", flush=True)
"""


def test_killed_db_restore_folder_is_removed_by_the_next_db_restore(tmp_path):
    import sqlite3

    from backup_lib.database import db_backup, db_restore

    root = tmp_path / "app"
    root.mkdir()
    db = root / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    conn.executemany("INSERT INTO blobs (data) VALUES (?)", [(os.urandom(1 << 16),) for _ in range(800)])  # 50 MB
    conn.commit()
    conn.close()
    archive = db_backup(str(root), db_path=str(db), sql_dump=False, compression="none").backup_path
    left = killed_restore(archive, db, script=DB_RESTORE, extra=(str(root),))
    assert os.path.isdir(left)
    res = db_restore(archive, root=str(root), db_path=str(db))
    assert [(n["path"], n["removed"]) for n in res.work_folders] == [(left, True)]
    assert not [n for n in os.listdir(root) if ".restore-" in n]


def test_create_never_selects_work_folders_and_removes_those_of_killed_runs(big_project, tmp_path):
    import json
    import tarfile

    from helpers import run_cli

    archive = create_backup(str(big_project), compression="none", backup_dir=str(tmp_path / "bk")).backup_path
    proj = tmp_path / "proj"
    write_tree(proj, {"app.py": "x = 1\n"})
    dead = killed_restore(archive, proj / "restored")  # a restore into the project, killed
    other_host = proj / "sub" / ".x.restore-abcd1234"
    write_tree(other_host, {"owner.json": json.dumps({"host": "some-other-host", "pid": 1}), "tree/big.bin": "data"})
    legacy = proj / ".y.restore-legacy00"  # an older version's: no owner record
    write_tree(legacy, {"data/old.bin": "data"})
    os.utime(legacy, (0, 0))

    code, out, err = run_cli(["backup.create", "--project-root", str(proj), "--dry-run", "--json"])
    assert code == 0 and json.loads(out)["files"] == ["app.py"]
    assert os.path.isdir(dead), "a dry run removes nothing"

    code, out, err = run_cli(["backup.create", "--project-root", str(proj), "--json"])
    assert code == 0, err
    made = json.loads(out)
    notes = {n["path"]: n for n in made["work_folders"]}
    assert notes[dead]["removed"] is True and not os.path.exists(dead)
    assert notes[str(other_host)]["removed"] is False and "some-other-host" in notes[str(other_host)]["reason"]
    assert notes[str(legacy)]["removed"] is False and "no owner record" in notes[str(legacy)]["reason"]
    assert os.path.isdir(other_host) and os.path.isdir(legacy)
    with tarfile.open(made["backup_path"]) as tf:
        names = tf.getnames()
    assert not [n for n in names if ".restore-" in n], names
    code, _, err = run_cli(["backup.create", "--project-root", str(proj)])
    assert code == 0 and f"warning: left alone {other_host}: owned by host 'some-other-host'" in err


def test_owner_judgement():
    from backup_lib.workdir import owner_gone

    rec = {"host": "h", "pid": 42, "start": 1000, "boot_id": "b1"}

    def running(start):
        return lambda pid: start

    def ended(pid):
        raise ProcessLookupError(pid)

    assert owner_gone(rec, host="h", boot_id="b1", start_of=running(1000)) is None  # still running
    assert "has ended" in owner_gone(rec, host="h", boot_id="b1", start_of=ended)
    assert "another process" in owner_gone(rec, host="h", boot_id="b1", start_of=running(2000))  # pid reused
    assert "restarted" in owner_gone(rec, host="h", boot_id="b2", start_of=running(1000))
    assert owner_gone(rec, host="elsewhere", boot_id="b1", start_of=ended) is None  # not ours to judge
    assert owner_gone({"host": "h"}, host="h", boot_id="b1", start_of=ended) is None  # no pid: no judgement
