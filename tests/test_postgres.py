"""PostgreSQL backups against a real server: pgserver's PostgreSQL 16, one per
test session (per xdist worker; the ``pg`` fixture in conftest.py), on a Unix
socket, with its own pg_dump, pg_restore and psql.  Nothing is mocked; the one test double is a fake
pg_dump that only reports an old version."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from backup_lib import postgres as P
from backup_lib.errors import DatabaseError, IntegrityError, UsageError
from backup_lib.store import BackupStore
from conftest import ACCOUNTS, PASSWORD, START, consistent, counts, hold_session, shop  # the pg fixture is conftest's
from forge import file as ffile
from forge import forge

pgserver = pytest.importorskip("pgserver")

def members(archive: str) -> dict[str, bytes]:
    with tarfile.open(archive) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def backup(pg, tmp_path, db, **kw):
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    return P.pg_backup(str(root), url=kw.pop("url", pg.url(db)), pg_bin_dir=kw.pop("pg_bin_dir", pg.bin_dir), **kw)


def restore(pg, tmp_path, archive, db, **kw):
    return P.pg_restore_backup(archive, root=str(tmp_path / "proj"), url=kw.pop("url", pg.url(db)), pg_bin_dir=pg.bin_dir, **kw)


# ------------------------------------------------------------- pure functions


@pytest.mark.parametrize("url, params, password", [
    ("postgresql://app:pw@db.example.com:5433/shop", {"user": "app", "host": "db.example.com", "port": "5433", "dbname": "shop"}, "pw"),
    ("postgres://app@/shop?host=/var/run/postgresql", {"user": "app", "dbname": "shop", "host": "/var/run/postgresql"}, None),
    ("postgresql://%2Fvar%2Frun%2Fpostgresql/shop", {"host": "/var/run/postgresql", "dbname": "shop"}, None),
    ("postgresql://u:p%40ss%3Aw0rd@h/d?sslmode=verify-full&sslrootcert=/etc/ca.pem",
     {"user": "u", "host": "h", "dbname": "d", "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}, "p@ss:w0rd"),
    ("postgresql://?service=prod", {"service": "prod"}, None),
    ("postgresql:///shop?service=prod&password=q", {"dbname": "shop", "service": "prod"}, "q"),
    ("postgresql://h1:5432,h2:5433/d?target_session_attrs=read-write",
     {"host": "h1,h2", "port": "5432,5433", "dbname": "d", "target_session_attrs": "read-write"}, None),
    ("postgresql://[::1]:5433/d", {"host": "::1", "port": "5433", "dbname": "d"}, None),
    ("postgresql+psycopg2://u:x@localhost/d", {"user": "u", "host": "localhost", "dbname": "d"}, "x"),
    ("postgresql://u:@/d?host=/tmp", {"user": "u", "dbname": "d", "host": "/tmp"}, None),
    ("'postgresql://h/d?ssl=true'", {"host": "h", "dbname": "d", "sslmode": "require"}, None),
    ("postgresql://h/my%20db", {"host": "h", "dbname": "my db"}, None),
])
def test_urls_parse_as_libpq_reads_them(url, params, password):
    t = P.parse_url(url)
    assert dict(t.params) == params
    assert t.password == password
    assert P.is_postgres_url(url)


@pytest.mark.parametrize("url", ["postgresql://h:port/d", "postgresql://[::1/d", "postgresql://h/d?bad-key=1",
                                 "postgresql://h/d?sslmode", "mysql://h/d", "postgresql://h/d?sslpassword=k"])
def test_malformed_urls_are_usage_errors_that_do_not_quote_the_url(url):
    with pytest.raises(UsageError) as exc:
        P.parse_url(url.replace("//h", "//u:Pw-Zz9@h"))
    assert "Pw-Zz9" not in str(exc.value)


def test_the_password_stays_out_of_arguments_output_and_repr():
    t = P.parse_url(f"postgresql://app:{PASSWORD}@db:5432/shop?sslmode=require")
    tools = P.PgTools("/bin/pg_dump", "/bin/pg_restore", "/bin/psql", {"pg_dump": "16.2"})
    argv = P.pg_dump_command(tools, t, out="/w/shop.dump", snapshot="00000003-1", compression="gz",
                             schemas=["public"], exclude_tables=["audit_*"])
    everything = " ".join(argv) + t.conninfo() + t.conninfo("other") + t.shown() + repr(t)
    assert PASSWORD not in everything
    assert t.shown() == "postgresql://app@db:5432/shop?sslmode=require"
    assert "--schema=public" in argv and "--exclude-table=audit_*" in argv and "--compress=0" in argv
    assert t.env()["PGPASSWORD"] == PASSWORD
    assert P._scrub(f"FATAL: bad {PASSWORD} and {PASSWORD.replace('!', '%21')}", t.secrets()) == "FATAL: bad *** and ***"


def test_locate_reads_db_url_then_environment_then_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("DATABASE_URL=postgres://u@h/fromenvfile\n")
    assert P.locate_postgres(str(tmp_path))[0].dbname == "fromenvfile"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/fromvar")
    t, how = P.locate_postgres(str(tmp_path))
    assert (t.dbname, how) == ("fromvar", "$DATABASE_URL")
    assert P.locate_postgres(str(tmp_path), "postgresql:///configured")[0].dbname == "configured"
    assert P.locate_postgres(str(tmp_path), "sqlite:///app.db") is None
    monkeypatch.setenv("DATABASE_URL", "sqlite:///app.db")
    assert P.locate_postgres(str(tmp_path)) is None


def test_version_rules():
    assert P.version_problem("pg_dump", "16.2", "16.4", 160004) is None
    assert P.version_problem("pg_dump", "17.0", "16.4", 160004) is None
    msg = P.version_problem("pg_dump", "15.18 (Debian 15.18-0+deb12u1)", "16.4", 160004)
    assert msg.startswith("pg_dump 15.18 (Debian 15.18-0+deb12u1) is older than the server (PostgreSQL 16.4)")
    assert "postgresql-client-16" in msg
    assert "postgresql-client-9.6" in P.version_problem("pg_dump", "9.5.3", "9.6.1", 90601)
    assert P.version_problem("pg_dump", "10.1", "9.6.1", 90601) is None


def test_side_names_fit_in_63_bytes_and_avoid_taken_ones():
    name = P.side_name("é" * 40, "restore", "20260101_000000")
    assert len(name.encode()) <= 63 and name.endswith("_restore_20260101_000000")
    taken = {"shop_restore_20260101_000000"}
    assert P.side_name("shop", "restore", "20260101_000000", taken) == "shop_restore_20260101_000000_1"


def test_qualified_names_split_back():
    assert P.split_qualified('public.accounts') == ("public", "accounts")
    assert P.split_qualified('"odd schema"."Tab""le.x"') == ("odd schema", 'Tab"le.x')
    for bad in ("accounts", "a.", '"a.b', '"a"b.c', ".a"):
        assert P.split_qualified(bad) is None


# ----------------------------------------------------------------- the tools


def fake_tool(folder: Path, name: str, version: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {version}'\n")
    path.chmod(0o755)


def test_missing_tools_say_what_to_install(pg, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(DatabaseError, match=r"pg_dump not found in db.pg_bin_dir .*install the PostgreSQL client tools"):
        P.find_tools(str(empty))
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DatabaseError) as exc:
        P.pg_backup(str(tmp_path), url=pg.url("postgres"))
    assert str(exc.value).startswith("pg_dump not found on PATH: install the PostgreSQL client tools")
    assert exc.value.exit_code == 1 and "\n" not in str(exc.value)


def test_a_client_older_than_the_server_is_refused_naming_both_versions(pg, tmp_path, monkeypatch):
    fake = tmp_path / "oldbin"
    fake.mkdir()
    fake_tool(fake, "pg_dump", "12.3")
    for tool in ("pg_restore", "psql"):
        os.symlink(os.path.join(pg.bin_dir, tool), fake / tool)
    db = shop(pg)
    # On PATH, as an old distribution package would be.
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    with pytest.raises(DatabaseError) as exc:
        P.pg_backup(str(tmp_path), url=pg.url(db))
    msg = str(exc.value)
    assert msg.startswith("pg_dump 12.3 is older than the server (PostgreSQL 16.")
    assert "install the PostgreSQL 16 client tools" in msg and "postgresql-client-16" in msg and "db.pg_bin_dir" in msg
    assert exc.value.exit_code == 1
    assert not BackupStore(str(tmp_path / "backups" / "db"), "db").backups()


def test_a_pg_restore_older_than_the_dump_is_refused(pg, tmp_path):
    db = shop(pg)
    archive = backup(pg, tmp_path, db).backup_path
    old = tmp_path / "oldbin"
    old.mkdir()
    fake_tool(old, "pg_restore", "14.1")
    for tool in ("pg_dump", "psql"):
        os.symlink(os.path.join(pg.bin_dir, tool), old / tool)
    with pytest.raises(DatabaseError, match=r"pg_restore 14.1 cannot read a dump made by pg_dump 16\.\d+: install the PostgreSQL 16"):
        P.pg_verify(str(tmp_path / "proj" / "backups" / "db"), [archive], pg_bin_dir=str(old))


# ------------------------------------------------------------------ backups


def test_backup_holds_both_dumps_and_metadata_of_one_snapshot(pg, tmp_path):
    db = shop(pg)
    pg.psql(db, "INSERT INTO transfers (src, dst, amount) VALUES (1, 2, 5), (2, 3, 7);")
    res = backup(pg, tmp_path, db)
    meta = res.metadata
    assert os.path.basename(res.backup_path).startswith("proj_db_") and res.backup_path.endswith(".tar.gz")
    assert meta["engine"] == "postgresql" and meta["backup_type"] == "database" and meta["database"] == db
    assert meta["server_version"].startswith("16.") and meta["client_version"] == meta["server_version"]
    assert meta["server_version_num"] >= 160000 and meta["size"] > 0
    assert meta["encoding"] == "UTF8" and "vector" in meta["extensions"] and "plpgsql" in meta["extensions"]
    assert meta["tables"] == {'"odd schema"."Tab""le.x"': 3, "public.accounts": ACCOUNTS, "public.big_log": 500, "public.transfers": 2}
    assert meta["source"] == pg.url(db) and meta["dump_file"] == f"{db}.dump" and meta["sql_dump"] == f"{db}.sql"
    got = members(res.backup_path)
    dump, sql = got[f"{db}.dump"], got[f"{db}.sql"]
    assert dump.startswith(b"PGDMP") and hashlib.sha256(dump).hexdigest() == meta["dump_sha256"]
    assert hashlib.sha256(sql).hexdigest() == meta["sql_sha256"]
    assert b"PostgreSQL database dump" in sql and b"COPY public.transfers" in sql
    assert list(got) == [f"{db}.dump", f"{db}.sql", "backup_manifest.jsonl", "backup_metadata.json"]
    assert P.pg_verify(str(tmp_path / "proj" / "backups" / "db"), pg_bin_dir=pg.bin_dir)[0].ok


def test_no_sql_dump_and_schema_and_exclude_table_pass_through(pg, tmp_path):
    db = shop(pg)
    res = backup(pg, tmp_path, db, sql_dump=False, schemas=["public"], exclude_tables=["public.big_*"], compression="zst")
    meta = res.metadata
    assert meta["tables"] == {"public.accounts": ACCOUNTS, "public.transfers": 0}
    assert meta["schemas"] == ["public"] and meta["exclude_tables"] == ["public.big_*"]
    assert meta["sql_dump"] is None and meta["total_files"] == 1 and res.backup_path.endswith(".tar.zst")
    assert P.pg_verify("", [res.backup_path], pg_bin_dir=pg.bin_dir)[0].ok


def test_a_plain_tar_keeps_pg_dumps_own_compression(pg, tmp_path):
    db = shop(pg)
    meta = backup(pg, tmp_path, db, compression="none").metadata
    assert meta["dump_compression"] not in (None, "none") and meta["compression"] == "none"


PGBENCH = """\\set a random(1, {n})
\\set b 1 + (:a + random(0, {m})) % {n}
\\set amt random(1, 100)
BEGIN;
UPDATE accounts SET balance = balance + CASE WHEN id = :a THEN -:amt ELSE :amt END WHERE id IN (:a, :b);
INSERT INTO transfers (src, dst, amount) VALUES (:a, :b, :amt);
COMMIT;
"""


@pytest.mark.slow
def test_a_backup_taken_while_transfers_commit_is_one_consistent_snapshot(pg, tmp_path):
    db = shop(pg, rows=ACCOUNTS)
    pg.psql(db, "INSERT INTO big_log SELECT repeat(md5(g::text), 8) FROM generate_series(1, 20000) g;")  # a dump that takes a moment
    script = tmp_path / "transfer.sql"
    script.write_text(PGBENCH.format(n=ACCOUNTS, m=ACCOUNTS - 2))
    bench = subprocess.Popen([os.path.join(pg.bin_dir, "pgbench"), "-n", "-c", "2", "-T", "60", "-f", str(script), pg.conninfo(db)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while counts(pg, db)["transfers"] < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = counts(pg, db)["transfers"]
        res = backup(pg, tmp_path, db)
        after = counts(pg, db)["transfers"]
        assert bench.poll() is None, bench.stderr.read()
    finally:
        bench.terminate()
        bench.wait()
    logged = res.metadata["tables"]["public.transfers"]
    assert before <= logged <= after and before < after  # writers went on during the backup
    assert res.metadata["tables"]["public.accounts"] == ACCOUNTS
    # The custom dump: restored, it satisfies the invariant and the counts.
    copy = f"copy_{uuid.uuid4().hex[:8]}"
    out = restore(pg, tmp_path, res.backup_path, db, target_db=copy)
    assert out.tables == res.metadata["tables"]
    got = counts(pg, copy)
    assert got == {"accounts": ACCOUNTS, "sum": ACCOUNTS * START, "transfers": logged}
    assert consistent(pg, copy)
    # The SQL dump, rendered from it, holds the same snapshot.
    sql_db = pg.new_db("sql")
    sql = members(res.backup_path)[f"{db}.sql"].decode()
    pg.psql(sql_db, sql)
    assert counts(pg, sql_db) == got and consistent(pg, sql_db)


def test_no_truncate_slips_in_between_the_dump_and_the_row_counts(pg, tmp_path):
    """pg_dump's locks end with it; the counts come after, in the same
    snapshot.  TRUNCATE is not MVCC-safe: had it run in between, the counts
    would say 0 rows where the dump holds 500, and every restore of the
    backup would be refused.  The snapshot's transaction holds the tables."""
    db = shop(pg)
    tried = []

    def progress(files, nbytes):
        if tried:
            return
        # The first report comes once pg_dump has ended (a dump this small
        # takes less than the 0.25 s between reports while it runs), before
        # the rows are counted.
        try:
            pg.psql(db, "SET lock_timeout = '300ms'; TRUNCATE big_log;")
            tried.append("truncated")
        except AssertionError as exc:
            tried.append(str(exc))

    res = backup(pg, tmp_path, db, progress=progress)
    assert "lock timeout" in tried[0], tried
    assert res.metadata["tables"]["public.big_log"] == 500
    copy = f"copy_{uuid.uuid4().hex[:8]}"
    assert restore(pg, tmp_path, res.backup_path, db, target_db=copy).tables == res.metadata["tables"]


