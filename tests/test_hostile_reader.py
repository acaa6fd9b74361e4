"""Hostile archives against the reader and verification (issue 10: "the
reader can be made to hang or to eat memory", "a verified archive must mean
the same tree to every tar"; issue 11: 15 and 17).

Every archive here is written by hand with tests/forge.py, as an attacker
would, in the project's own format and with every seal computed, so that
nothing but the check under test can refuse it.  Each case runs
``backup.verify`` in a subprocess under a memory limit and a timeout, and
asserts exit code 4, one line on stderr, no traceback, and the reason.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from forge import (
    CHRTYPE,
    DIRTYPE,
    LONGLINK,
    LONGNAME,
    MANIFEST_NAME,
    METADATA_NAME,
    REGTYPE,
    BLOCK,
    M,
    base256,
    dir,
    file,
    forge,
    gzip_sealed,
    hardlink,
    header_block,
    long_record,
    padding,
    raw,
    symlink,
)

REPO = Path(__file__).resolve().parent.parent
HAVE_TAR = shutil.which("tar") is not None
MEMORY_LIMIT = 400 << 20  # address space of the verifying process; a good archive needs about 250 MB
TIMEOUT = 60


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def verify_cli(path, *, timeout=TIMEOUT, env=None, code=None, task=("backup.verify",)):
    """backup.verify (or ``task``) in a process of its own, memory-limited;
    it must finish."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    argv = ["invoke", "-r", str(REPO), *task, "--backup-path", str(path)]
    args = [sys.executable, "-m", *argv]
    if code is not None:  # a prelude, run in the same process first (limits lowered for a test)
        args = [sys.executable, "-c", code + "\nimport sys\nfrom invoke.main import program\nsys.argv = %r\nprogram.run()" % argv]
    proc = subprocess.run(args, cwd=os.path.dirname(path), env=full_env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limit_memory)
    proc.archive = str(path)
    return proc


