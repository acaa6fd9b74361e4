"""SQLite: consistent snapshots of a live database, checks, and a fast SQL dump.

* :func:`snapshot` uses the online backup API in one step: a consistent copy
  even while other processes commit in WAL mode; the source is opened
  read-only with a busy timeout.
* :func:`write_dump` writes what the sqlite3 shell's ``.dump`` writes
  (schema, then ``INSERT`` statements in one transaction) several times
  faster than ``iterdump()``: each row's statement is built by SQLite itself.
  REAL values are written so that SQLite reads them back as the same
  double: every value is checked in the same query, and the rare one that
  SQLite's own decimal parser would round differently is written as an
  exact power-of-two expression.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sqlite3
from urllib.request import pathname2url

from .errors import DatabaseError

__all__ = [
    "SQLITE_MAGIC",
    "check_sqlite_file",
    "snapshot",
    "integrity_check",
    "table_counts",
    "database_facts",
    "write_dump",
    "load_dump",
    "content_digest",
]

SQLITE_MAGIC = b"SQLite format 3\0"


def check_sqlite_file(path: str, how: str = "") -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise DatabaseError(f"database {path} does not exist{how}") from None
    except IsADirectoryError:
        raise DatabaseError(f"database {path} is a directory{how}") from None
    except OSError as exc:
        raise DatabaseError(f"database {path} cannot be read: {exc.strerror}") from None
    if head != SQLITE_MAGIC and head:
        raise DatabaseError(f"{path} is not an SQLite database{how}")


@contextlib.contextmanager
def connect(path: str, *, readonly: bool = False, timeout: float = 5.0):
    """A connection that is closed on exit (``with sqlite3.connect()`` is not)."""
    try:
        if readonly:
            if not os.path.exists(path):
                raise DatabaseError(f"database {path} does not exist")
            try:
                conn = sqlite3.connect(f"file:{pathname2url(path)}?mode=ro", uri=True, timeout=timeout)
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                # mode=ro cannot create a missing -shm of a WAL database: read through a normal connection.
                conn = sqlite3.connect(path, timeout=timeout)
        else:
            conn = sqlite3.connect(path, timeout=timeout)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


def snapshot(src_path: str, dst_path: str, *, timeout: float = 5.0) -> dict:
    """Copy a live database to ``dst_path`` consistently; returns its journal mode."""
    try:
        with connect(src_path, readonly=True, timeout=timeout) as src, connect(dst_path) as dst:
            journal_mode = src.execute("PRAGMA journal_mode").fetchone()[0]
            src.backup(dst)  # pages=-1: one step, one consistent read transaction
            dst.execute("PRAGMA journal_mode=DELETE")  # a standalone file, no -wal needed to read it
    except sqlite3.Error as exc:
        raise DatabaseError(f"snapshot of {src_path} failed: {exc}") from None
    return {"journal_mode": journal_mode}


def integrity_check(path: str) -> str:
    """``PRAGMA integrity_check`` of a private copy (a snapshot, an extracted
    or a loaded file): on a read-write connection, since read-only SQLite
    skips the CHECK constraints."""
    with connect(path) as conn:
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return str(exc)
    result = "; ".join(str(r[0]) for r in rows[:5])
    return result


def _tables(conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name"
        )
    ]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_counts(path: str) -> dict[str, int]:
    with connect(path, readonly=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {_ident(t)}").fetchone()[0] for t in _tables(conn)}


def database_facts(path: str) -> dict:
    with connect(path, readonly=True) as conn:
        return {
            "sqlite_version": sqlite3.sqlite_version,
            "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
            "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
        }


# ---------------------------------------------------------------- the dump

_REAL_TEXT = "printf('%!.17g', {c})"


def _text_affinity(decl: str) -> bool:
    """SQLite's affinity rules: such a column converts numbers to text, so
    it never holds a REAL and needs no check."""
    d = (decl or "").upper()
    return "INT" not in d and any(k in d for k in ("CHAR", "CLOB", "TEXT"))


def _value_sql(col: str, text_only: bool = False) -> str:
    if text_only:
        return f"quote({col})"
    real = _REAL_TEXT.format(c=col)
    return (
        f"CASE typeof({col}) WHEN 'real' THEN "
        f"(CASE WHEN {col} = 9e999 THEN '9e999' WHEN {col} = -9e999 THEN '-9e999' ELSE {real} END) "
        f"ELSE quote({col}) END"
    )


def _exact_ok_sql(col: str) -> str:
    real = _REAL_TEXT.format(c=col)
    return f"(CASE typeof({col}) WHEN 'real' THEN (CAST({real} AS REAL) = {col} OR {col} = 9e999 OR {col} = -9e999) ELSE 1 END)"


def _real_literal(conn, x: float) -> str:
    """SQL for exactly x.  SQLite before 3.43 does not parse every decimal
    exactly, and some doubles no decimal string reaches at all; those are
    written as an integer mantissa scaled by powers of two, which IEEE
    arithmetic does exactly: ``(m * 1.0 / 2^62 / … / 2^r)``."""
    if math.isinf(x):
        return "9e999" if x > 0 else "-9e999"
    text = repr(x)
    if conn.execute("SELECT CAST(? AS REAL)", (text,)).fetchone()[0] == x:
        return text
    frac, exp = math.frexp(x)
    mantissa, exp = int(frac * (1 << 53)), exp - 53
    op = "*" if exp > 0 else "/"
    steps, rest = divmod(abs(exp), 62)
    factors = [str(1 << 62)] * steps + ([str(1 << rest)] if rest else [])
    expr = f"({mantissa} * 1.0" + "".join(f" {op} {f}" for f in factors) + ")"
    assert conn.execute(f"SELECT {expr}").fetchone()[0] == x
    return expr


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _literal(conn, value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return _real_literal(conn, value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "X'" + value.hex().upper() + "'"
    return "'" + str(value).replace("'", "''") + "'"


def write_dump(db_path: str, out_path: str) -> dict:
    """Write an SQL dump of ``db_path``; returns {size, sha256, inexact_reals}."""
    h = hashlib.sha256()
    size = 0
    buf: list[str] = []
    buffered = 0

    def emit(line: str) -> None:
        nonlocal buffered
        buf.append(line)
        buffered += len(line)
        if buffered > 1 << 20:
            flush()

    def flush() -> None:
        nonlocal buffered
        if buf:
            write_bytes("".join(buf).encode("utf-8", "surrogateescape"))
        buf.clear()
        buffered = 0

    def write_bytes(data: bytes) -> None:
        nonlocal size
        out.write(data)
        h.update(data)
        size += len(data)

    def str_factory(b: bytes) -> str:
        return b.decode("utf-8", "surrogateescape")

    with connect(db_path, readonly=True) as conn, open(out_path, "wb") as out:
        conn.text_factory = str_factory
        emit("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")
        schema = conn.execute(
            "SELECT name, type, sql FROM sqlite_master WHERE sql NOT NULL AND type='table' ORDER BY rowid"
        ).fetchall()
        for name, _type, sql in schema:
            if name == "sqlite_sequence":
                emit("DELETE FROM sqlite_sequence;\n")
            elif name == "sqlite_stat1":
                emit("ANALYZE sqlite_master;\n")
            elif name.startswith("sqlite_"):
                continue
            elif sql.upper().startswith("CREATE VIRTUAL TABLE"):
                emit("PRAGMA writable_schema=ON;\n")
                emit(
                    "INSERT INTO sqlite_master(type,name,tbl_name,rootpage,sql) VALUES('table',"
                    f"{_literal(conn, name)},{_literal(conn, name)},0,{_literal(conn, sql)});\n"
                )
                emit("PRAGMA writable_schema=OFF;\n")
                continue
            else:
                emit(f"{sql};\n")
            info = conn.execute(f"PRAGMA table_xinfo({_ident(name)})").fetchall()
            cols = [(r[1], _text_affinity(r[2])) for r in info if r[6] == 0]
            if not cols:
                continue
            has_hidden = any(r[6] != 0 for r in info)
            qcols = [_ident(c) for c, _t in cols]
            target = _ident(name) + (f"({','.join(qcols)})" if has_hidden else "")
            row_sql = " || ',' || ".join(_value_sql(_ident(c), t) for c, t in cols)
            checked = [_ident(c) for c, t in cols if not t]
            ok_sql = " AND ".join(_exact_ok_sql(c) for c in checked) or "1"
            prefix = f"INSERT INTO {target} VALUES("
            inexact = checked and conn.execute(f"SELECT count(*) FROM {_ident(name)} WHERE NOT ({ok_sql})").fetchone()[0]
            if not inexact:
                # The common case: SQLite writes every statement itself, as bytes.
                flush()
                conn.text_factory = bytes
                try:
                    cur = conn.execute(f"SELECT {_sql_text(prefix)} || {row_sql} || ');' FROM {_ident(name)}")
                    while rows := cur.fetchmany(4096):
                        write_bytes(b"\n".join([r[0] for r in rows]) + b"\n")
                finally:
                    conn.text_factory = str_factory
                continue
            # Some REAL needs an exact expression: per row, with the raw values.
            query = f"SELECT {row_sql}, ({ok_sql}), {', '.join(qcols)} FROM {_ident(name)}"
            for row in conn.execute(query):
                if row[1]:
                    emit(prefix + row[0] + ");\n")
                else:
                    emit(prefix + ",".join(_literal(conn, v) for v in row[2:]) + ");\n")
        for _name, _type, sql in conn.execute(
            "SELECT name, type, sql FROM sqlite_master WHERE sql NOT NULL AND type IN ('index','trigger','view') ORDER BY rowid"
        ):
            emit(f"{sql};\n")
        emit("COMMIT;\n")
        flush()
    return {"size": size, "sha256": h.hexdigest()}


# What a dump may do beyond creating and filling its own tables: the
# pragmas write_dump() itself emits, nothing else.  ATTACH (and VACUUM INTO,
# which attaches its target) would reach other files: a backup's dump is
# data from wherever the archive came from.
_DUMP_PRAGMAS = frozenset({"foreign_keys", "writable_schema"})


def _dump_authorizer(action, arg1, arg2, db_name, trigger):
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() not in _DUMP_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def load_dump(sql_path: str, db_path: str) -> None:
    """Load a dump into a new database file (the dump holds its own
    transaction), allowed to touch that file only, and check the result
    with ``integrity_check`` (writable_schema can leave a schema that lies)."""
    with open(sql_path, "rb") as fh:
        script = fh.read().decode("utf-8", "surrogateescape")
    try:
        with connect(db_path) as conn:
            conn.set_authorizer(_dump_authorizer)
            conn.executescript(script)
            conn.set_authorizer(None)
    except sqlite3.Error as exc:
        raise DatabaseError(f"the SQL dump does not load: {exc}") from None
    check = integrity_check(db_path)
    if check != "ok":
        raise DatabaseError(f"the SQL dump loads into a database that fails integrity_check: {check}")


def content_digest(path: str) -> str:
    """A digest of every table's rows (for tests and verification)."""
    h = hashlib.sha256()
    with connect(path, readonly=True) as conn:
        for t in _tables(conn):
            h.update(t.encode() + b"\0")
            for row in conn.execute(f"SELECT * FROM {_ident(t)} ORDER BY 1"):
                h.update(repr(row).encode() + b"\n")
    return h.hexdigest()