# ------------------------------------------------------------------ restore


def test_restore_over_the_live_database_swaps_it_and_keeps_what_it_replaced(pg, tmp_path):
    db = shop(pg)
    res = backup(pg, tmp_path, db)
    pg.psql(db, "UPDATE accounts SET balance = 0; DROP TABLE big_log; CREATE TABLE newer (x int);")
    out = restore(pg, tmp_path, res.backup_path, db)
    assert out.database == db and out.replaced and out.terminated == 0
    assert counts(pg, db)["sum"] == ACCOUNTS * START
    assert pg.psql(db, "SELECT count(*) FROM big_log;") == "500"
    assert pg.psql(db, "SELECT to_regclass('newer') IS NULL;") == "t"
    # What was live is kept, renamed, and in the safety backup.
    assert out.previous and out.previous.startswith(f"{db}_previous_") and out.previous in pg.databases()
    assert pg.psql(out.previous, "SELECT sum(balance) FROM accounts;") == "0"
    safety = out.safety_backup
    assert safety and os.path.exists(safety)
    meta = P.verify_backup(safety, tools=P.find_tools(pg.bin_dir)).metadata
    assert meta["safety_backup"] is True and meta["reason"].startswith("taken by db.restore before restoring proj_db_")
    assert meta["tables"]["public.newer"] == 0 and "public.big_log" not in meta["tables"]
    listed = [b.path for b in BackupStore(str(tmp_path / "proj" / "backups" / "db"), "db").backups()]
    assert safety in listed and res.backup_path in listed  # cleanup counts it like any backup
    assert not [d for d in pg.databases() if d.startswith(f"{db}_restore_")]
    # drop_previous: nothing is left beside the live database.
    again = restore(pg, tmp_path, res.backup_path, db, drop_previous=True)
    assert again.previous is None
    assert {d for d in pg.databases() if d.startswith(db)} == {db, out.previous}


