import json
import os
import subprocess
import tarfile

import pytest

from backup_lib.archive import MANIFEST_NAME, METADATA_NAME, ArchiveReader
from backup_lib.project import create_backup
from conftest import HAVE_TAR, write_tree
from helpers import make_project


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "proj")


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_gnu_tar_lists_and_extracts(project, tmp_path, compression):
    if not HAVE_TAR:
        pytest.skip("GNU tar not installed")
    res = create_backup(str(project), compression=compression)
    suffix = {"gz": ".tar.gz", "zst": ".tar.zst", "none": ".tar"}[compression]
    assert res.backup_path.endswith(suffix)
    out = tmp_path / "gnu"
    out.mkdir()
    flags = {"gz": ["-z"], "zst": ["--zstd"], "none": []}[compression]
    if compression == "zst" and subprocess.run(["zstd", "--version"], capture_output=True).returncode != 0:
        pytest.skip("zstd not installed")
    listing = subprocess.run(["tar", *flags, "-tf", res.backup_path], capture_output=True, text=True, check=True).stdout.split("\n")
    names = [n for n in listing if n]
    assert names[-2:] == [MANIFEST_NAME, METADATA_NAME]
    members = [n.rstrip("/") for n in names[:-2]]
    assert members == sorted(members, key=lambda n: os.fsencode(n).replace(b"/", b"\0"))
    subprocess.run(["tar", *flags, "-xf", res.backup_path, "-C", str(out)], check=True)
    assert (out / "app" / "models.py").read_bytes() == (project / "app" / "models.py").read_bytes()
    assert os.readlink(out / "models_link.py") == "app/models.py"
    meta = json.loads((out / METADATA_NAME).read_text())
    assert meta["backup_type"] == "project_full"


def test_selection_in_archive(project):
    res = create_backup(str(project))
    names = {ti.name for ti, _ in ArchiveReader(res.backup_path)}
    assert "app/models.py" in names and "empty" in names and ".gitignore" in names
    for gone in ("app.log", ".env", "app.db", "app.db-wal", ".venv", "node_modules", "app/__pycache__"):
        assert not any(n == gone or n.startswith(gone + "/") for n in names), gone
    assert not any(n == "backups" or n.startswith("backups/") for n in names)  # the toolkit's home holds only its own


def test_a_projects_own_backups_folder_is_kept(tmp_path):
    """A Django app named backups is the project's: its files stay, only the toolkit's paths inside go."""
    root = tmp_path / "site"
    write_tree(root, {"backups/__init__.py": "", "backups/models.py": "class Backup: pass\n", "manage.py": ""})
    res = create_backup(str(root))
    names = {ti.name for ti, _ in ArchiveReader(res.backup_path)}
    assert {"backups", "backups/__init__.py", "backups/models.py"} <= names
    assert not any(n.startswith("backups/project") for n in names)


def test_metadata_fields(project):
    (project / "pyproject.toml").write_text('[project]\nname="demo"\nversion="1.2.3"\n')
    meta = create_backup(str(project), environment=None).metadata
    for key in ("backup_timestamp", "backup_type", "project_root", "total_files", "total_size", "project_hash",
                "file_types", "gitignore_patterns", "excluded_patterns", "compression", "application_version",
                "environment", "database", "format_version", "tool_version", "hostname", "skipped_files", "git"):
        assert key in meta, key
    assert meta["backup_timestamp"].endswith("+00:00")
    assert meta["application_version"] == "1.2.3"
    assert meta["environment"] == "development"
    assert meta["compression"] == "gzip"
    assert meta["file_types"][".py"] == 3
    assert "*.log" in meta["gitignore_patterns"]
    assert ".venv" in meta["excluded_patterns"]
    assert meta["database"]["path"] == "app.db" and meta["database"]["size"] == 116 and len(meta["database"]["hash"]) == 64
    assert meta["git"] is None