def assert_refused(proc, reason: str):
    """Exit 4, one line on stderr, no traceback, and the reason on stdout."""
    out, err = proc.stdout, proc.stderr
    assert "Traceback" not in out + err, err
    assert proc.returncode == 4, (proc.returncode, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(reason, out.replace(proc.archive, "<archive>")), out


# ------------------------------------------------------------ the cases

def _neg(n=-512):
    return base256(n)


def _l(payload: bytes, **kw) -> bytes:
    return long_record(LONGNAME, payload, **kw)


def _k(payload: bytes, **kw) -> bytes:
    return long_record(LONGLINK, payload, **kw)


def _hidden_member() -> bytes:
    """A whole tar member, to hide after a header whose size tools skip."""
    return header_block(b"evil", REGTYPE, size=6) + b"pwned\n" + padding(6)


_X_SHA = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"  # sha256(b"x")
_X_RECORD = {"path": "a", "type": "file", "mode": 0o644, "mtime_ns": 0, "size": 1, "sha256": _X_SHA}

# name -> (members, forge keywords, what the refusal says)
CASES = {
    # Every read makes progress; every size is checked.
    "negative_size": ([file("a", b"", size_field=_neg())], {}, "a negative size"),
    "negative_size_gz": ([file("a", b"", size_field=_neg())], {"compression": "gz"}, "a negative size"),
    "negative_size_tool_member": ([file(MANIFEST_NAME, b"", size_field=_neg())], {}, "a negative size"),
    "negative_size_long_name": ([raw(_l(b"n" * 150 + b"\0", size_field=_neg(-512))), file("b", b"x")], {}, "a negative size"),
    "negative_size_dir": ([dir("d", size_field=_neg())], {}, "a negative size"),
    "size_past_the_end": ([file("a", b"x", size_field=base256(1 << 80))], {}, "more than any tar can read"),
    "size_past_the_end_gz": ([file("a", b"x", size_field=base256(1 << 40))], {"compression": "gz"}, "truncated"),
    "size_field_not_canonical": ([file("a", b"x", size_field=b"  1 \0\0\0\0\0\0\0\0")], {}, "a size field in a form it never writes"),
    "long_name_too_long": ([file("a/" * 40_000 + "f", b"x")], {}, "a long-name record of 80002 bytes"),
    "long_name_negative_size_tool": ([raw(_l(MANIFEST_NAME.encode() + b"\0", size_field=_neg())), file("b", b"x")], {}, "a negative size"),
    "long_link_too_long": ([symlink("l", "t" * 70_000)], {}, "a long-link record of 70001 bytes"),
    # The same member list for every tar.
    "dir_with_data": ([dir("d", size=len(_hidden_member()), data=_hidden_member())], {}, "directory with a size of 1024 bytes"),
    "symlink_with_data": ([symlink("l", "a", size=len(_hidden_member()), data=_hidden_member())], {}, "symlink with a size of 1024 bytes"),
    "hardlink_with_data": ([file("a", b"1"), hardlink("h", "a", size=len(_hidden_member()), data=_hidden_member())], {}, "hard link with a size of 1024 bytes"),
    "device_with_data": ([M("dev", CHRTYPE, size=BLOCK, data=bytes(BLOCK), record=False)], {}, "device or FIFO"),
    "repeated_long_name": ([file("g" * 150, b"x", before=_l(b"e" * 150 + b"\0"))], {}, "two long-name records"),
    "repeated_long_link": ([file("a", b"1"), symlink("l", "t" * 150, before=_k(b"/etc/passwd" * 20 + b"\0"))], {}, "two long-link records"),
    "two_long_names_in_a_row": ([file("a", b"1"), raw(_l(b"x" * 150 + b"\0") + _l(b"y" * 150 + b"\0"))], {}, "two long-name records"),
    "long_name_before_a_long_name_member": ([file("a", b"1"), raw(_l(b"x" * 150 + b"\0")), file("y" * 150, b"2")], {}, "two long-name"),
    "long_name_with_nul": ([file("a" * 101, b"1", long_names=False, before=_l(b"a" * 101 + b"\0hidden\0"))], {}, "a NUL inside"),
    "long_name_empty": ([file("x", b"1", before=_l(b""))], {}, "a long-name record of 0 bytes"),
    "long_name_on_end_marker": ([file("a", b"1"), raw(_l(b"z" * 150 + b"\0"), record=False)], {"tool_members": False}, "no member after it"),
    "gnu_prefix_bytes": ([file("b", b"x", patch={345: b"evil"})], {}, "name prefix in a tar header"),
    "ustar_prefix": ([file("b", b"x", patch={257: b"ustar\x0000", 345: b"a"}, record={"path": "a/b", "type": "file", "mode": 420, "mtime_ns": 0, "size": 1, "sha256": _X_SHA})], {}, "not in GNU format"),
    "v7_header": ([file("b", b"x", patch={257: bytes(8)})], {}, "not in GNU format"),
    "uname_set": ([file("b", b"x", patch={265: b"root"})], {}, "name prefix in a tar header"),
    "checksum_field_odd_first": ([file("b", b"x", patch={148: b"%07o\0" % 0})], {}, "not a gzip, zstd or tar archive"),
    "checksum_field_odd": ([file("a", b"1"), file("b", b"x", patch={148: b"%07o\0" % 0})], {}, "damaged tar header .bad checksum"),
    "size_past_the_end_of_the_file": ([file("a", b"x", size=1 << 20)], {}, "past the end of the archive"),
    "link_target_on_file": ([file("b", b"x", linkname="elsewhere")], {}, "file with a link target"),
    "empty_name": ([file("", b"x", record=False)], {}, "not a plain relative path"),
    "dot_name": ([dir(".", record=False)], {}, "not a plain relative path"),
    "dot_slash_name": ([file("./a", b"x", record={"path": "a", "type": "file", "mode": 420, "mtime_ns": 0, "size": 1, "sha256": _X_SHA})], {}, "not a plain relative path"),
    "double_slash_name": ([dir("d"), file("d//a", b"x", record={"path": "d/a", "type": "file", "mode": 420, "mtime_ns": 0, "size": 1, "sha256": _X_SHA})], {}, "not a plain relative path"),
    "dir_without_slash": ([M("d", DIRTYPE, mode=0o755), file("d/a", b"x")], {}, "does not end in exactly one '/'"),
    "empty_symlink_target": ([symlink("l", "")], {}, "symlink with an empty target"),
}
for _flag in (b"x", b"g", b"X", b"S", b"M", b"V", b"D", b"N", b"A", b"7", b"\0", b"I", b"Z", b"8"):
    # Recorded in the manifest as a file: tarfile and GNU tar read '\0' and '7' as files too.
    CASES[f"type_{_flag.hex()}"] = ([M("a", _flag, data=b"x", size=1, record=_X_RECORD)], {}, re.escape(f"tar type {_flag.decode('latin-1')!r}"))


def _forge_case(tmp_path, case):
    members, kw, reason = CASES[case]
    suffix = {"gz": ".tar.gz", "zst": ".tar.zst"}.get(kw.get("compression", "none"), ".tar")
    path = tmp_path / f"{case}{suffix}"
    forge(path, members, **kw)
    return path, reason


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_header_is_refused(tmp_path, case):
    path, reason = _forge_case(tmp_path, case)
    assert_refused(verify_cli(path), reason)


@pytest.mark.parametrize("case", ["negative_size_tool_member", "negative_size_long_name", "dir_with_data", "repeated_long_name",
                                  "long_name_too_long", "type_78", "dot_slash_name", "gnu_prefix_bytes", "size_past_the_end_of_the_file"])
def test_hostile_header_restores_nothing(tmp_path, case):
    """The same refusals from a restore, which extracts as it reads: exit
    4, one line, and nothing left behind."""
    path, reason = _forge_case(tmp_path, case)
    target = tmp_path / "target"
    proc = verify_cli(path, task=("backup.restore", "--target-path", str(target)))
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 4 and "Traceback" not in out + err and len(err.strip().splitlines()) == 1, (out, err)
    assert re.search(reason, err.replace(str(path), "<archive>")), err
    assert not target.exists()
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]


