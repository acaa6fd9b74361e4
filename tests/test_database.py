import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time

import pytest

from backup_lib.database import db_backup, db_restore, db_verify, locate_database
from backup_lib.errors import DatabaseError, IntegrityError
from backup_lib.project import cleanup_backups, create_backup, list_backups
from backup_lib.sqlite import content_digest
from conftest import write_tree
from helpers import run_cli

ACCOUNTS, START = 50, 1000


def bank(path, wal=True):
    c = sqlite3.connect(path)
    if wal:
        c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    c.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, note TEXT)")
    c.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, START) for i in range(ACCOUNTS)])
    c.commit()
    c.close()


TRANSFERS = """
import random, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
print("ready", flush=True)
n = 0
end = time.time() + float(sys.argv[2])
while time.time() < end:
    a, b = random.sample(range(%d), 2)
    amt = random.randint(1, 50)
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amt, a))
    c.execute("INSERT INTO log (note) VALUES (?)", ("x" * random.randint(1, 300),))
    c.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amt, b))
    c.execute("COMMIT")
    n += 1
print(n, flush=True)
""" % ACCOUNTS


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "shop"
    write_tree(root, {"app.py": "", ".env": "DATABASE_URL=sqlite:///shop.db\n"})
    (root / "instance").mkdir()
    bank(str(root / "instance" / "shop.db"))
    return root


def total(path):
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT sum(balance), count(*) FROM accounts").fetchone()
    finally:
        c.close()


def extract(archive, dest):
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")