def test_environment_and_git_metadata(project, monkeypatch):
    from conftest import git

    git("init", "-q", "-b", "main", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-qm", "x", cwd=project)
    monkeypatch.setenv("APP_ENV", "production")
    meta = create_backup(str(project)).metadata
    assert meta["environment"] == "production"
    assert meta["git"]["branch"] == "main" and len(meta["git"]["commit"]) == 40 and meta["git"]["dirty"] is False


def test_project_hash_ignores_time_and_compression(project):
    a = create_backup(str(project), compression="gz").metadata["project_hash"]
    b = create_backup(str(project), compression="none").metadata["project_hash"]
    assert a == b
    (project / "README.md").write_text("changed\n")
    assert create_backup(str(project)).metadata["project_hash"] != a


def test_manifest_records(project):
    res = create_backup(str(project))
    reader = ArchiveReader(res.backup_path)
    for _ in reader:
        pass
    records = {r["path"]: r for r in map(json.loads, reader.manifest_bytes.decode().splitlines())}
    rec = records["app/models.py"]
    assert rec["type"] == "file" and rec["size"] == os.path.getsize(project / "app/models.py")
    assert rec["mtime_ns"] == os.stat(project / "app/models.py").st_mtime_ns
    import hashlib

    assert rec["sha256"] == hashlib.sha256((project / "app/models.py").read_bytes()).hexdigest()
    assert records["models_link.py"] == {**records["models_link.py"], "type": "symlink", "target": "app/models.py"}
    assert records["empty"]["type"] == "dir"


def test_own_backup_metadata_json_survives(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"backup_metadata.json": '{"mine": true}', "backup_manifest.jsonl": "mine\n", "zzz": "last"})
    res = create_backup(str(root))
    reader = ArchiveReader(res.backup_path)
    got = {ti.name: f.read() for ti, f in reader if f is not None}
    assert got["backup_metadata.json"] == b'{"mine": true}'
    assert got["backup_manifest.jsonl"] == b"mine\n"
    assert json.loads(reader.metadata_bytes)["backup_type"] == "project_full"


def test_large_names_and_long_links_stay_gnu_readable(tmp_path):
    root = tmp_path / "p"
    long_dir = "d" * 120
    write_tree(root, {f"{long_dir}/{'f' * 150}.txt": "x"})
    os.symlink("t" * 200, root / "longlink")
    res = create_backup(str(root), compression="none")
    with tarfile.open(res.backup_path) as tf:
        names = tf.getnames()
        assert f"{long_dir}/{'f' * 150}.txt" in names
        assert tf.getmember("longlink").linkname == "t" * 200


def test_file_changing_while_read_is_reported(tmp_path):
    import threading

    root = tmp_path / "p"
    write_tree(root, {"stable.txt": "s"})
    busy = root / "growing.log"
    busy.write_bytes(os.urandom(40 << 20))
    stop = threading.Event()

    def append():
        with open(busy, "ab") as fh:
            while not stop.is_set():
                fh.write(b"x" * 4096)
                fh.flush()

    t = threading.Thread(target=append)
    t.start()
    try:
        meta = create_backup(str(root), compression="none").metadata
    finally:
        stop.set()
        t.join()
    assert meta["changed_files"] == ["growing.log"]
    from backup_lib.project import verify_one

    assert verify_one(create_backup(str(root), compression="none").backup_path).ok


def test_progress_only_on_a_terminal():
    import io

    from backup_lib.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = Progress("backup", stream=stream, delay=0)
        p(1, 5_000_000)
        p.done()
    assert "1 files, 5.0 MB" in tty.getvalue() and tty.getvalue().endswith("\n")
    assert pipe.getvalue() == ""


def test_fast_headers_are_byte_identical_to_tarfile():
    import random

    from backup_lib.archive.tar import header as _header

    rng = random.Random(5)
    names = ["a", "dir/", "x" * 100, "y" * 101, "z" * 99, "w" * 97, "é" * 60, "bad\udcff\udcfename", "d/" * 80 + "f", "-dash", "new\nline"]
    for i in range(3000):
        kind = rng.choice([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE])
        ti = tarfile.TarInfo(rng.choice(names) + str(i))
        ti.type = kind
        ti.mode = rng.choice([0o644, 0o4755, 0o100644, 0o40755]) & 0o7777
        ti.size = rng.choice([0, 1, 511, 8 * 1024**3 + 5, 2**40]) if kind == tarfile.REGTYPE else 0
        ti.mtime = rng.choice([0, 1700000000, 2**33 + 1])
        ti.uid, ti.gid = rng.choice([0, 1000, 2**21, 65534]), rng.choice([0, 100, 2**22])
        ti.uname = ti.gname = ""
        ti.linkname = rng.choice(["", "t", "z" * 150, "lnk\udcff"]) if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        expected = ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
        got = _header(ti.name, kind, mode=ti.mode, size=ti.size, mtime=ti.mtime, uid=ti.uid, gid=ti.gid, linkname=ti.linkname)
        assert got == expected, (ti.name, kind)