# ------------------------------------------------------- bounded memory


def _gz_file(path, chunks):
    path.write_bytes(gzip_sealed(chunks))
    return path


def test_members_named_like_the_tools_own_are_not_piled_up(tmp_path):
    """Hundreds of MB of members named like the manifest, from an archive of
    a few hundred KB: at most the last two are held, so the second is
    refused as a duplicate instead of all of them landing in memory."""
    body = bytes(256 << 10)
    for names in ([MANIFEST_NAME], [MANIFEST_NAME, METADATA_NAME]):
        members = [header_block(name.encode(), REGTYPE, mode=0o600, size=len(body)) + body for name in names]
        path = _gz_file(tmp_path / f"flood{len(names)}.tar.gz", (members[i % len(members)] for i in range(1600)))
        assert path.stat().st_size < 1 << 20
        assert_refused(verify_cli(path), "appears twice")


def test_data_after_a_directory_header_is_not_read_into_memory(tmp_path):
    data = bytes(300 << 20)
    path = _gz_file(tmp_path / "bigdir.tar.gz", [header_block(b"d/", DIRTYPE, mode=0o755, size=len(data)), data])
    assert_refused(verify_cli(path), "directory with a size of")


def test_many_members_hit_the_documented_limit(tmp_path):
    """Per-path state is bounded (MAX_ENTRIES, MAX_PATH_BYTES); the limits
    are lowered here so that a small archive reaches them."""
    members = [dir("d")] + [file(f"d/f{i:05d}") for i in range(3000)]
    path = tmp_path / "many.tar.gz"
    forge(path, members, compression="gz")
    assert verify_cli(path).returncode == 0
    assert_refused(verify_cli(path, code="import backup_lib.extract as x; x.MAX_ENTRIES = 2000"), "more than 2,000 paths")
    # Folders a deep path implies count too.
    deep = [file("/".join(f"{i:03d}" for _ in range(300)) + f"/{i}", b"x") for i in range(20)]
    path = tmp_path / "deep.tar.gz"
    forge(path, deep, compression="gz")
    assert verify_cli(path).returncode == 0
    assert_refused(verify_cli(path, code="import backup_lib.extract as x; x.MAX_PATH_BYTES = 1 << 20"), "MiB of path names")