def test_backup_while_another_process_commits(proj, tmp_path):
    db = proj / "instance" / "shop.db"
    writer = subprocess.Popen([sys.executable, "-c", TRANSFERS, str(db), "4"], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    results = []
    try:
        for _ in range(5):
            results.append(db_backup(str(proj)))
            time.sleep(0.2)
    finally:
        commits = int(writer.communicate(timeout=60)[0].strip() or 0)
    assert commits > 50, "the writer barely ran; the test proves nothing"
    logs = set()
    for i, res in enumerate(results):
        meta = res.metadata
        assert meta["integrity_check"] == "ok" and meta["journal_mode"] == "wal"
        out = tmp_path / f"x{i}"
        extract(res.backup_path, out)
        assert total(str(out / "shop.db")) == (ACCOUNTS * START, ACCOUNTS)
        logs.add(meta["tables"]["log"])
    assert len(logs) > 1, "every snapshot saw the same state: the writer was held off"


def test_metadata_and_archive_layout(proj):
    res = db_backup(str(proj))
    meta = res.metadata
    assert os.path.basename(res.backup_path).startswith("shop_db_") and res.backup_path.endswith(".tar.gz")
    for key in ("backup_type", "source_path", "sqlite_version", "page_size", "journal_mode", "size", "sha256",
                "integrity_check", "tables", "user_version", "backup_timestamp", "hostname", "environment", "compression"):
        assert key in meta, key
    assert meta["backup_type"] == "database" and meta["source_path"] == "instance/shop.db"
    assert meta["tables"] == {"accounts": ACCOUNTS, "log": 0}
    with tarfile.open(res.backup_path) as tf:
        names = tf.getnames()
    assert names == ["shop.db", "shop.sql", "backup_manifest.jsonl", "backup_metadata.json"]
    res2 = db_backup(str(proj), sql_dump=False, compression="zst")
    assert res2.metadata["sql_dump"] is None and res2.backup_path.endswith(".tar.zst")


def test_restore_round_trip_table_by_table(proj):
    db = str(proj / "instance" / "shop.db")
    before = content_digest(db)
    res = db_backup(str(proj))
    c = sqlite3.connect(db)
    c.execute("UPDATE accounts SET balance = 0")
    c.execute("INSERT INTO log (note) VALUES ('after backup')")
    c.commit()
    c.close()
    out = db_restore(res.backup_path, root=str(proj))
    assert content_digest(db) == before
    assert out.tables == {"accounts": ACCOUNTS, "log": 0}
    # The safety backup holds the state just before the restore, and counts as a backup.
    assert out.safety_backup and os.path.exists(out.safety_backup)
    listed = [b.summary() for b in list_backups(str(proj / "backups" / "db"), kind="db")]
    assert [r["backup_path"] for r in listed if r.get("safety_backup")] == [out.safety_backup]
    code, text, _ = run_cli(["db.list", "--project-root", str(proj)])
    assert "safety backup" in text
    with tarfile.open(out.safety_backup) as tf:
        tf.extractall(proj / "safety", filter="data")
    assert total(str(proj / "safety" / "shop.db")) == (0, ACCOUNTS)
    # WAL mode survives, and no stale side files were left to be applied.
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    c.close()


def test_restore_from_sql(proj):
    db = str(proj / "instance" / "shop.db")
    before = content_digest(db)
    res = db_backup(str(proj))
    os.unlink(db)
    out = db_restore(res.backup_path, root=str(proj), from_sql=True)
    assert out.safety_backup is None and out.from_sql
    assert content_digest(db) == before


HOLD = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE accounts SET balance = balance WHERE id = 0")
print("holding", flush=True)
time.sleep(30)
"""


def test_restore_refuses_a_database_held_by_a_writer(proj):
    db = str(proj / "instance" / "shop.db")
    res = db_backup(str(proj))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, db], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DatabaseError, match="busy"):
            db_restore(res.backup_path, root=str(proj), busy_timeout=0.3)
        code, _, err = run_cli(["db.restore", "--project-root", str(proj), "--backup-path", res.backup_path])
        assert code == 1 and "write transaction" in err
        assert len(list_backups(str(proj / "backups" / "db"), kind="db")) == 1  # no safety backup taken
        out = db_restore(res.backup_path, root=str(proj), busy_timeout=0.3, force=True)
        assert out.safety_backup
    finally:
        holder.kill()
        holder.wait()


def corrupt(path, out):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x10
    with open(out, "wb") as fh:
        fh.write(bytes(data))
    return str(out)


def test_verify_catches_corruption_and_restore_refuses(proj, tmp_path):
    db = str(proj / "instance" / "shop.db")
    good = db_backup(str(proj)).backup_path
    bad = corrupt(good, os.path.join(os.path.dirname(good), "shop_db_20000101_000000.tar.gz"))
    reports = {os.path.basename(r.backup_path): r for r in db_verify(str(proj / "backups" / "db"))}
    assert reports[os.path.basename(good)].ok
    assert not reports["shop_db_20000101_000000.tar.gz"].ok
    before = content_digest(db)
    with pytest.raises(IntegrityError, match="nothing restored"):
        db_restore(bad, root=str(proj), force=True)
    assert content_digest(db) == before
    code, out, err = run_cli(["db.verify", "--project-root", str(proj), "--json"])
    assert code == 4 and "shop_db_20000101_000000.tar.gz" in err
    assert sum(1 for r in json.loads(out) if not r["ok"]) == 1
    code, _, err = run_cli(["db.restore", "--project-root", str(proj), "--backup-path", bad, "--force"])
    assert code == 4 and "Traceback" not in err


def test_verify_checks_row_counts_against_metadata(proj, tmp_path):
    """A backup whose snapshot disagrees with its metadata fails even with valid hashes."""
    from backup_lib.database import _check_extracted
    from backup_lib.extract import ScanResult

    res = db_backup(str(proj))
    work = tmp_path / "w"
    extract(res.backup_path, work)
    meta = dict(res.metadata, tables={"accounts": 1, "log": 0})
    actual = {"shop.db": ("file", res.metadata["size"], bytes.fromhex(res.metadata["sha256"]))}
    if meta.get("sql_dump"):
        actual[meta["sql_dump"]] = ("file", 0, b"")
    scan = ScanResult(res.backup_path, metadata=meta, actual=actual)
    errors = _check_extracted(scan, str(work))
    assert any("row counts" in e for e in errors)


def test_autodetection(tmp_path, monkeypatch):
    root = tmp_path / "p"
    root.mkdir()
    with pytest.raises(DatabaseError, match="no SQLite database found.*--db-path"):
        locate_database(str(root))
    bank(str(root / "one.db"), wal=False)
    assert locate_database(str(root))[0] == str(root / "one.db")
    bank(str(root / "two.sqlite3"), wal=False)
    with pytest.raises(DatabaseError, match="several SQLite databases.*one.db.*two.sqlite3"):
        locate_database(str(root))
    (root / ".env").write_text("SQLALCHEMY_DATABASE_URI='sqlite:///data/app.db'\n")
    (root / "data").mkdir()
    bank(str(root / "data" / "app.db"), wal=False)
    path, how = locate_database(str(root))
    assert path == str(root / "data" / "app.db") and ".env" in how
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{root / 'one.db'}")
    assert locate_database(str(root))[0] == str(root / "one.db")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    with pytest.raises(DatabaseError, match="DATABASE_URL names a postgresql database"):
        locate_database(str(root))  # never the next source in its place
    (root / "fake.db").write_text("not sqlite")
    with pytest.raises(DatabaseError, match="not an SQLite database"):
        locate_database(str(root), str(root / "fake.db"))
    # node_modules, .venv and the backup dirs are never searched.
    monkeypatch.delenv("DATABASE_URL")
    os.unlink(root / ".env")
    for p in ("two.sqlite3", "data/app.db", "fake.db"):
        os.unlink(root / p)
    (root / "node_modules").mkdir()
    bank(str(root / "node_modules" / "x.db"), wal=False)
    assert locate_database(str(root))[0] == str(root / "one.db")


def test_project_backup_leaves_the_database_out(proj):
    db_backup(str(proj))
    (proj / "instance" / "shop.db-journal").write_bytes(b"")
    files = {e for e in create_backup(str(proj), dry_run=True).files}
    assert "app.py" in files
    assert not any(f.startswith("instance/shop.db") for f in files)
    assert not any(f.startswith("backups/") for f in files)
    meta = create_backup(str(proj)).metadata
    assert meta["database"]["path"] == "instance/shop.db" and meta["database"]["size"] > 0


def test_cleanup_counts_safety_backups(proj):
    first = db_backup(str(proj)).backup_path
    time.sleep(1.05)
    out = db_restore(first, root=str(proj))
    res = cleanup_backups(str(proj / "backups" / "db"), kind="db", name="shop", retention_days=30, max_backups=1)
    assert res.deleted == (first,) and os.path.exists(out.safety_backup)


def test_db_tasks(proj):
    code, out, err = run_cli(["db.backup", "--project-root", str(proj), "--json"])
    assert code == 0, err
    meta = json.loads(out)
    assert meta["backup_path"].endswith(".tar.gz") and meta["tables"]["accounts"] == ACCOUNTS
    code, out, _ = run_cli(["db.list", "--project-root", str(proj), "--json"])
    assert json.loads(out)[0]["backup_path"] == meta["backup_path"]
    code, out, _ = run_cli(["db.info", "--project-root", str(proj), "--backup-path", meta["backup_path"]])
    assert "integrity_check: ok" in out
    code, out, _ = run_cli(["db.verify", "--project-root", str(proj)])
    assert code == 0 and out.startswith("ok")
    code, out, err = run_cli(["db.restore", "--project-root", str(proj), "--backup-path", meta["backup_path"]])
    assert code == 0 and "safety backup" in out, err
    code, out, _ = run_cli(["db.cleanup", "--project-root", str(proj), "--dry-run", "--json"])
    assert code == 0 and json.loads(out)["would_delete"] == []
    code, _, err = run_cli(["db.backup", "--project-root", str(proj), "--db-path", "missing.db"])
    assert code == 1 and "does not exist" in err
    code, _, err = run_cli(["db.backup", "--project-root", str(proj / "instance"), "--db-path", "nope/x.db"])
    assert code == 1 and "Traceback" not in err


# ------------------------------------------------ one resolution (issue 11)


def seed_app(root):
    """A tree like the seed Flask app's (orgchart): the database found only as
    the lone *.db under the root (no DATABASE_URL), orgchart.db not ignored."""
    write_tree(root, {
        "app/__init__.py": "from flask import Flask\n",
        "app/models.py": "class Employee: pass\n",
        "app/routes.py": "ROUTES = []\n",
        "app/templates/index.html": "<html></html>\n",
        "app/static/style.css": "body {}\n",
        "scripts/backup_db.py": "print('backup')\n",
        "scripts/backup_project.py": "print('backup')\n",
        "instance/config.py": "SECRET_KEY = 'dev'\n",
        "requirements.txt": "flask\n",
        "run.py": "from app import app\n",
        "README.md": "# orgchart\n",
        ".gitignore": "__pycache__/\n*.pyc\n.env\ninstance/\napp.log\n",
        ".env": "SECRET_KEY=dev\nFLASK_APP=run.py\n",
        "database/": None,
    })
    db = root / "database" / "orgchart.db"
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL, manager_id INTEGER)")
    c.executemany("INSERT INTO employees VALUES (?, ?, ?)", [(i, f"employee {i}", i // 3 or None) for i in range(1, 40)])
    c.commit()
    c.close()
    return db


def dry_run_files(root, *args):
    code, out, err = run_cli(["backup.create", "--project-root", str(root), "--dry-run", "--json", *args])
    assert code == 0, err
    return set(json.loads(out)["files"]), err


def test_project_backup_leaves_out_the_lone_database_and_its_side_files(tmp_path):
    root = tmp_path / "orgchart"
    db = seed_app(root)
    files, _ = dry_run_files(root)
    assert "run.py" in files and "app/models.py" in files
    assert "database/orgchart.db" not in files
    # The application is running: its connection keeps -wal and -shm beside the file.
    app = sqlite3.connect(db)
    try:
        app.execute("INSERT INTO employees (name) VALUES ('new hire')")
        app.commit()
        code, out, err = run_cli(["db.backup", "--project-root", str(root), "--json"])
        assert code == 0, err
        assert json.loads(out)["source_path"] == "database/orgchart.db"  # the same file, by the same rule
        assert os.path.exists(f"{db}-wal") and os.path.exists(f"{db}-shm")
        files, _ = dry_run_files(root)
        assert not [f for f in files if f.startswith("database/")], files
        code, out, err = run_cli(["backup.create", "--project-root", str(root), "--json"])
        assert code == 0, err
        meta = json.loads(out)
        with tarfile.open(meta["backup_path"]) as tf:
            names = tf.getnames()
        assert "run.py" in names and not [n for n in names if n.startswith(("database/", "backups/"))], names
        assert meta["database"]["path"] == "database/orgchart.db"
    finally:
        app.close()


def test_several_candidate_databases_are_all_left_out_with_one_warning(tmp_path):
    root = tmp_path / "orgchart"
    seed_app(root)
    bank(str(root / "legacy.sqlite"), wal=False)
    (root / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not sqlite")  # not a SQLite file: not a candidate
    code, _, err = run_cli(["db.backup", "--project-root", str(root)])
    assert code == 1 and "several SQLite databases" in err and "database/orgchart.db" in err and "legacy.sqlite" in err
    assert "Thumbs.db" not in err
    files, err = dry_run_files(root)
    assert "database/orgchart.db" not in files and "legacy.sqlite" not in files
    assert "Thumbs.db" in files and "run.py" in files
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "database/orgchart.db" in warnings[0] and "legacy.sqlite" in warnings[0]
    files, _ = dry_run_files(root, "--include", "legacy.sqlite")
    assert "legacy.sqlite" in files and "database/orgchart.db" not in files
    # Once the database is named, only it is left out, as the db tasks take it.
    (root / ".env").write_text("DATABASE_URL=sqlite:///database/orgchart.db\n")
    files, err = dry_run_files(root)
    assert "legacy.sqlite" in files and "database/orgchart.db" not in files and "warning" not in err
    code, out, err = run_cli(["db.backup", "--project-root", str(root), "--json"])
    assert code == 0 and json.loads(out)["source_path"] == "database/orgchart.db", err


UNSUPPORTED = [  # (PostgreSQL URLs are backed up: tests/test_postgres_tasks.py)
    ("mysql://shop:s3cr3t@localhost/shop", "mysql"),
    ("mysql+pymysql://shop:s3cr3t@localhost/shop", "mysql+pymysql"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
    ("oracle+cx://shop:s3cr3t@host/shop", "oracle"),
    ("s3cr3t-not-a-url", "not a database URL"),
]


@pytest.mark.parametrize("url,needle", UNSUPPORTED)
@pytest.mark.parametrize("where", ["environment", ".env"])
def test_a_url_naming_another_database_is_an_error_not_another_file(tmp_path, monkeypatch, url, needle, where):
    root = tmp_path / "shop"
    write_tree(root, {"app.py": ""})
    bank(str(root / "stray.db"), wal=False)  # the lone *.db: never taken in the URL's place
    if where == "environment":
        monkeypatch.setenv("DATABASE_URL", url)
        (root / ".env").write_text("SQLALCHEMY_DATABASE_URI=sqlite:///stray.db\n")  # DATABASE_URL comes first
        variable = "$DATABASE_URL"
    else:
        (root / ".env").write_text(f"SQLALCHEMY_DATABASE_URI={url}\n")
        variable = "SQLALCHEMY_DATABASE_URI in .env"
    (tmp_path / "x.tar.gz").write_bytes(b"")  # the database is resolved before the archive is read
    for args in (["db.backup"], ["db.restore", "--backup-path", str(tmp_path / "x.tar.gz")]):
        code, out, err = run_cli([*args, "--project-root", str(root)])
        assert code == 1, (args, err)
        assert variable in err and needle in err and "SQLite" in err, err
        assert "s3cr3t" not in err and "s3cr3t" not in out
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (root / "backups").exists()
    # A project backup is not held up by it, and leaves nothing out for it.
    files, err = dry_run_files(root)
    assert "stray.db" in files and "warning" not in err


def test_database_urls_are_parsed_without_credentials():
    from backup_lib.dbpath import parse_database_url

    assert parse_database_url("sqlite:///app.db").path == "app.db"
    assert parse_database_url("sqlite:////srv/app.db").path == "/srv/app.db"
    assert parse_database_url("sqlite+pysqlite:///data/app%20x.db?timeout=5").path == "data/app x.db"
    assert parse_database_url("'sqlite:///quoted.db'").path == "quoted.db"
    assert parse_database_url("sqlite:///file:data.db?mode=ro&uri=true").path == "data.db"
    assert parse_database_url("sqlite:///file:mem?mode=memory&uri=true").path is None
    pg = parse_database_url("postgres://u:pw@h/d")
    assert (pg.engine, pg.scheme, pg.path) == ("postgresql", "postgres", None)
    assert "pw" not in repr(pg)
    assert parse_database_url("sqlite://").engine == "sqlite" and parse_database_url("sqlite://").path is None
    assert parse_database_url("app.db").engine is None


def test_empty_database_file_is_backed_up_with_a_warning(tmp_path):
    root = tmp_path / "p"
    write_tree(root, {"app.py": "", "data/": None})
    (root / "data" / "empty.db").write_bytes(b"")
    code, out, err = run_cli(["db.backup", "--project-root", str(root), "--db-path", "data/empty.db"])
    assert code == 0, err
    assert "0 tables" in out
    assert "warning:" in err and "empty" in err and "data/empty.db" in err


def test_busy_restore_names_the_processes_holding_the_database(proj):
    db = str(proj / "instance" / "shop.db")
    res = db_backup(str(proj))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, db], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DatabaseError, match=f"pid {holder.pid} .*python"):
            db_restore(res.backup_path, root=str(proj), busy_timeout=0.2)
        code, out, err = run_cli(["db.restore", "--project-root", str(proj), "--backup-path", res.backup_path, "--force", "--json"])
        assert code == 0, err
        data = json.loads(out)
        assert data["forced_while_busy"] and holder.pid in [h["pid"] for h in data["open_by"]]
        warning = [line for line in err.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1 and f"pid {holder.pid}" in warning[0] and "lost" in warning[0]
    finally:
        holder.kill()
        holder.wait()


def test_help_says_force_loses_a_writers_commit():
    from helpers import REPO, run_subprocess

    proc = run_subprocess(["--help", "db.restore"], cwd=REPO)
    assert "lost" in " ".join(proc.stdout.split())


# ------------------------------------------- the restore path's own checks


def damaged_index_db(path):
    """A database whose index disagrees with its table in one value: the hash
    and the row counts are those of the file, and only integrity_check sees it
    (quick_check does not)."""
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    c.execute("CREATE INDEX accounts_name ON accounts(name)")
    c.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, f"name-{i:05d}") for i in range(60)])
    c.commit()
    root_page, = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'accounts_name'").fetchone()
    page_size, = c.execute("PRAGMA page_size").fetchone()
    c.close()
    data = bytearray(open(path, "rb").read())
    start = (root_page - 1) * page_size
    at = data.index(b"name-00042", start, start + page_size)
    data[at + len(b"name-0004")] = ord("9")  # the index entry now says name-00049
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    c = sqlite3.connect(path)
    try:
        assert c.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
        counts = {"accounts": c.execute("SELECT count(*) FROM accounts").fetchone()[0]}
        dump = "\n".join(c.iterdump()) + "\n"
    finally:
        c.close()
    return bytes(data), counts, dump.encode()


def forge_db_backup(archive, db_bytes, counts, dump):
    """A database backup written by hand, every hash and seal computed."""
    import hashlib

    from forge import file, forge

    extra = {
        "backup_type": "database", "source_path": "instance/shop.db", "found_by": "db.path", "database_file": "shop.db",
        "sql_dump": "shop.sql", "sqlite_version": sqlite3.sqlite_version, "page_size": 4096, "journal_mode": "delete",
        "user_version": 0, "size": len(db_bytes), "sha256": hashlib.sha256(db_bytes).hexdigest(), "integrity_check": "ok",
        "tables": counts, "safety_backup": False,
    }
    return forge(str(archive), [file("shop.db", db_bytes), file("shop.sql", dump)], compression="gz", extra_metadata=extra)


def test_a_snapshot_failing_integrity_check_fails_verify_and_restore(proj, tmp_path):
    db = str(proj / "instance" / "shop.db")
    before = content_digest(db)
    db_bytes, counts, dump = damaged_index_db(str(tmp_path / "damaged.db"))
    bdir = proj / "backups" / "db"
    bdir.mkdir(parents=True)
    bad = bdir / "shop_db_20260101_000000.tar.gz"
    forge_db_backup(bad, db_bytes, counts, dump)
    # The archive itself is sound: the project-level verification passes it.
    from backup_lib.project import verify_one

    assert verify_one(str(bad)).ok
    [report] = db_verify(str(bdir), [str(bad)])
    assert not report.ok and any("integrity_check" in e for e in report.errors), report.errors
    code, out, err = run_cli(["db.verify", "--project-root", str(proj), "--json"])
    assert code == 4 and "integrity_check" in out, (out, err)
    code, _, err = run_cli(["db.restore", "--project-root", str(proj), "--backup-path", str(bad), "--force"])
    assert code == 4 and "integrity_check" in err and "nothing restored" in err, err
    assert content_digest(db) == before
    assert [p.name for p in bdir.iterdir() if not p.name.endswith(".index.json")] == [bad.name]  # no safety backup taken


READER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN")
c.execute("SELECT count(*) FROM accounts").fetchone()  # a read transaction: the -wal cannot be checkpointed past it
print("reading", flush=True)
time.sleep(60)
"""


def test_restore_never_lets_a_stale_wal_replay_over_the_restored_file(proj):
    db = str(proj / "instance" / "shop.db")
    backup = db_backup(str(proj))
    before = content_digest(db)
    reader = subprocess.Popen([sys.executable, "-c", READER, db], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        c = sqlite3.connect(db)
        c.execute("UPDATE accounts SET balance = 0")
        c.executemany("INSERT INTO log (note) VALUES (?)", [("after the backup",)] * 200)
        c.commit()
        c.close()
        assert os.path.getsize(db + "-wal") > 0, "the old database has no -wal: the test proves nothing"
        db_restore(backup.backup_path, root=str(proj), busy_timeout=0.2)
        assert content_digest(db) == before
        assert total(db) == (ACCOUNTS * START, ACCOUNTS)
        c = sqlite3.connect(db)
        try:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert c.execute("SELECT count(*) FROM log").fetchone()[0] == 0
        finally:
            c.close()
    finally:
        reader.kill()
        reader.wait()


def test_db_url_names_a_sqlite_file_for_every_task_and_not_together_with_db_path(tmp_path, monkeypatch):
    root = tmp_path / "p"
    write_tree(root, {"app.py": "", "data/": None})
    bank(str(root / "data" / "main.db"), wal=False)
    bank(str(root / "other.db"), wal=False)  # two candidates: only db.url says which
    monkeypatch.setenv("DATABASE_URL", "sqlite:///other.db")  # db.url wins over it
    monkeypatch.setenv("INVOKE_DB_URL", "sqlite:///data/main.db")
    code, out, err = run_cli(["db.backup", "--project-root", str(root), "--json"])
    assert code == 0, err
    meta = json.loads(out)
    assert (meta["source_path"], meta["found_by"]) == ("data/main.db", "db.url")
    files, err = dry_run_files(root)
    assert "data/main.db" not in files and "other.db" in files and "warning" not in err
    # db.path and db.url: two databases named; every task that resolves it refuses (exit 2).
    code, out, err = run_cli(["db.backup", "--db-path", "other.db", "--project-root", str(root)])
    assert code == 2 and "--db-path / db.path and db.url both name the database" in err, err
    monkeypatch.setenv("INVOKE_DB_PATH", "other.db")
    for args in (["db.restore", "-b", meta["backup_path"]], ["backup.create", "--dry-run"], ["backup.status"]):
        code, out, err = run_cli([*args, "--project-root", str(root)])
        assert code == 2 and "--db-path / db.path and db.url both name the database" in err, (args, err)


def _good_db(path):
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER CHECK (balance >= 0))")
    c.executemany("INSERT INTO accounts (balance) VALUES (?)", [(i,) for i in range(10)])
    c.commit()
    dump = "\n".join(c.iterdump()) + "\n"
    c.close()
    with open(path, "rb") as fh:
        return fh.read(), {"accounts": 10}, dump


@pytest.mark.parametrize("where", ["absolute", "dotdot", "missing-sha"])
def test_a_database_backup_naming_another_file_as_its_snapshot_is_refused(proj, tmp_path, where):
    """database_file is what a restore moves over the live database: a name
    that leads out of the archive ("/elsewhere/x.db", "../x.db"), or a
    snapshot without a recorded SHA-256, fails verify and restore, and the
    file it names is left alone."""
    from forge import file, forge

    db = str(proj / "instance" / "shop.db")
    before = content_digest(db)
    victim = tmp_path / "elsewhere" / "precious.db"
    victim.parent.mkdir()
    db_bytes, counts, dump = _good_db(str(victim))
    bdir = proj / "backups" / "db"
    bdir.mkdir(parents=True)
    bad = bdir / "shop_db_20260101_000000.tar.gz"
    name = {"absolute": str(victim), "dotdot": "../../../" + str(victim.relative_to(tmp_path)), "missing-sha": "shop.db"}[where]
    extra = {"backup_type": "database", "source_path": "instance/shop.db", "found_by": "db.path", "database_file": name,
             "sql_dump": "", "sqlite_version": sqlite3.sqlite_version, "page_size": 4096, "journal_mode": "delete",
             "user_version": 0, "size": len(db_bytes), "integrity_check": "ok", "tables": counts, "safety_backup": False}
    # (no sha256: the old check compared the missing snapshot's None with the metadata's None)
    forge(str(bad), [file("shop.db", db_bytes)], compression="gz", extra_metadata=extra)
    code, out, err = run_cli(["db.verify", "--project-root", str(proj), "--backup-path", str(bad)])
    assert code == 4, (code, out, err)
    code, _, err = run_cli(["db.restore", "--project-root", str(proj), "--backup-path", str(bad), "--force"])
    assert code == 4 and "nothing restored" in err, err
    assert victim.exists() and content_digest(db) == before


@pytest.mark.parametrize("attack", ["attach", "vacuum-into", "pragma", "writable-schema"])
def test_a_dump_that_reaches_other_files_or_lies_about_its_schema_is_refused(proj, tmp_path, attack):
    """The SQL dump is data from the archive: loading it (db.verify,
    db.restore --from-sql) may create and fill its own tables, nothing else,
    and the result must pass integrity_check."""
    db = str(proj / "instance" / "shop.db")
    before = content_digest(db)
    db_bytes, counts, dump = _good_db(str(tmp_path / "good.db"))
    target = tmp_path / "pwned.db"
    extra_sql = {
        "attach": f"ATTACH DATABASE '{target}' AS p; CREATE TABLE p.t (x);",
        "vacuum-into": f"VACUUM INTO '{target}';",
        "pragma": "PRAGMA journal_mode=WAL;",
        "writable-schema": ("PRAGMA writable_schema=ON; UPDATE sqlite_master SET sql = 'CREATE TABLE accounts "
                            "(id INTEGER PRIMARY KEY, balance INTEGER CHECK (balance < 0))' WHERE name = 'accounts'; "
                            "PRAGMA writable_schema=OFF;"),
    }[attack]
    dump = dump.replace("COMMIT;", extra_sql + "\nCOMMIT;") if attack != "vacuum-into" else dump + extra_sql + "\n"
    bdir = proj / "backups" / "db"
    bdir.mkdir(parents=True)
    bad = bdir / "shop_db_20260101_000000.tar.gz"
    forge_db_backup(bad, db_bytes, counts, dump.encode())
    code, out, err = run_cli(["db.verify", "--project-root", str(proj), "--backup-path", str(bad)])
    assert code == 4 and "SQL dump" in out, (code, out, err)
    code, _, err = run_cli(["db.restore", "--project-root", str(proj), "--backup-path", str(bad), "--from-sql", "--force"])
    assert code == 4 and "nothing restored" in err, err
    assert not target.exists() and content_digest(db) == before
