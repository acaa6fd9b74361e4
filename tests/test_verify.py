import hashlib
import io
import json
import os
import random
import tarfile

import pytest

from backup_lib.archive import MANIFEST_NAME, METADATA_NAME, seal
from backup_lib.project import create_backup, verify_backups, verify_one
from backup_lib.errors import NotFoundError
from conftest import write_tree
from helpers import run_cli


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"a.py": "print('a')\n" * 30, "b/c.txt": "hello\n", "b/d.bin": os.urandom(3000), "e": "", "f/": None})
    os.symlink("a.py", root / "link")
    return root


def flipped(path, pos, out):
    data = bytearray(open(path, "rb").read())
    data[pos] ^= 0x01
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_flipped_byte_anywhere_is_caught(project, tmp_path, compression):
    path = create_backup(str(project), compression=compression).backup_path
    assert verify_one(path).ok
    size = os.path.getsize(path)
    rng = random.Random(7)
    if size <= 4000:
        positions = range(size)
    else:
        # Sampled, plus every byte of the tail: the manifest, the metadata and the end marker.
        positions = sorted(set(range(0, size, max(1, size // 700))) | set(rng.sample(range(size), 300)) | set(range(size - 5000, size)))
    missed = []
    bad = tmp_path / ("bad" + os.path.basename(path)[-7:])
    for pos in positions:
        report = verify_one(str(flipped(path, pos, bad)))
        if report.ok:
            missed.append(pos)
    assert not missed, f"flips not caught at byte offsets {missed[:20]} of {size}"


def test_altered_seal_key_is_caught(project, tmp_path):
    """One bit turns "metadata_sha256" into "metadata_sha257": still valid
    JSON, but the seal is gone, and that must not pass."""
    path = create_backup(str(project), compression="none").backup_path
    data = bytearray(open(path, "rb").read())
    i = data.rfind(b'"metadata_sha256"') + len('"metadata_sha25')
    data[i] ^= 1
    bad = tmp_path / "unsealed.tar"
    bad.write_bytes(bytes(data))
    report = verify_one(str(bad))
    assert not report.ok and any("metadata_sha256" in e for e in report.errors), report.errors


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_truncated_archive(project, tmp_path, compression):
    path = create_backup(str(project), compression=compression).backup_path
    data = open(path, "rb").read()
    for cut in (len(data) - 1, len(data) // 2, 100, 0):
        bad = tmp_path / f"cut{cut}{os.path.basename(path)[-7:]}"
        bad.write_bytes(data[:cut])
        report = verify_one(str(bad))
        assert not report.ok, cut


def _rewrite(path, out, *, drop=None, manifest_edit=None, reseal=False):
    """Rebuild an uncompressed backup member by member, with one change."""
    with tarfile.open(path) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        members = src.getmembers()
        for ti in members:
            if ti.name == drop:
                continue
            data = src.extractfile(ti).read() if ti.isreg() else None
            if ti.name == MANIFEST_NAME and ti is members[-2] and manifest_edit:
                data = manifest_edit(data)
                ti.size = len(data)
            if ti.name == METADATA_NAME and ti is members[-1] and reseal:
                meta = json.loads(data)
                meta["manifest_sha256"] = hashlib.sha256(manifest_edit(src.extractfile(members[-2]).read())).hexdigest()
                data, _ = seal({k: v for k, v in meta.items() if k != "metadata_sha256"})
                ti.size = len(data)
            dst.addfile(ti, io.BytesIO(data) if data is not None else None)
    return out


def test_missing_member(project, tmp_path):
    path = create_backup(str(project), compression="none").backup_path
    report = verify_one(str(_rewrite(path, tmp_path / "x.tar", drop="b/c.txt")))
    assert not report.ok
    assert any("b/c.txt" in e and "missing" in e for e in report.errors), report.errors


def test_tampered_manifest(project, tmp_path):
    path = create_backup(str(project), compression="none").backup_path

    def edit(data):
        lines = data.decode().splitlines()
        rec = json.loads(lines[0])
        rec["mode"] = 0o777
        lines[0] = json.dumps(rec, separators=(",", ":"))
        return ("\n".join(lines) + "\n").encode()

    report = verify_one(str(_rewrite(path, tmp_path / "m.tar", manifest_edit=edit)))
    assert not report.ok and any("manifest" in e for e in report.errors), report.errors
    # Seals are hashes, not signatures: whoever recomputes them all forges an
    # archive that verifies (documented in the README).  Check the seal check
    # itself is what caught the edit above.
    report = verify_one(str(_rewrite(path, tmp_path / "m2.tar", manifest_edit=edit, reseal=True)))
    assert report.ok


def test_manifest_hash_mismatch_with_content(project, tmp_path):
    path = create_backup(str(project), compression="none").backup_path

    def edit(data):
        return data.replace(hashlib.sha256(b"hello\n").hexdigest().encode(), b"0" * 64)

    report = verify_one(str(_rewrite(path, tmp_path / "h.tar", manifest_edit=edit)))
    assert not report.ok


def test_verify_task_all_and_json(project, tmp_path):
    good = create_backup(str(project)).backup_path
    bdir = os.path.dirname(good)
    bad = os.path.join(bdir, "p_project_20200101_000000.tar.gz")
    data = bytearray(open(good, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(bad, "wb").write(bytes(data))
    code, out, err = run_cli(["backup.verify", "--project-root", str(project), "--json"])
    assert code == 4
    rows = {os.path.basename(r["backup_path"]): r for r in json.loads(out)}
    assert rows[os.path.basename(good)]["ok"] is True
    assert rows["p_project_20200101_000000.tar.gz"]["ok"] is False and rows["p_project_20200101_000000.tar.gz"]["errors"]
    assert "p_project_20200101_000000.tar.gz" in err
    code, out, err = run_cli(["backup.verify", "--project-root", str(project)])
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].count("p_project_20200101_000000.tar.gz") == 1
    code, out, err = run_cli(["backup.verify", "--project-root", str(project), "--backup-path", good])
    assert code == 0 and out.startswith("ok")


def test_no_backups_is_a_failure(tmp_path):
    with pytest.raises(NotFoundError, match="no backups"):
        verify_backups(str(tmp_path))
    code, _, err = run_cli(["backup.verify", "--project-root", str(tmp_path)])
    assert code == 1 and "no backups" in err