def test_a_deep_path_costs_linear_time(tmp_path):
    """A path of 2,000 components (within PATH_MAX) whose folders are not
    members: every folder is implied once, not every prefix per member."""
    top = "/".join(["a"] * 2000)
    members = [file(f"{top}/f{i}", b"x") for i in range(200)]
    path = tmp_path / "deep.tar.gz"
    forge(path, members, compression="gz")
    proc = verify_cli(path, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------ restorable on this system


@pytest.mark.parametrize("case", ["component", "path", "link_target"])
def test_what_this_system_cannot_create_fails_verification(tmp_path, case):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    if case == "component":
        members = [file("x" * (name_max + 1), b"1")]
        reason = f"cannot be restored on this system: a name of {name_max + 1} bytes"
    elif case == "path":
        part = "p" * (name_max - 5)
        n = path_max // len(part) + 1
        members = [dir("/".join([part] * k)) for k in range(1, n)] + [file("/".join([part] * n), b"1")]
        reason = "cannot be restored on this system: a path of"
    else:
        members = [symlink("l", "t/" * (path_max // 2))]
        reason = "cannot be restored on this system: a target of"
    archive = tmp_path / f"{case}.tar"
    forge(archive, members)
    assert_refused(verify_cli(archive), reason)
    target = tmp_path / "target"
    from helpers import run_cli

    code, _, err = run_cli(["backup.restore", "--backup-path", str(archive), "--target-path", str(target)])
    assert code == 4 and "cannot be restored on this system" in err and "Traceback" not in err
    assert not target.exists()
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]


# ------------------------------------------------------- issue 11: 15, 17


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.zst", ".tar"])
@pytest.mark.parametrize("size", [3000, 100, 0])
def test_random_bytes_are_not_an_archive(tmp_path, suffix, size):
    data = bytearray(random.Random(size).randbytes(size))
    if data:
        data[0] = 0x42  # neither gzip's nor zstd's magic
    path = tmp_path / f"random{suffix}"
    path.write_bytes(bytes(data))
    assert_refused(verify_cli(path), "<archive>: not a gzip, zstd or tar archive")


def test_dotdot_is_refused_by_the_name_check_alone(tmp_path):
    """Verification extracts nothing, so only the name check can refuse
    the member; the manifest lists it like any other."""
    from backup_lib.errors import UnsafeArchiveError
    from backup_lib.extract import _components, scan_archive

    for name in ("../x", "a/../../x", "a/.."):
        with pytest.raises(UnsafeArchiveError, match="contains '..'"):
            _components(name)
    path = tmp_path / "dotdot.tar"
    forge(path, [dir("a"), file("a/../../outside", b"x")])
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UnsafeArchiveError, match=r"member 'a/../../outside' contains '\.\.'"):
        scan_archive(str(path))
    assert sorted(os.listdir(tmp_path)) == before
    assert_refused(verify_cli(path), r"contains '\.\.'")


def test_changed_content_is_caught_by_the_member_sha256(tmp_path):
    """The manifest, project_hash and every seal agree with each other;
    only the comparison of the member's own SHA-256 sees the change."""
    import hashlib

    from backup_lib.project import verify_one

    claimed = hashlib.sha256(b"original\n").hexdigest()
    rec = {"path": "a.txt", "type": "file", "mode": 0o644, "mtime_ns": 0, "size": 9, "sha256": claimed}
    path = tmp_path / "changed.tar"
    forge(path, [file("a.txt", b"tampered\n", record=rec), file("b.txt", b"same\n")])
    report = verify_one(str(path))
    assert report.errors == ("member 'a.txt' does not match its SHA-256 in the manifest",)


# ------------------------------------------ differential: every tar agrees

_BASE_MEMBERS = [
    ("dir", "d"), ("file", "d/a", b"alpha\n"), ("file", "d/" + "n" * 120, b"long name\n"),
    ("symlink", "d/l", "a"), ("symlink", "d/ll", "t" * 130), ("hardlink", "d/h", "d/a"), ("file", "e", b""),
]


def _base_members(patch_at=None, patch=None):
    out = []
    for i, spec in enumerate(_BASE_MEMBERS):
        kw = {"patch": patch} if i == patch_at else {}
        kind, name, extra = spec[0], spec[1], spec[2] if len(spec) > 2 else None
        out.append({"dir": lambda: dir(name, **kw), "file": lambda: file(name, extra, **kw),
                    "symlink": lambda: symlink(name, extra, **kw), "hardlink": lambda: hardlink(name, extra, **kw)}[kind]())
    return out


def _field_value(rng: random.Random, width: int) -> bytes:
    n = rng.choice([0, 1, 0o644, 0o755, 1000, 1_700_000_000, 8**7, 2**33])
    forms = [
        b"%0*o\0" % (width - 1, n % 8 ** (width - 1)), b"%0*o " % (width - 1, n % 8 ** (width - 1)),
        (b"%o" % n).rjust(width - 1, b" ") + b"\0", b"%o\0" % n + b"x" * (width - len(b"%o\0" % n)),
        b"\x80" + n.to_bytes(width - 1, "big"), b"\xff" + (-n % 256 ** (width - 1)).to_bytes(width - 1, "big"),
        bytes(width), b" " * width, b"+" + b"%0*o" % (width - 2, n % 8 ** (width - 2)),
        bytes(rng.randrange(256) for _ in range(width)),
    ]
    return rng.choice(forms)[:width].ljust(width, b"\0")


def _mutation(rng: random.Random, member: int) -> dict:
    name_len = len(os.fsencode(_BASE_MEMBERS[member][1]))
    choice = rng.randrange(8)
    if choice == 0:
        at, width = rng.choice([(100, 8), (108, 8), (116, 8), (136, 12)])  # mode, uid, gid, mtime
        return {at: _field_value(rng, width)}
    if choice == 1:
        return {124: _field_value(rng, 12)}  # size
    if choice == 2:
        return {156: bytes([rng.choice(b"0125\x0034678LKxgXSMVDNA")])}  # type
    if choice == 3 and name_len < 99:  # bytes after the name's NUL
        at = rng.randrange(name_len + 1, 100)
        return {at: bytes([rng.randrange(1, 256)])}
    if choice == 4:  # bytes after the link target's NUL
        return {rng.randrange(160, 257): bytes([rng.randrange(1, 256)])}
    if choice == 5:
        return {257: rng.choice([b"ustar\x0000", b"ustar \0\0", bytes(8), b"ustar  \0", b"gnutar \0"])}
    if choice == 6:  # prefix, owner names, device numbers, GNU's extra fields
        return {rng.randrange(265, 512): bytes([rng.randrange(1, 256)])}
    return {rng.randrange(0, 512): bytes([rng.randrange(256)])}  # anywhere


def _tree_from_reader(path):
    from backup_lib.archive import ArchiveReader

    tree = {}
    for ti, fobj in ArchiveReader(str(path)):
        if ti.isdir():
            tree[ti.name] = ("dir",)
        elif ti.issym():
            tree[ti.name] = ("symlink", ti.linkname)
        elif ti.islnk():
            tree[ti.name] = ("file", tree[ti.linkname][1], ti.linkname)
        else:
            tree[ti.name] = ("file", fobj.read(), None)
    return tree


def _tree_from_tarfile(path):
    tree = {}
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        assert [m.name for m in members[-2:]] == [MANIFEST_NAME, METADATA_NAME]
        for m in members[:-2]:
            if m.isdir():
                tree[m.name] = ("dir",)
            elif m.issym():
                tree[m.name] = ("symlink", m.linkname)
            elif m.islnk():
                tree[m.name] = ("file", tree[m.linkname][1], m.linkname)
            elif m.type == tarfile.REGTYPE:
                tree[m.name] = ("file", tf.extractfile(m).read(), None)
            else:
                tree[m.name] = ("other", m.type)
    return tree


def _tree_from_gnu_tar(path, out):
    out.mkdir()
    proc = subprocess.run(["tar", "-xf", str(path), "-C", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    tree, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, out)
            if rel in (MANIFEST_NAME, METADATA_NAME):
                continue
            if os.path.islink(full):
                tree[rel] = ("symlink", os.readlink(full))
            elif os.path.isdir(full):
                tree[rel] = ("dir",)
            else:
                tree[rel] = ("file", open(full, "rb").read())
                inodes.setdefault(os.stat(full).st_ino, []).append(rel)
    return tree, sorted(sorted(group) for group in inodes.values() if len(group) > 1)


@pytest.mark.skipif(not HAVE_TAR, reason="GNU tar not installed")
def test_what_verifies_is_the_same_tree_to_gnu_tar_and_tarfile(tmp_path):
    """Random changes to the headers of an archive (every seal recomputed):
    whatever still verifies must be, to GNU tar and to tarfile, the very
    member list and tree that the toolkit reads."""
    from backup_lib.project import verify_one

    rng = random.Random(10)
    accepted = 0
    for i in range(-1, 240):
        member = rng.randrange(len(_BASE_MEMBERS))
        patch = _mutation(rng, member) if i >= 0 else None
        path = tmp_path / f"m{i}.tar"
        forge(path, _base_members(member, patch))
        if not verify_one(str(path)).ok:
            continue
        accepted += 1
        ours = _tree_from_reader(path)
        assert _tree_from_tarfile(path) == ours, (i, member, patch)
        gnu, hardlinks = _tree_from_gnu_tar(path, tmp_path / f"gnu{i}")
        assert gnu == {name: value[:2] for name, value in ours.items()}, (i, member, patch)
        assert hardlinks == sorted(sorted([name, value[2]]) for name, value in ours.items() if len(value) > 2 and value[2]), (i, member, patch)
        shutil.rmtree(tmp_path / f"gnu{i}")
    assert accepted > 20  # mode, owner and time fields, bytes after a name's NUL: still the same tree


def _gnu_names(path) -> list[str]:
    proc = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True)
    return [n.rstrip("/") for n in proc.stdout.splitlines()]


def _tarfile_names(path) -> list[str]:
    with tarfile.open(path) as tf:
        return [m.name for m in tf.getmembers()]


@pytest.mark.skipif(not HAVE_TAR, reason="GNU tar not installed")
@pytest.mark.parametrize("case, name, gnu_sees, tarfile_sees", [
    ("dir_with_data", "evil", True, True),
    ("symlink_with_data", "evil", False, True),  # the tars disagree among themselves
    ("hardlink_with_data", "evil", True, True),
    ("gnu_prefix_bytes", "evil/b", False, True),
    ("repeated_long_name", "e" * 150, False, True),  # tarfile takes the first record, GNU tar the last
])
def test_what_is_refused_means_something_else_to_another_tar(tmp_path, case, name, gnu_sees, tarfile_sees):
    """Why these are refused: a member that the manifest does not list, as
    GNU tar or tarfile read the archive."""
    members, kw, _reason = CASES[case]
    path = tmp_path / f"{case}.tar"
    forged = forge(path, members, **kw)
    assert name not in [json.loads(line)["path"] for line in forged.manifest.splitlines()]
    assert (name in _gnu_names(path)) == gnu_sees
    assert (name in _tarfile_names(path)) == tarfile_sees


@pytest.mark.skipif(not HAVE_TAR, reason="GNU tar not installed")
def test_two_long_link_records_mean_two_targets(tmp_path):
    members, kw, _reason = CASES["repeated_long_link"]
    path = tmp_path / "k.tar"
    forge(path, members, **kw)
    with tarfile.open(path) as tf:
        assert tf.getmember("l").linkname.startswith("/etc/passwd")
    assert "l -> " + "t" * 150 in subprocess.run(["tar", "-tvf", str(path)], capture_output=True, text=True).stdout


def test_the_tools_own_files_in_a_project_come_back(tmp_path):
    """A project's own backup_manifest.jsonl and backup_metadata.json, last
    in tree order, right before the tool's two: both still reach the caller
    as project files, while at most two members are held at a time."""
    from backup_lib.archive import ArchiveReader
    from backup_lib.project import create_backup

    root = tmp_path / "p"
    root.mkdir()
    (root / "a.txt").write_text("a")
    (root / MANIFEST_NAME).write_text("mine\n")
    (root / METADATA_NAME).write_text('{"mine": true}')
    res = create_backup(str(root), compression="none", backup_dir=str(tmp_path / "bk"))
    reader = ArchiveReader(res.backup_path)
    got = {ti.name: f.read() for ti, f in reader if f is not None}
    assert got == {"a.txt": b"a", MANIFEST_NAME: b"mine\n", METADATA_NAME: b'{"mine": true}'}
    assert json.loads(reader.metadata_bytes)["backup_type"] == "project_full"
    assert reader.problems == []


def test_a_manifest_over_the_limit_says_so(tmp_path):
    path = tmp_path / "big.tar"
    forge(path, [dir("d"), file("d/a", b"x")])
    assert_refused(verify_cli(path, code="import backup_lib.archive.reader as r; r.MANIFEST_LIMIT = 100"),
                   "member 'backup_manifest.jsonl' has [0-9,]+ bytes, over the reader's limit of 100 ")


def _zstd_rle_bomb(tar_head: bytes, zeros: int) -> bytes:
    """A zstd frame by hand: ``tar_head`` in a raw block, then ``zeros``
    bytes as RLE blocks of 4 bytes for 128 KiB each (a ratio of 32,768:1),
    with the toolkit's trailing seal."""
    import hashlib

    from forge import ZSTD_SEAL_MAGIC

    frame = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0x00, 0x38]))  # no size, no checksum; a 128 KiB window
    frame += (len(tar_head) << 3).to_bytes(3, "little") + tar_head  # a raw block
    block = 128 << 10
    while zeros:
        n = min(block, zeros)
        zeros -= n
        frame += ((n << 3) | (1 << 1) | (0 if zeros else 1)).to_bytes(3, "little") + b"\0"
    return bytes(frame) + ZSTD_SEAL_MAGIC + hashlib.sha256(frame).digest()