def test_restore_refuses_while_sessions_are_connected_and_force_terminates_them(pg, tmp_path):
    db = shop(pg)
    res = backup(pg, tmp_path, db)
    pg.psql(db, "UPDATE accounts SET balance = 1;")
    before = pg.databases()
    app = hold_session(pg, db)
    try:
        with pytest.raises(DatabaseError) as exc:
            restore(pg, tmp_path, res.backup_path, db)
        assert str(exc.value) == (f"database {db} is in use: 1 other session connected (stop the application, "
                                  f"or use --force to terminate them); nothing was changed")
        assert pg.databases() == before and counts(pg, db)["sum"] == ACCOUNTS
        assert len(BackupStore(str(tmp_path / "proj" / "backups" / "db"), "db").backups()) == 1  # no safety backup either
        out = restore(pg, tmp_path, res.backup_path, db, force=True)
        assert out.terminated == 1
        app.stdin.write("SELECT 'still here';\n")
        app.stdin.flush()
        assert app.wait(timeout=10) != 0  # its connection was terminated
        assert "terminat" in app.stderr.read()
    finally:
        app.kill()
        app.wait()
    assert counts(pg, db)["sum"] == ACCOUNTS * START
    assert pg.psql("postgres", f"SELECT datallowconn FROM pg_database WHERE datname IN ('{db}', '{out.previous}');") == "t\nt"


