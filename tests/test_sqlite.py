import math
import os
import random
import sqlite3
import struct
import subprocess

import pytest

from backup_lib import sqlite as S
from conftest import HAVE_SQLITE3


def tricky_db(path):
    c = sqlite3.connect(path)
    c.executescript("""
        CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, txt TEXT, num REAL, big INTEGER, b BLOB, anything);
        CREATE TABLE "odd ""name" ("we""ird" TEXT, x);
        CREATE TABLE g (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, c TEXT GENERATED ALWAYS AS (a || 'x') STORED);
        CREATE TABLE wr (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        CREATE INDEX t_txt ON t(txt);
        CREATE VIEW v AS SELECT id, txt FROM t;
        CREATE TRIGGER tr AFTER INSERT ON wr BEGIN UPDATE t SET big = big WHERE 0; END;
        PRAGMA user_version = 7;
    """)
    rng = random.Random(3)
    rows = []
    for _ in range(3000):
        x = struct.unpack("d", rng.randbytes(8))[0]
        if math.isnan(x):
            x = 0.5
        rows.append((
            rng.choice(["plain", "it's", "new\nline", "ünïcode ✓", "", "tab\there", "semi;colon", "--comment"]),
            rng.choice([x, rng.uniform(-1e6, 1e6), 1.0, -0.0, math.inf, -math.inf, 1e-310]),
            rng.choice([0, -1, 2**63 - 1, -(2**63)]),
            rng.choice([None, b"", b"\x00\xff\x10", os.urandom(20)]),
            rng.choice([None, 1, 2.5, "t", b"\x01"]),
        ))
    c.executemany("INSERT INTO t (txt, num, big, b, anything) VALUES (?,?,?,?,?)", rows)
    c.execute("DELETE FROM t WHERE id % 10 = 0")
    c.executemany('INSERT INTO "odd ""name" VALUES (?,?)', [("q\"uote", 1), ("x", None)])
    c.executemany("INSERT INTO g (a) VALUES (?)", [(i,) for i in range(50)])
    c.executemany("INSERT INTO wr VALUES (?,?)", [(f"k{i}", i * 1.5) for i in range(50)])
    c.commit()
    c.close()


def exact_rows(path):
    """Every table's rows with exact types and float bits."""
    c = sqlite3.connect(path)
    out = {}
    for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
        rows = c.execute(f'SELECT * FROM "{name.replace(chr(34), chr(34) * 2)}"').fetchall()
        out[name] = sorted(
            (tuple((type(v).__name__, struct.pack("d", v) if isinstance(v, float) else v) for v in row) for row in rows),
            key=repr,
        )
    schema = sorted(c.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall())
    uv = c.execute("PRAGMA user_version").fetchone()[0]
    c.close()
    return out, schema, uv


def test_dump_loads_with_python_to_the_same_content(tmp_path):
    src = str(tmp_path / "src.db")
    tricky_db(src)
    info = S.write_dump(src, str(tmp_path / "d.sql"))
    assert info["size"] == os.path.getsize(tmp_path / "d.sql")
    dst = str(tmp_path / "dst.db")
    S.load_dump(str(tmp_path / "d.sql"), dst)
    a, b = exact_rows(src), exact_rows(dst)
    assert a[0] == b[0]
    assert a[1] == b[1]
    # sqlite_sequence survives: the next AUTOINCREMENT id is the same.
    for db in (src, dst):
        c = sqlite3.connect(db)
        c.execute("INSERT INTO t (txt) VALUES ('next')")
        assert c.execute("SELECT max(id) FROM t").fetchone()[0] == 3001
        c.close()


@pytest.mark.skipif(not HAVE_SQLITE3, reason="sqlite3 shell not installed")
def test_dump_loads_with_the_sqlite3_shell(tmp_path):
    src = str(tmp_path / "src.db")
    tricky_db(src)
    S.write_dump(src, str(tmp_path / "d.sql"))
    dst = str(tmp_path / "shell.db")
    with open(tmp_path / "d.sql", "rb") as fh:
        proc = subprocess.run(["sqlite3", dst], stdin=fh, capture_output=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert exact_rows(src)[0] == exact_rows(dst)[0]


def test_dump_matches_iterdump_semantics_on_plain_data(tmp_path):
    src = str(tmp_path / "p.db")
    c = sqlite3.connect(src)
    c.executescript("CREATE TABLE a (x INTEGER, y TEXT); INSERT INTO a VALUES (1, 'one'), (2, NULL);")
    c.close()
    S.write_dump(src, str(tmp_path / "p.sql"))
    ours = open(tmp_path / "p.sql").read()
    c = sqlite3.connect(src)
    theirs = "\n".join(c.iterdump()) + "\n"
    c.close()
    assert "CREATE TABLE a (x INTEGER, y TEXT);" in ours and "INSERT INTO \"a\" VALUES(1,'one');" in ours
    assert ours.startswith("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;") and ours.endswith("COMMIT;\n")
    assert "INSERT INTO \"a\" VALUES(2,NULL);" in theirs and "INSERT INTO \"a\" VALUES(2,NULL);" in ours


def test_snapshot_is_standalone_and_checked(tmp_path):
    src = str(tmp_path / "w.db")
    c = sqlite3.connect(src)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    c.commit()  # the row lives in the -wal, not yet in the main file
    info = S.snapshot(src, str(tmp_path / "snap.db"))
    c.close()
    assert info["journal_mode"] == "wal"
    assert not os.path.exists(tmp_path / "snap.db-wal")
    assert S.integrity_check(str(tmp_path / "snap.db")) == "ok"
    assert S.table_counts(str(tmp_path / "snap.db")) == {"t": 1}


def test_integrity_check_reports_corruption(tmp_path):
    path = str(tmp_path / "c.db")
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE t (x TEXT)")
    c.execute("CREATE INDEX ix ON t(x)")
    c.executemany("INSERT INTO t VALUES (?)", [(str(i) * 50,) for i in range(2000)])
    c.commit()
    c.close()
    data = bytearray(open(path, "rb").read())
    rng = random.Random(1)
    for off in range(len(data) // 3, 2 * len(data) // 3, 97):
        data[off] = rng.randrange(256)
    open(path, "wb").write(bytes(data))
    assert S.integrity_check(path) != "ok"


def test_not_sqlite_is_refused(tmp_path):
    p = tmp_path / "x.db"
    p.write_text("hello, not a database at all")
    from backup_lib.errors import DatabaseError

    with pytest.raises(DatabaseError, match="not an SQLite database"):
        S.check_sqlite_file(str(p))