@pytest.mark.parametrize("compression", ["gz", "none"])
def test_members_around_the_read_size_round_trip(tmp_path, compression):
    """Members are cut out of large reads: sizes at and around the read size
    and the block size, in any order, come back byte for byte."""
    from backup_lib.archive import CHUNK
    from backup_lib.extract import scan_archive

    root = tmp_path / "p"
    root.mkdir()
    sizes = [0, 1, 511, 512, 513, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 5]
    rng = __import__("random").Random(7)
    for i, size in enumerate(sizes):
        (root / f"f{i:02d}").write_bytes(rng.randbytes(size))
    res = create_backup(str(root), compression=compression, backup_dir=str(tmp_path / "bk"))
    out = tmp_path / "out"
    out.mkdir()
    scan = scan_archive(res.backup_path, dest=str(out))
    assert scan.errors == []
    for i, size in enumerate(sizes):
        assert (out / f"f{i:02d}").read_bytes() == (root / f"f{i:02d}").read_bytes()


def test_small_member_reads_in_pieces():
    from backup_lib.archive.reader import SmallData as _SmallData

    data = bytes(range(256)) * 40
    got = _SmallData(data)
    pieces = []
    while piece := got.read(1000):
        pieces.append(piece)
    assert b"".join(pieces) == data and [len(p) for p in pieces[:2]] == [1000, 1000]
    whole = _SmallData(data)
    assert whole.read() == data and whole.read() == b""


def test_tar_stream_cut_short_is_truncation(tmp_path):
    import io

    from backup_lib.archive.reader import Source as _Source
    from backup_lib.errors import IntegrityError

    src = _Source(io.BytesIO(b"x" * 1500), "a.tar")
    assert src.read(512) == b"x" * 512 and src.offset == 512
    with pytest.raises(IntegrityError, match="truncated .at byte 1500"):
        src.read(1024)


@pytest.mark.parametrize(
    "text",
    [
        b'{"path": "a"}\n{"path":\n"b"}\n',  # one object over two lines
        b'{"path": "a"} {"path": "b"}\n',  # two on one line
        b'{"path": "a"},{"path": "b"}\n',
        b'[1, 2]\n',
        b'{"path": "a"\n',
        b"\xef\xbb\xbf" + b'{"path": "a"}\n',
    ],
)
def test_manifest_lines_are_each_one_object(text):
    from backup_lib.archive import iter_manifest
    from backup_lib.errors import IntegrityError

    with pytest.raises(IntegrityError):
        list(iter_manifest(text))


def test_manifest_reads_as_json_lines():
    from backup_lib.archive import iter_manifest

    recs = [{"path": "a", "size": 1}, {"path": "é\\n", "x": [1, {"y": None}]}, {}]
    text = b"\n \t\r\n".join(json.dumps(r).encode() for r in recs) + b"\r\n\n"
    assert list(iter_manifest(text)) == recs
    assert list(iter_manifest(b"")) == []


def test_header_numbers_read_like_tarfile():
    from backup_lib.archive.tar import number as _number

    for field in [b"0000644\0", b"00000000000\0", b"  644 \0\0", b"\0" * 8, b"0000644 ", b"644\0junk", b"\x80" + (2**40).to_bytes(11, "big")]:
        assert _number(field) == tarfile.nti(field), field
    with pytest.raises(ValueError):
        _number(b"0009\0\0\0\0")