def test_target_db_restores_beside_and_leaves_the_live_database_alone(pg, tmp_path):
    db = shop(pg)
    res = backup(pg, tmp_path, db)
    pg.psql(db, "UPDATE accounts SET balance = 7;")
    app = hold_session(pg, db)  # sessions on the live database do not matter here
    try:
        copy = f"copy_{uuid.uuid4().hex[:8]}"
        out = restore(pg, tmp_path, res.backup_path, db, target_db=copy)
    finally:
        app.kill()
        app.wait()
    assert (out.database, out.replaced, out.safety_backup, out.previous) == (copy, False, None, None)
    assert counts(pg, copy)["sum"] == ACCOUNTS * START and counts(pg, db)["sum"] == 7 * ACCOUNTS
    with pytest.raises(DatabaseError, match=f"database {copy} already exists"):
        restore(pg, tmp_path, res.backup_path, db, target_db=copy)


def test_restore_creates_a_missing_database(pg, tmp_path):
    db = shop(pg)
    res = backup(pg, tmp_path, db)
    pg.psql("postgres", f'DROP DATABASE "{db}";')
    out = restore(pg, tmp_path, res.backup_path, db)
    assert (out.replaced, out.safety_backup, out.previous) == (False, None, None)
    assert counts(pg, db)["sum"] == ACCOUNTS * START


