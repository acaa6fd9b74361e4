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