def test_manifest_over_several_decoded_blocks():
    from backup_lib.archive import CHUNK, iter_manifest
    from backup_lib.errors import IntegrityError

    lines = [json.dumps({"path": f"dir/file_{i}", "n": i, "pad": "x" * (i % 300)}).encode() for i in range(3 * CHUNK // 150)]
    data = b"\n".join(lines) + b"\n"
    assert len(data) > 2 * CHUNK
    assert list(iter_manifest(data)) == [json.loads(line) for line in lines]
    broken = data[: 2 * CHUNK] + b"\n{\n" + data[2 * CHUNK :]
    with pytest.raises(IntegrityError):
        list(iter_manifest(broken))


@pytest.mark.parametrize("compression", ["gz", "none"])
def test_gnu_tar_restores_folder_times(tmp_path, compression):
    """GNU tar sets a folder's time when the member order leaves it: each
    folder's contents must follow it directly, before "a.txt" or "a-b"."""
    if not HAVE_TAR:
        pytest.skip("GNU tar not installed")
    root = tmp_path / "p"
    write_tree(root, {"a/x": "1", "a/sub/y": "2", "a.txt": "3", "a-b/z": "4", "a b/w": "5", "a/sub.txt": "6", "b/": None})
    dirs = ["a", "a/sub", "a-b", "a b", "b"]
    for i, d in enumerate(dirs):
        os.utime(root / d, (1_500_000_000 + i * 1000, 1_500_000_000 + i * 1000))
    res = create_backup(str(root), compression=compression, backup_dir=str(tmp_path / "bk"))
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", *(["-z"] if compression == "gz" else []), "-xf", res.backup_path, "-C", str(out)], check=True)
    got = {d: int((out / d).stat().st_mtime) for d in dirs}
    assert got == {d: 1_500_000_000 + i * 1000 for i, d in enumerate(dirs)}


def test_strict_headers_read_every_header_the_writer_writes_like_tarfile():
    """The parser takes the writer's headers (octal or GNU base-256, long
    names, negative times) and reads each field as tarfile does."""
    import random

    from backup_lib.archive.tar import header as _header
    from backup_lib.archive.tar import parse_header as _parse

    rng = random.Random(11)
    for i in range(2000):
        kind = rng.choice([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE])
        name = rng.choice(["a", "d" * 99, "é" * 30, "x/" * 70 + "y", "bad\udcffname"]) + str(i)
        size = rng.choice([0, 1, 8**11 - 1, 8**11, 2**40]) if kind == tarfile.REGTYPE else 0
        mtime = rng.choice([0, 1_700_000_000, 8**11, -1, -(2**40)])
        uid, gid = rng.choice([0, 1000, 8**7 - 1, 8**7, 2**32 - 1]), rng.choice([0, 8**7])
        link = rng.choice(["t", "z" * 150]) if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        buf = _header(name, kind, mode=0o4755, size=size, mtime=mtime, uid=uid, gid=gid, linkname=link)
        main = buf[-512:]
        got = _parse(main)
        ti = tarfile.TarInfo.frombuf(main, "utf-8", "surrogateescape")
        assert (got.type, got.mode, got.uid, got.gid, got.size, got.mtime) == (ti.type, ti.mode, ti.uid, ti.gid, ti.size, ti.mtime)
        if len(buf) == 512:
            assert (got.name, got.linkname) == (ti.name + ("/" if kind == tarfile.DIRTYPE else ""), ti.linkname)


@pytest.mark.parametrize("patch, kind", [
    ({148: b"0000000\0"}, "checksum"),  # the checksum in a form the writer never uses
    ({257: b"ustar\x0000"}, "format"),  # POSIX magic: a name prefix would count
    ({345: b"x"}, "format"),  # tarfile reads these bytes as a name prefix even under GNU magic
    ({265: b"root"}, "format"),  # GNU tar, as root, takes the owner from here
    ({156: b"x"}, "format"),
    ({100: b"0000644 "}, "format"),  # octal closed by a space: fine for tar, never written
    ({100: b"0100644\0"}, "format"),  # file-type bits in the mode: never written
    ({124: b"\xff" + bytes(11)}, "value"),  # a negative size
    ({108: b"\xff" * 8}, "value"),  # a negative owner
    ({136: b"\x80" + b"\xff" * 11}, "value"),  # a time beyond GNU tar's time_t
])
def test_strict_header_refusals(patch, kind):
    from backup_lib.archive.tar import HeaderError
    from backup_lib.archive.tar import header as _header
    from backup_lib.archive.tar import parse_header as _parse

    block = bytearray(_header("a", tarfile.REGTYPE, mode=0o644, size=1, mtime=1))
    for at, raw in patch.items():
        block[at : at + len(raw)] = raw
    if 148 not in patch:
        block[148:156] = b"        "
        block[148:156] = b"%06o\0 " % sum(block)
    with pytest.raises(HeaderError) as info:
        _parse(bytes(block))
    assert info.value.kind == kind