def test_a_zstd_bomb_is_decompressed_in_bounded_pieces(tmp_path):
    """600 MB of zeros from a 20 KB file: the decompressor must never be
    handed input that expands past a few MiB at once."""
    size = 600 << 20
    path = tmp_path / "bomb.tar.zst"
    path.write_bytes(_zstd_rle_bomb(header_block(b"a", REGTYPE, size=size), size + 2 * BLOCK))
    assert path.stat().st_size < 32 << 10
    assert_refused(verify_cli(path), "no manifest and metadata at its end")


def test_include_selection_is_the_same_and_linear():
    """--include is decided once per folder, from the nearest folder above:
    the same answers as trying every prefix of every path, which cost
    quadratic time on deep paths."""
    from backup_lib.extract import _selected
    from backup_lib.restore import include_matcher

    rng = random.Random(3)
    names = ["a", "b", "docs", "x.py", "y.txt", "node_modules"]
    for patterns in (["docs/"], ["*.py"], ["a/b/"], ["/b"], ["x.py", "docs/*.txt"], ["**/node_modules/x.py"], ["a/**/y.txt"]):
        includes = include_matcher(patterns)
        cache: dict = {}
        for _ in range(400):
            parts = [rng.choice(names) for _ in range(rng.randrange(1, 6))]
            is_dir = rng.random() < 0.3
            every_prefix = any(
                includes.excludes(os.fsencode("/".join(parts[:k])), os.fsencode(parts[k - 1]), k < len(parts) or is_dir)
                for k in range(1, len(parts) + 1)
            )
            assert _selected(includes, parts, is_dir, cache) == every_prefix, (patterns, parts, is_dir)
    deep = ["d"] * 2000
    cache = {}
    includes = include_matcher(["nomatch"])
    for i in range(200):
        assert not _selected(includes, deep + [f"f{i}"], False, cache)
    assert len(cache) == 2000
