"""The db.* tasks on a PostgreSQL database, as a user runs them (through
Invoke, in process), against the real server of the ``pg`` fixture
(conftest.py): the database named by DATABASE_URL or db.url, the output,
the exit codes, and no password anywhere."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest

from backup_lib.archive.crypto import keygen
from backup_lib.store import BackupStore
from conftest import ACCOUNTS, PASSWORD, START, counts, hold_session, shop, write_tree
from forge import file as ffile
from forge import forge
from helpers import run_cli

pytest.importorskip("pgserver")


def cli(*args):
    return run_cli([str(a) for a in args])


def one_line(err: str) -> None:
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.fixture
def app(tmp_path, pg, monkeypatch):
    """A project whose .env names a fresh shop database; the client tools from db.pg_bin_dir."""
    db = shop(pg)
    root = tmp_path / "shop"
    write_tree(root, {"app.py": "print(1)\n", ".env": f"DATABASE_URL={pg.url(db)}\n"})
    monkeypatch.setenv("INVOKE_DB_PG_BIN_DIR", pg.bin_dir)
    return root, db


def dbdir(root: Path) -> Path:
    return root / "backups" / "db"


def test_backup_list_info_verify_restore_cleanup(app, pg):
    root, db = app
    code, out, err = cli("db.backup", "-p", root, "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["engine"] == "postgresql" and made["found_by"] == "DATABASE_URL in .env" and made["database"] == db
    assert made["tables"]["public.accounts"] == ACCOUNTS and made["backup_path"].endswith(".tar.gz")
    assert os.path.basename(made["backup_path"]).startswith("shop_db_")
    code, out, err = cli("db.backup", "-p", root, "--no-sql-dump", "-c", "zst")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"Created {dbdir(root)}/shop_db_") and lines[0].endswith(".tar.zst")
    assert lines[1] == (f"  {pg.url(db)}: 4 tables, {ACCOUNTS + 503} rows, {lines[1].split(', ')[2]}, "
                        f"PostgreSQL {made['server_version']}, dumps {db}.dump")
    code, out, err = cli("db.list", "-p", root, "--json")
    assert code == 0 and len(json.loads(out)) == 2
    code, out, err = cli("db.info", "-p", root, "-b", os.path.basename(made["backup_path"]))
    assert code == 0 and "engine: postgresql" in out and f"dump_file: {db}.dump" in out
    code, out, err = cli("db.verify", "-p", root)
    assert code == 0 and out.count("ok ") == 2, (out, err)
    # Restore over the live database, which has moved on.
    pg.psql(db, "UPDATE accounts SET balance = 0;")
    code, out, err = cli("db.restore", "-p", root, "-b", made["backup_path"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Restored {db} from {made['backup_path']}"
    assert lines[1].startswith(f"  safety backup of the database it replaced: {dbdir(root)}/shop_db_")
    previous = lines[2].split(" kept as ")[1].split(" ")[0]
    assert previous.startswith(f"{db}_previous_") and lines[2].endswith(f'(DROP DATABASE "{previous}" when no longer needed)')
    assert len(lines) == 3
    assert counts(pg, db)["sum"] == ACCOUNTS * START and pg.psql(previous, "SELECT sum(balance) FROM accounts;") == "0"
    # The safety backup is a backup like the others: listed, verified, counted by cleanup.
    code, out, err = cli("db.list", "-p", root)
    assert code == 0 and "(safety backup before a restore)" in out
    code, out, err = cli("db.verify", "-p", root, "--json")
    assert code == 0 and [r["ok"] for r in json.loads(out)] == [True] * 3
    code, out, err = cli("db.cleanup", "-p", root, "--max-backups", "1", "--dry-run", "--json")
    assert code == 0 and len(json.loads(out)["would_delete"]) == 2, out
    # --json, --drop-previous: nothing left beside the live database.
    code, out, err = cli("db.restore", "-p", root, "-b", made["backup_path"], "--drop-previous", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert (res["engine"], res["database"], res["replaced"], res["previous"], res["terminated"]) == ("postgresql", db, True, None, 0)
    assert res["tables"] == made["tables"] and os.path.exists(res["safety_backup"])
    assert {d for d in pg.databases() if d.startswith(db)} == {db, previous}


def test_sessions_refuse_the_restore_and_force_ends_them_and_says_so(app, pg):
    root, db = app
    code, out, err = cli("db.backup", "-p", root, "--json")
    archive = json.loads(out)["backup_path"]
    pg.psql(db, "UPDATE accounts SET balance = 1;")
    session = hold_session(pg, db)
    try:
        code, out, err = cli("db.restore", "-p", root, "-b", archive)
        assert code == 1 and err == (f"error: database {db} is in use: 1 other session connected (stop the application, "
                                     f"or use --force to terminate them); nothing was changed\n")
        assert counts(pg, db)["sum"] == ACCOUNTS and len(BackupStore(str(dbdir(root)), "db").backups()) == 1
        code, out, err = cli("db.restore", "-p", root, "-b", archive, "-F")
        assert code == 0, err
        assert out.splitlines()[-1] == "  terminated 1 session of the database (--force)"
        session.stdin.write("SELECT 'still here';\n")
        session.stdin.flush()
        assert session.wait(timeout=30) != 0 and "terminat" in session.stderr.read()
    finally:
        session.kill()
        session.wait()
    assert counts(pg, db)["sum"] == ACCOUNTS * START


def test_target_db_restores_beside_the_live_database(app, pg):
    root, db = app
    code, out, err = cli("db.backup", "-p", root, "--json")
    archive = json.loads(out)["backup_path"]
    pg.psql(db, "UPDATE accounts SET balance = 7;")
    copy = f"copy_{uuid.uuid4().hex[:8]}"
    code, out, err = cli("db.restore", "-p", root, "-b", archive, "--target-db", copy)
    assert code == 0, err
    assert out == f"Restored {copy} from {archive} (a new database)\n"
    assert counts(pg, copy)["sum"] == ACCOUNTS * START and counts(pg, db)["sum"] == 7 * ACCOUNTS
    assert len(BackupStore(str(dbdir(root)), "db").backups()) == 1  # nothing replaced: no safety backup
    code, out, err = cli("db.restore", "-p", root, "-b", archive, "--target-db", copy)
    assert code == 1 and f"database {copy} already exists" in err
    one_line(err)


def test_db_url_wins_and_the_schema_flags_add_to_the_configured_ones(app, pg, tmp_path, monkeypatch):
    root, db = app
    other = shop(pg)
    conf = tmp_path / "db.yaml"
    conf.write_text(f"db:\n  url: '{pg.url(other)}'\n  exclude_table: ['public.big_*']\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    code, out, err = cli("db.backup", "-p", root, "--schema", "public", "--exclude-table", "public.transfers", "--json")
    assert code == 0, err
    meta = json.loads(out)
    assert (meta["database"], meta["found_by"]) == (other, "db.url")
    assert meta["tables"] == {"public.accounts": ACCOUNTS}
    assert meta["schemas"] == ["public"] and meta["exclude_tables"] == ["public.big_*", "public.transfers"]
    # A schema pattern that matches nothing: pg_dump says so; tables excluded to the last one: a warning.
    code, out, err = cli("db.backup", "-p", root, "--schema", "nothing_here")
    assert code == 1 and err == "error: pg_dump failed: no matching schemas were found\n"
    code, out, err = cli("db.backup", "-p", root, "--exclude-table", "*.*")
    assert code == 0 and err == (f"warning: PostgreSQL database {other} has no tables with the --schema / --exclude-table "
                                 f"given: the backup holds none; is it the application's database? (config db.url or DATABASE_URL)\n")
    # --db-path with db.url: which database is meant? Refused, as is a malformed URL (never quoted).
    code, out, err = cli("db.backup", "-p", root, "--db-path", "app.db")
    assert code == 2 and "db.url" in err and "--db-path" in err
    one_line(err)
    monkeypatch.delenv("INVOKE_RUNTIME_CONFIG")
    monkeypatch.setenv("INVOKE_DB_URL", f"postgresql://u:{PASSWORD}@h:port/d")
    code, out, err = cli("db.backup", "-p", root)
    assert code == 2 and err.startswith("error: db.url: invalid PostgreSQL URL: the port is not a number")
    assert PASSWORD not in err + out


def test_engine_mismatches_and_engine_only_flags_are_usage_errors(app, pg, tmp_path):
    root, db = app
    code, out, err = cli("db.backup", "-p", root, "--json")
    pg_archive = json.loads(out)["backup_path"]
    # A SQLite project beside it.
    lite = tmp_path / "lite"
    lite.mkdir()
    conn = sqlite3.connect(lite / "app.db")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    code, out, err = cli("db.backup", "-p", lite, "--json")
    assert code == 0, err
    lite_archive = json.loads(out)["backup_path"]
    before = pg.databases()
    cases = [
        (["db.restore", "-p", root, "-b", lite_archive], "is a backup of a SQLite database, not of PostgreSQL"),
        (["db.restore", "-p", lite, "-b", pg_archive], "is a backup of a PostgreSQL database, not of SQLite"),
        (["db.restore", "-p", root, "-b", pg_archive, "--from-sql"], "--from-sql is for SQLite backups"),
        (["db.restore", "-p", lite, "-b", lite_archive, "--target-db", "x"], "--target-db only applies to PostgreSQL"),
        (["db.restore", "-p", lite, "-b", lite_archive, "--drop-previous"], "--drop-previous only applies to PostgreSQL"),
        (["db.backup", "-p", lite, "--schema", "public", "--exclude-table", "t"], "--schema and --exclude-table only apply"),
    ]
    for args, needle in cases:
        code, out, err = cli(*args)
        assert code == 2 and needle in err, (args, code, err)
        one_line(err)
    assert pg.databases() == before and counts(pg, db)["sum"] == ACCOUNTS * START
    assert sqlite3.connect(lite / "app.db").execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert len(BackupStore(str(dbdir(lite)), "db").backups()) == 1 and len(BackupStore(str(dbdir(root)), "db").backups()) == 1
    # Both engines' backups in one folder: each verified its own way.
    os.link(lite_archive, dbdir(root) / os.path.basename(lite_archive))
    code, out, err = cli("db.verify", "-p", root, "--json")
    assert code == 0 and len(json.loads(out)) == 2 and all(r["ok"] for r in json.loads(out)), (out, err)


def test_a_corrupt_backup_fails_verify_and_restores_nothing(app, pg, tmp_path):
    root, db = app
    code, out, err = cli("db.backup", "-p", root, "--json")
    made = json.loads(out)
    import tarfile

    with tarfile.open(made["backup_path"]) as tf:
        dump = tf.extractfile(f"{db}.dump").read()
    # Written by hand, every seal right, the dump's data cut short and the metadata's hash to match it.
    import hashlib

    cut = dump[: len(dump) - 2000]
    extra = {k: made[k] for k in ("backup_type", "engine", "database", "server_version", "server_version_num", "client_version",
                                  "tables", "dump_file", "encoding", "collate", "ctype")}
    extra.update(sql_dump=None, dump_sha256=hashlib.sha256(cut).hexdigest())
    bad = dbdir(root) / "shop_db_20200101_000000.tar.gz"
    forge(str(bad), [ffile(f"{db}.dump", cut)], compression="gz", extra_metadata=extra)
    pg.psql(db, "UPDATE accounts SET balance = 2;")
    before = pg.databases()
    code, out, err = cli("db.restore", "-p", root, "-b", bad)
    assert code == 1 and "pg_restore failed" in err, err
    one_line(err)
    assert pg.databases() == before and counts(pg, db)["sum"] == 2 * ACCOUNTS
    # Not a dump at all: verify says so (exit 4), restore refuses before any database is made.
    extra.update(dump_sha256=hashlib.sha256(b"PGDMP" + bytes(3000)).hexdigest())
    forge(str(bad), [ffile(f"{db}.dump", b"PGDMP" + bytes(3000))], compression="gz", extra_metadata=extra)
    code, out, err = cli("db.verify", "-p", root, "-b", bad)
    assert code == 4 and "the custom dump does not read" in out, (out, err)
    code, out, err = cli("db.restore", "-p", root, "-b", bad)
    assert code == 4 and "the custom dump does not read, nothing restored" in err
    assert pg.databases() == before and counts(pg, db)["sum"] == 2 * ACCOUNTS
    assert len(BackupStore(str(dbdir(root)), "db").backups()) == 2  # no safety backup was taken


def test_failures_are_one_line_exit_1_and_never_show_the_password(pg, tmp_path, monkeypatch):
    db = pg.new_db("pw")
    pg.psql("postgres", f'ALTER DATABASE "{db}" OWNER TO pwuser;')
    pg.psql(db, "CREATE TABLE t (x int); ALTER TABLE t OWNER TO pwuser; INSERT INTO t VALUES (1);")
    root = tmp_path / "shop"
    write_tree(root, {"app.py": ""})
    monkeypatch.setenv("INVOKE_DB_PG_BIN_DIR", pg.bin_dir)
    # A wrong password.
    monkeypatch.setenv("DATABASE_URL", pg.url(db, "pwuser", "wrong-" + PASSWORD))
    code, out, err = cli("db.backup", "-p", root)
    assert code == 1 and "password authentication failed" in err and PASSWORD not in err + out
    one_line(err)
    # No server there.
    nowhere = tmp_path / "nosock"
    nowhere.mkdir()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://pwuser:{PASSWORD}@/{db}?host={nowhere}")
    code, out, err = cli("db.backup", "-p", root)
    assert code == 1 and err.startswith(f"error: cannot connect to PostgreSQL postgresql://pwuser@/{db}?host={nowhere}: ")
    one_line(err)
    # No client tools: what to install.
    monkeypatch.delenv("INVOKE_DB_PG_BIN_DIR")
    monkeypatch.setenv("PATH", str(nowhere))
    code, out, err = cli("db.backup", "-p", root)
    assert code == 1 and "pg_dump not found on PATH: install the PostgreSQL client tools" in err
    one_line(err)
    # The right password: the backup, the restore (the tools on PATH now), their output and history.
    monkeypatch.setenv("PATH", f"{pg.bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DATABASE_URL", pg.url(db, "pwuser", PASSWORD))
    code, out, err = cli("db.backup", "-p", root, "--json")
    assert code == 0, err
    archive = json.loads(out)["backup_path"]
    code, out2, err2 = cli("db.restore", "-p", root, "-b", archive)
    assert code == 0, err2
    code, out3, err3 = cli("db.info", "-p", root, "-b", archive)
    assert code == 0 and f"source: {pg.url(db, 'pwuser')}" in out3
    assert PASSWORD not in out + err + out2 + err2 + out3 + err3
    history = (root / "backups" / "history.jsonl").read_text()
    assert history.count("\n") >= 5 and PASSWORD not in history and "wrong-" not in history


def test_encrypted_postgres_backups_pushed_verified_and_restored_with_the_identity(app, pg, tmp_path, monkeypatch):
    root, db = app
    key = str(tmp_path / "id.key")
    recipient = keygen(key)
    nas = tmp_path / "nas"
    nas.mkdir()
    conf = tmp_path / "enc.yaml"
    conf.write_text(f"db:\n  encrypt_to: ['{recipient}']\nremotes:\n  nas: {{url: '{nas}'}}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    pg.psql(db, "INSERT INTO big_log VALUES ('marker-7c1e');")
    code, out, err = cli("db.backup", "-p", root, "--push", "nas", "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["backup_path"].endswith(".tar.gz.age") and b"marker-7c1e" not in Path(made["backup_path"]).read_bytes()
    assert [p["remote"] for p in made["pushed"]] == ["nas"]
    assert (nas / "shop" / "db" / os.path.basename(made["backup_path"])).is_file()
    code, out, err = cli("db.verify", "-p", root)
    assert code == 0 and "encrypted file only" in out
    code, out, err = cli("db.verify", "-p", root, "-I", key, "--json")
    assert code == 0 and json.loads(out)[0]["checked"] == "contents", (out, err)
    code, out, err = cli("db.restore", "-p", root, "-b", made["backup_path"])
    assert code == 2 and "is encrypted" in err
    pg.psql(db, "DELETE FROM big_log;")
    code, out, err = cli("db.restore", "-p", root, "-b", made["backup_path"], "-I", key, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["safety_backup"].endswith(".tar.gz.age") and pg.psql(db, "SELECT count(*) FROM big_log;") == "501"


def test_project_backups_and_status_know_the_database_is_postgresql(app, pg, tmp_path):
    root, db = app
    (root / "stray.db").write_bytes(b"SQLite format 3\0" + bytes(100))  # not the application's database
    code, out, err = cli("backup.create", "-p", root, "--dry-run", "--json")
    assert code == 0 and "stray.db" in json.loads(out)["files"] and "warning" not in err, err
    code, out, err = cli("backup.create", "-p", root)
    assert code == 0, err
    # The database is expected to have backups of its own: none yet, then one.
    code, out, err = cli("backup.status", "-p", root, "--json")
    report = json.loads(out)
    assert sorted(report["kinds"]) == ["db", "project"] and report["kinds"]["db"]["count"] == 0, out
    assert report["kinds"]["db"]["status"] != "ok" and code != 0
    code, out, err = cli("db.backup", "-p", root)
    assert code == 0, err
    code, out, err = cli("backup.status", "-p", root, "--json")
    assert json.loads(out)["kinds"]["db"]["count"] == 1