def test_a_killed_restores_work_folder_is_swept_by_the_next_restore(pg, tmp_path):
    """The dump is extracted into a work folder with an owner record: one
    a killed restore left (its process is gone) goes with the next restore,
    instead of keeping a copy of the database in the backup dir for good."""
    import sys

    db = shop(pg)
    res = backup(pg, tmp_path, db)
    bdir = tmp_path / "proj" / "backups" / "db"
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from backup_lib.workdir import create_work_dir; "
              "wd = create_work_dir(sys.argv[2], 'restore', parent=sys.argv[3]); "
              "open(wd.tree + '/shop.dump', 'wb').write(b'PGDMP' * 1000); print(wd.path)")
    left = subprocess.run([sys.executable, "-c", script, str(Path(P.__file__).parent.parent), res.backup_path, str(bdir)],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.isdir(left) and os.path.dirname(left) == str(bdir)
    out = restore(pg, tmp_path, res.backup_path, db, drop_previous=True)
    assert [(n["path"], n["removed"]) for n in out.work_folders] == [(left, True)] and "has ended" in out.work_folders[0]["reason"]
    assert sorted(p.name for p in bdir.iterdir() if p.name.startswith(".") and p.name != ".backup.lock") == []


def _forge_pg(path, meta: dict, dump: bytes, sql: bytes | None, **changes):
    """A PostgreSQL backup written by hand with every seal right."""
    db = meta["database"]
    extra = {k: meta[k] for k in ("backup_type", "engine", "database", "server_version", "server_version_num", "client_version",
                                  "tables", "dump_file", "sql_dump", "encoding", "collate", "ctype")}
    extra.update(dump_sha256=hashlib.sha256(dump).hexdigest(), sql_sha256=hashlib.sha256(sql).hexdigest() if sql else None)
    extra.update(changes)
    files = [ffile(f"{db}.dump", dump)] + ([ffile(f"{db}.sql", sql)] if sql is not None else [])
    forge(path, files, compression="gz", extra_metadata=extra)
    return str(path)


def test_a_corrupt_dump_is_refused_before_the_live_database_is_touched(pg, tmp_path):
    db = shop(pg)
    res = backup(pg, tmp_path, db)
    got = members(res.backup_path)
    dump, sql = got[f"{db}.dump"], got[f"{db}.sql"]
    pg.psql(db, "UPDATE accounts SET balance = 3;")
    before = pg.databases()
    # Not a dump at all: pg_restore --list refuses it; no database is created.
    garbage = _forge_pg(tmp_path / "garbage_db_20260101_000000.tar.gz", res.metadata, b"PGDMP" + os.urandom(4000), sql)
    with pytest.raises(IntegrityError, match="the custom dump does not read, nothing restored") as exc:
        restore(pg, tmp_path, garbage, db)
    assert exc.value.exit_code == 4
    report = P.verify_backup(garbage, tools=P.find_tools(pg.bin_dir))
    assert not report.ok and "the custom dump does not read" in report.errors[0]
    # A TOC that reads, then data cut short: pg_restore fails part-way, the
    # half-restored database is dropped, the live one was never touched.
    cut = dump[: len(dump) - 3000]
    truncated = _forge_pg(tmp_path / "cut_db_20260101_000000.tar.gz", res.metadata, cut, sql)
    with pytest.raises(DatabaseError, match="pg_restore failed"):
        restore(pg, tmp_path, truncated, db)
    # The archive's own hashes: one flipped byte in the real archive.
    data = bytearray(Path(res.backup_path).read_bytes())
    data[len(data) // 2] ^= 0x40
    flipped = tmp_path / "flip_db_20260101_000000.tar.gz"
    flipped.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="fails verification, nothing restored"):
        restore(pg, tmp_path, str(flipped), db)
    assert pg.databases() == before
    assert counts(pg, db)["sum"] == 3 * ACCOUNTS
    assert len(BackupStore(str(tmp_path / "proj" / "backups" / "db"), "db").backups()) == 1  # no safety backup taken


def test_verify_checks_the_metadata_against_the_dump(pg, tmp_path):
    db = shop(pg)
    res = backup(pg, tmp_path, db)
    got = members(res.backup_path)
    dump, sql = got[f"{db}.dump"], got[f"{db}.sql"]
    tools = P.find_tools(pg.bin_dir)
    honest = _forge_pg(tmp_path / "a_db_20260101_000000.tar.gz", res.metadata, dump, sql)
    assert P.verify_backup(honest, tools=tools).ok
    cases = {
        "b": ({"tables": {**res.metadata["tables"], "public.ghost": 4}}, "the dump holds the data of 4 tables, the metadata counts rows in 5"),
        "c": ({"tables": {**{k: v for k, v in res.metadata["tables"].items() if k != "public.big_log"}, "public.ghost": 1}},
              "the metadata counts rows of public.ghost, whose data the dump does not hold"),
        "d": ({"database": "other"}, f"the dump is of database '{db}', the metadata says 'other'"),
        "e": ({"dump_sha256": "0" * 64}, "the custom dump's SHA-256 does not match the metadata"),
        "f": ({"engine": "sqlite"}, "not a PostgreSQL backup"),
    }
    for prefix, (changes, message) in cases.items():
        path = _forge_pg(tmp_path / f"{prefix}_db_20260101_000000.tar.gz", res.metadata, dump, sql, **changes)
        report = P.verify_backup(path, tools=tools)
        assert not report.ok and message in report.errors[0], (prefix, report.errors)
    # Row counts that do not match the restored data: the live database stays.
    wrong = _forge_pg(tmp_path / "g_db_20260101_000000.tar.gz", res.metadata, dump, sql,
                      tables={**res.metadata["tables"], "public.accounts": ACCOUNTS + 1})
    before = pg.databases()
    with pytest.raises(IntegrityError, match=r"row counts differ from the backup's \(public.accounts: 50 rows, the backup counted 51\)"):
        restore(pg, tmp_path, wrong, db)
    assert pg.databases() == before


# ------------------------------------------------------- connection failures


def test_a_missing_server_is_one_line_and_exit_1(pg, tmp_path):
    nowhere = tmp_path / "nosock"
    nowhere.mkdir()
    with pytest.raises(DatabaseError) as exc:
        backup(pg, tmp_path, "x", url=f"postgresql://postgres@/shop?host={nowhere}")
    msg = str(exc.value)
    assert msg.startswith(f"cannot connect to PostgreSQL postgresql://postgres@/shop?host={nowhere}: connection to server on socket")
    assert "\n" not in msg and exc.value.exit_code == 1
    assert [p.name for p in (tmp_path / "proj" / "backups" / "db").iterdir()] == [".backup.lock"]


def _watch_cmdlines(stop: threading.Event, seen: list) -> None:
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        seen.append(fh.read())
                except OSError:
                    pass
        time.sleep(0.005)


def test_passwords_reach_the_server_and_nothing_else(pg, tmp_path, monkeypatch):
    db = pg.new_db("pw")
    pg.psql("postgres", f'ALTER DATABASE "{db}" OWNER TO pwuser;')
    pg.psql(db, "CREATE TABLE t (x int); ALTER TABLE t OWNER TO pwuser; INSERT INTO t VALUES (1), (2);")
    # A wrong password: one line, no password in it.
    with pytest.raises(DatabaseError) as exc:
        backup(pg, tmp_path, db, url=pg.url(db, "pwuser", "wrong-" + PASSWORD))
    assert "password authentication failed" in str(exc.value)
    assert PASSWORD not in str(exc.value) and "wrong-" not in str(exc.value) and "\n" not in str(exc.value)
    # The right one, from the URL: not in any process's arguments, nor in the archive, its index or the metadata.
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch_cmdlines, args=(stop, seen))
    watcher.start()
    try:
        res = backup(pg, tmp_path, db, url=pg.url(db, "pwuser", PASSWORD))
        out = restore(pg, tmp_path, res.backup_path, db, url=pg.url(db, "pwuser", PASSWORD))
    finally:
        stop.set()
        watcher.join()
    assert out.tables == {"public.t": 2} and res.metadata["source"] == pg.url(db, "pwuser")
    assert any(b"pg_dump" in c for c in seen)  # the watcher did see the tools run
    assert not [c for c in seen if PASSWORD.encode() in c]
    secret = PASSWORD.encode()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            assert secret not in data, path
    # From PGPASSWORD and from ~/.pgpass (HOME is the test's own).
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert backup(pg, tmp_path, db, url=pg.url(db, "pwuser")).metadata["tables"] == {"public.t": 2}
    monkeypatch.delenv("PGPASSWORD")
    pgpass = Path(os.environ["HOME"]) / ".pgpass"
    pgpass.write_text(f"*:*:*:pwuser:{PASSWORD}\n")
    pgpass.chmod(0o600)
    assert backup(pg, tmp_path, db, url=pg.url(db, "pwuser")).metadata["tables"] == {"public.t": 2}
    pgpass.unlink()
    with pytest.raises(DatabaseError, match="no password supplied|password authentication failed"):
        backup(pg, tmp_path, db, url=pg.url(db, "pwuser"))


def test_progress_reports_the_dump_as_it_grows(pg, tmp_path):
    db = shop(pg)
    calls = []
    res = backup(pg, tmp_path, db, progress=lambda files, nbytes: calls.append((files, nbytes)))
    assert sum(n for _f, n in calls) >= res.metadata["dump_size"]
    assert sum(f for f, _n in calls) == 2
    shutil.rmtree(tmp_path / "proj" / "backups")
