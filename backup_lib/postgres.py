"""PostgreSQL databases: backup, verify and restore through the client tools.

The counterpart of ``database.py`` (SQLite) for a ``postgresql://`` or
``postgres://`` URL.  Every connection goes through the PostgreSQL client
tools themselves: ``psql`` (kept open as a session where a transaction must
stay open), ``pg_dump`` and ``pg_restore``.  So one libpq parses the URL's
parameters, reads ``~/.pgpass`` and service files and negotiates TLS for all
of them, and the toolkit needs no database driver of its own.

* backup: one ``REPEATABLE READ`` transaction exports its snapshot
  (``pg_export_snapshot()``); ``pg_dump --format=custom --snapshot`` dumps
  exactly that snapshot (an MVCC snapshot: writers are never locked out) and
  the same transaction, still open, counts the rows of every table whose
  data the dump holds.  The plain SQL dump is rendered from the custom one
  (``pg_restore -f``), so both hold the same data.  The dumps go to a
  private work folder and are streamed into the archive: memory stays flat
  whatever the database's size.
* verify: the archive's own checks (every hash), ``pg_restore --list`` over
  the custom dump, and the metadata against that list.
* restore: never drops the live database first.  It restores into a new
  database beside it, checks the row counts against the metadata, takes a
  safety backup of the live one, then swaps the names in one transaction.
  Any failure leaves the live database as it was and drops the new one.

Passwords come from the URL, ``PGPASSWORD`` or ``~/.pgpass``.  A URL's
password is handed to the tools in their environment (``PGPASSWORD``),
never in their arguments, and every message passed on is scrubbed of it;
metadata and output show the URL without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from .errors import DatabaseError, IntegrityError, NotFoundError, UsageError

__all__ = [
    "PgTarget",
    "PgTools",
    "PgBackupResult",
    "PgRestoreResult",
    "Toc",
    "is_postgres_url",
    "parse_url",
    "locate_postgres",
    "find_tools",
    "version_problem",
    "parse_toc",
    "pg_backup",
    "pg_verify",
    "verify_backup",
    "pg_restore_backup",
]

ENGINE = "postgresql"
SCHEMES = ("postgresql", "postgres")
URL_VARIABLES = ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI")
TOOLS = ("pg_dump", "pg_restore", "psql")
APP_NAME = "backup-toolkit"
NAMEDATALEN = 63  # the longest identifier PostgreSQL keeps (bytes); longer ones are cut silently
_KEYWORD = re.compile(r"[a-z_]+")
# Parameters that are secrets: never shown, never passed in arguments.
_SECRET_KEYS = {"password", "sslpassword"}
_SAFE_SETTING = re.compile(r"[A-Za-z0-9_.@ -]{1,100}")  # encoding / locale names from metadata


# ------------------------------------------------------------------- the URL


@dataclass(frozen=True)
class PgTarget:
    """A parsed connection URL: libpq keywords (never the password) and the
    password apart, which only ever reaches the tools' environment."""

    params: tuple[tuple[str, str], ...]
    password: str | None = field(default=None, repr=False)

    @property
    def dbname(self) -> str | None:
        return dict(self.params).get("dbname") or None

    def with_params(self, **values: str | None) -> "PgTarget":
        params = dict(self.params)
        for k, v in values.items():
            if v is None:
                params.pop(k, None)
            else:
                params[k] = v
        return PgTarget(tuple(params.items()), self.password)

    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq keyword/value string for ``-d``: no password in it."""
        params = dict(self.params)
        if dbname is not None:
            params["dbname"] = dbname
        return " ".join(f"{k}={_conninfo_value(v)}" for k, v in params.items())

    def shown(self, dbname: str | None = None) -> str:
        """The URL as output and metadata show it: without the password."""
        params = dict(self.params)
        if dbname is not None:
            params["dbname"] = dbname
        user = params.pop("user", None)
        host = params.pop("host", None)
        port = params.pop("port", None)
        db = params.pop("dbname", None)
        netloc = ""
        if user:
            netloc = quote(user, safe="") + "@"
        hosts = host.split(",") if host else []
        if hosts and not any(h.startswith("/") for h in hosts):
            ports = port.split(",") if port else []
            ports = ports * len(hosts) if len(ports) == 1 else ports
            for i, h in enumerate(hosts):
                netloc += ("," if i else "") + (f"[{h}]" if ":" in h else quote(h, safe=".-_~"))
                if i < len(ports) and ports[i]:
                    netloc += f":{ports[i]}"
        elif host:
            params = {"host": host, **({"port": port} if port else {}), **params}
        elif port:
            netloc += f":{port}"
        query = "&".join(f"{k}={quote(v, safe='/.-_~')}" for k, v in params.items())
        return f"postgresql://{netloc}/{quote(db or '', safe='')}" + (f"?{query}" if query else "")

    def secrets(self) -> list[str]:
        """Every form a password could take in a message, for scrubbing."""
        out = set()
        for value in (self.password, os.environ.get("PGPASSWORD")):
            if value:
                out.update({value, quote(value, safe=""), quote(value)})
        return sorted(out, key=len, reverse=True)

    def env(self) -> dict[str, str]:
        """The tools' environment: the password as PGPASSWORD, the app's URL
        variables and the toolkit's own (which may hold it) left out."""
        env = dict(os.environ)
        for var in (*URL_VARIABLES, "INVOKE_DB_URL"):
            env.pop(var, None)
        if self.password:
            env["PGPASSWORD"] = self.password
        keys = dict(self.params)
        if "connect_timeout" not in keys:
            env.setdefault("PGCONNECT_TIMEOUT", "10")
        if "application_name" not in keys:
            env["PGAPPNAME"] = APP_NAME
        return env


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_postgres_url(url: str | None) -> bool:
    """postgresql://, postgres://, and SQLAlchemy's postgresql+driver://."""
    if not url:
        return False
    scheme = url.strip().strip("'\"").partition("://")[0].lower()
    return scheme in SCHEMES or scheme.startswith("postgresql+")


def _bad_url(reason: str) -> UsageError:
    return UsageError(f"invalid PostgreSQL URL: {reason} (expected postgresql://user@host:port/dbname?param=value)")


def parse_url(url: str) -> PgTarget:
    """Parse a connection URL as libpq does (RFC 3986 with libpq's rules):
    ``postgresql://[user[:password]@][host][:port][,host2[:port2]…][/dbname][?key=value&…]``.
    A host may be a percent-encoded socket folder, or given as
    ``?host=/socket/dir``; ``service=``, ``sslmode=`` and every other libpq
    keyword pass through.  Messages never quote the URL (it may hold a
    password)."""
    url = url.strip().strip("'\"")
    scheme, sep, rest = url.partition("://")
    if not sep or not is_postgres_url(url):
        raise _bad_url("not a postgresql:// or postgres:// URL")
    params: dict[str, str] = {}
    password = None
    # Credentials: up to an "@" that comes before any "/" (libpq's look-ahead).
    cut = len(rest)
    for i, ch in enumerate(rest):
        if ch in "@/":
            cut = i
            break
    if cut < len(rest) and rest[cut] == "@":
        cred, rest = rest[:cut], rest[cut + 1 :]
        user, colon, pw = cred.partition(":")
        if user:
            params["user"] = unquote(user)
        if colon and pw:
            password = unquote(pw)
    netloc, slash, tail = rest.partition("/")
    if not slash:
        netloc, qmark, query = netloc.partition("?")
        dbpart = ""
    else:
        dbpart, qmark, query = tail.partition("?")
    hosts, ports = [], []
    for item in netloc.split(",") if netloc else []:
        if item.startswith("["):
            end = item.find("]")
            if end < 0:
                raise _bad_url("an IPv6 address is missing its ']'")
            host, after = item[1:end], item[end + 1 :]
            port = after[1:] if after.startswith(":") else ""
            if after and not after.startswith(":"):
                raise _bad_url("unexpected characters after an IPv6 address")
        else:
            host, _c, port = item.partition(":")
        if port and not port.isdigit():
            raise _bad_url("the port is not a number")
        hosts.append(unquote(host))
        ports.append(port)
    if any(hosts):
        params["host"] = ",".join(hosts)
    if any(ports):
        params["port"] = ",".join(ports)
    if dbpart:
        params["dbname"] = unquote(dbpart)
    for pair in query.split("&") if query else []:
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        key, value = unquote(key), unquote(value)
        if not eq:
            raise _bad_url(f"query parameter {key!r} has no value")
        if key == "ssl" and value == "true":  # JDBC's spelling, as libpq accepts it
            key, value = "sslmode", "require"
        if not _KEYWORD.fullmatch(key):
            raise _bad_url(f"unknown query parameter {key!r}")
        if key == "password":
            password = value or None
            continue
        if key == "sslpassword":
            raise _bad_url("sslpassword is not supported (it would show in the tools' arguments): use ~/.pgpass or an unencrypted key")
        params[key] = value
    for key, value in params.items():
        if "\0" in value:
            raise _bad_url(f"{key} holds a NUL character")
    return PgTarget(tuple(params.items()), password)


def locate_postgres(root: str, url: str | None = None) -> tuple[PgTarget, str] | None:
    """The project's PostgreSQL database: ``url`` (config ``db.url``), else
    ``DATABASE_URL`` / ``SQLALCHEMY_DATABASE_URI`` from the environment, else
    from the project's ``.env`` (the resolution of :mod:`backup_lib.dbpath`,
    which every task shares).  None when the first URL found is not a
    PostgreSQL one (the SQLite engine's business)."""
    from .dbpath import url_setting

    if url:
        return (parse_url(url), "db.url") if is_postgres_url(url) else None
    found = url_setting(root)
    if found and is_postgres_url(found[0]):
        return parse_url(found[0]), found[1]
    return None


def _scrub(text: str, hidden: list[str]) -> str:
    for value in hidden:
        text = text.replace(value, "***")
    return text


def _one_line(text: str, limit: int = 600) -> str:
    """A tool's stderr as one line: prefixes dropped, lines joined, cut short."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^(psql|pg_dump|pg_restore)(:<stdin>:\d+)?: (error: )?", "", line.strip())
        if line and line not in lines:
            lines.append(line)
    text = " ".join(lines) or "no message"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ the tools


def _version_key(version: str) -> tuple[int, ...]:
    """A major version as PostgreSQL counts them: (16,), or (9, 6) before 10."""
    m = re.match(r"(\d+)(?:\.(\d+))?", version)
    if not m:
        return (0,)
    major = int(m.group(1))
    return (major,) if major >= 10 else (major, int(m.group(2) or 0))


def _server_key(num: int) -> tuple[int, ...]:
    return (num // 10000,) if num >= 100000 else (num // 10000, num // 100 % 100)


def _major_text(key: tuple[int, ...]) -> str:
    return ".".join(map(str, key))


@dataclass(frozen=True)
class PgTools:
    pg_dump: str
    pg_restore: str
    psql: str
    versions: dict = field(default_factory=dict)  # tool -> version text ("16.2")

    def version(self, tool: str) -> str:
        return self.versions.get(tool, "")


_TOOL_VERSION = re.compile(r"\(PostgreSQL\)\s+(\S.*?)\s*$")


def _tool_version(path: str, name: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseError(f"{name} ({path}) does not run: {getattr(exc, 'strerror', None) or exc}") from None
    text = out.stdout.decode("utf-8", "replace").strip().splitlines()
    m = _TOOL_VERSION.search(text[0]) if text else None
    if out.returncode != 0 or not m:
        raise DatabaseError(f"{name} ({path}) does not say which PostgreSQL version it is: not a PostgreSQL client tool?")
    return m.group(1)


def find_tools(bin_dir: str | None = None, need=TOOLS) -> PgTools:
    """pg_dump, pg_restore and psql from ``bin_dir`` (config db.pg_bin_dir),
    else from PATH, with their versions."""
    found, versions = {}, {}
    for name in TOOLS:
        if name not in need:
            found[name] = ""
            continue
        if bin_dir:
            path = os.path.join(bin_dir, name)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise DatabaseError(
                    f"{name} not found in db.pg_bin_dir {bin_dir}: install the PostgreSQL client tools "
                    f"(Debian/Ubuntu: postgresql-client) or point db.pg_bin_dir at their folder"
                )
        else:
            path = shutil.which(name)
            if not path:
                raise DatabaseError(
                    f"{name} not found on PATH: install the PostgreSQL client tools, version at least the server's "
                    f"(Debian/Ubuntu: postgresql-client-<major>), or set db.pg_bin_dir to their folder"
                )
        found[name] = path
        versions[name] = _tool_version(path, name)
    return PgTools(found["pg_dump"], found["pg_restore"], found["psql"], versions)


def version_problem(tool: str, tool_version: str, server_version: str, server_num: int) -> str | None:
    """Why ``tool`` cannot work with this server (it is older), else None."""
    have, want = _version_key(tool_version), _server_key(server_num)
    if have >= want:
        return None
    major = _major_text(want)
    return (
        f"{tool} {tool_version} is older than the server (PostgreSQL {server_version}): install the PostgreSQL {major} "
        f"client tools or newer (Debian/Ubuntu: postgresql-client-{major}) and put them on PATH or set db.pg_bin_dir"
    )


def _check_versions(tools: PgTools, facts: dict, names=("pg_dump", "pg_restore")) -> None:
    for name in names:
        if tools.version(name):
            problem = version_problem(name, tools.version(name), facts["server_version"], facts["server_version_num"])
            if problem:
                raise DatabaseError(problem)


# ---------------------------------------------------------------- processes


class _Children:
    """The tool processes of one operation, killed together on failure."""

    def __init__(self):
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self.cancelled = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            if self.cancelled:
                proc.kill()
            self._procs.append(proc)

    def kill_all(self) -> None:
        with self._lock:
            self.cancelled = True
            for proc in self._procs:
                if proc.poll() is None:
                    with contextlib.suppress(OSError):
                        proc.kill()


def _run_tool(argv: list[str], target: PgTarget, *, what: str, children: _Children | None = None, stdin_chunks=None,
              watch: str | None = None, progress=None) -> bytes:
    """Run a client tool; its stdout.  stdout and stderr go to temporary
    files (no pipe to fill up); ``stdin_chunks`` are fed until the tool stops
    reading; ``watch``'s growth is reported to ``progress``."""
    hidden = target.secrets()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL,
                                    stdout=out, stderr=err, env=target.env())
        except OSError as exc:
            raise DatabaseError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        if children is not None:
            children.add(proc)
        try:
            if stdin_chunks is not None:
                try:
                    for chunk in stdin_chunks:
                        proc.stdin.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the tool read what it needed
                finally:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                    if hasattr(stdin_chunks, "close"):
                        stdin_chunks.close()
            seen = 0
            while True:
                try:
                    proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    if watch and progress:
                        with contextlib.suppress(OSError):
                            size = os.stat(watch).st_size
                            if size > seen:
                                progress(0, size - seen)
                                seen = size
        except BaseException:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            raise
        if watch and progress:
            with contextlib.suppress(OSError):
                size = os.stat(watch).st_size
                if size > seen:
                    progress(0, size - seen)
        err.seek(0)
        message = _scrub(err.read().decode("utf-8", "replace"), hidden)
        if proc.returncode != 0:
            if children is not None and children.cancelled:
                raise DatabaseError(f"{what} was stopped")
            raise DatabaseError(f"{what} failed: {_one_line(message)}")
        out.seek(0)
        return out.read()


class _Session:
    """One psql process kept open: statements in, their output back, and a
    transaction held for as long as needed.  Each batch ends with an echo of
    a random marker; with ON_ERROR_STOP, an error ends psql (and so rolls
    back any open transaction) and its message is raised."""

    def __init__(self, tools: PgTools, target: PgTarget, dbname: str | None = None):
        self._hidden = target.secrets()
        self.shown = target.shown(dbname)
        env = target.env()
        env["PGCLIENTENCODING"] = "UTF8"
        self._err = tempfile.TemporaryFile()
        argv = [tools.psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-w", "-d", target.conninfo(dbname)]
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env)
        except OSError as exc:
            self._err.close()
            raise DatabaseError(f"cannot run {tools.psql}: {exc.strerror or exc}") from None
        self._mark = b"BKMARK" + secrets.token_hex(12).encode()
        self._answered = False

    def __enter__(self) -> "_Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, sql: str) -> str:
        """Send statements (each ending in ';'); their output."""
        payload = sql.strip().encode("utf-8") + b"\n\\echo " + self._mark + b"\n"
        try:
            self._proc.stdin.write(payload)
            self._proc.stdin.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            self._fail()
        lines = []
        while True:
            line = self._proc.stdout.readline()
            if not line:
                self._fail()
            if line.rstrip(b"\n") == self._mark:
                break
            lines.append(line)
        self._answered = True
        return b"".join(lines).decode("utf-8", "replace")

    def json(self, sql: str):
        text = self.run(sql).strip()
        return json.loads(text) if text else None

    def _fail(self):
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._err.seek(0)
        raw = _scrub(self._err.read().decode("utf-8", "replace"), self._hidden)
        message = _one_line(raw)
        self.close()
        if not self._answered and ("psql: error:" in raw or not raw.strip()):
            raise DatabaseError(f"cannot connect to PostgreSQL {self.shown}: {message}")
        raise DatabaseError(f"PostgreSQL {self.shown}: {message}")

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.kill()

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for fh in (proc.stdin, proc.stdout, self._err):
            with contextlib.suppress(OSError, ValueError):
                fh.close()


def quote_ident(name: str) -> str:
    if "\0" in name:
        raise UsageError("a database or table name holds a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    if "\0" in text:
        raise UsageError("a value holds a NUL character")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


# Run in the snapshot's transaction right after pg_export_snapshot(): every
# table is locked ACCESS SHARE (as pg_dump locks what it dumps) until the
# rows are counted, so that nothing MVCC-unsafe (TRUNCATE, a table rewrite)
# can slip in between pg_dump's end and the count and make the counts
# disagree with the dump.  Only ACCESS EXCLUSIVE waits for it; writers never
# do.  pg_dump takes its own locks too, so where the tables would fill more
# than a quarter of the server's shared lock table this is left out rather
# than risk "out of shared memory" in pg_dump.
_LOCK_TABLES = r"""
DO $backup_toolkit$
DECLARE
  t regclass;
  capacity bigint := current_setting('max_locks_per_transaction')::bigint
    * (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint);
BEGIN
  IF (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%') * 4 > capacity THEN
    RETURN;
  END IF;
  FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%' LOOP
    BEGIN
      EXECUTE format('LOCK TABLE ONLY %s IN ACCESS SHARE MODE', t);
    EXCEPTION WHEN undefined_table OR insufficient_privilege THEN
      NULL;  -- dropped meanwhile, or not ours to read (pg_dump says so if it needs it)
    END;
  END LOOP;
END
$backup_toolkit$;
"""


_FACTS_SQL = """
SELECT json_build_object(
  'database', current_database(),
  'user', current_user,
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'size', pg_database_size(current_database()),
  'encoding', pg_encoding_to_char(d.encoding),
  'collate', d.datcollate,
  'ctype', d.datctype,
  'owner', pg_get_userbyid(d.datdba),
  'extensions', (SELECT coalesce(json_object_agg(extname, extversion ORDER BY extname), '{}') FROM pg_extension)
) FROM pg_database d WHERE d.datname = current_database();
"""


# ------------------------------------------------------------------- the TOC


@dataclass
class Toc:
    """What ``pg_restore --list`` says about a custom dump."""

    dbname: str | None = None
    dumped_from: str | None = None
    dumped_by: str | None = None
    compression: str | None = None
    format: str | None = None
    entries: int = 0
    table_data: list[tuple[int, str]] = field(default_factory=list)  # (table oid, "schema name owner")


_TOC_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")


def parse_toc(text: str) -> Toc:
    toc = Toc()
    heads = {"dbname": "dbname", "Dumped from database version": "dumped_from", "Dumped by pg_dump version": "dumped_by",
             "Compression": "compression", "Format": "format"}
    for line in text.splitlines():
        if line.startswith(";"):
            key, colon, value = line[1:].strip().partition(":")
            if colon and key in heads and getattr(toc, heads[key]) is None:
                setattr(toc, heads[key], value.strip())
            continue
        m = _TOC_ENTRY.match(line)
        if not m:
            continue
        toc.entries += 1
        if m.group(4).startswith("TABLE DATA "):
            toc.table_data.append((int(m.group(3)), m.group(4)[len("TABLE DATA ") :]))
    return toc


def split_qualified(key: str) -> tuple[str, str] | None:
    """``schema.table`` as quote_ident() writes each part, back to its parts."""
    parts: list[str] = []
    i, n = 0, len(key)
    for index in (0, 1):
        if key.startswith('"', i):
            buf, j = [], i + 1
            while True:
                k = key.find('"', j)
                if k < 0:
                    return None
                buf.append(key[j:k])
                if not key.startswith('"', k + 1):
                    break
                buf.append('"')
                j = k + 2
            parts.append("".join(buf))
            i = k + 1
        else:
            k = key.find(".", i) if index == 0 else n
            if k <= i:
                return None
            parts.append(key[i:k])
            i = k
        if index == 0:
            if not key.startswith(".", i):
                return None
            i += 1
    return (parts[0], parts[1]) if i == n else None


def _toc_problems(toc: Toc, meta: dict) -> list[str]:
    """The metadata against what the dump's TOC says."""
    errors = []
    if toc.format and toc.format != "CUSTOM":
        errors.append(f"the dump is in {toc.format} format, not custom")
    if toc.dbname != meta.get("database"):
        errors.append(f"the dump is of database {toc.dbname!r}, the metadata says {meta.get('database')!r}")
    if meta.get("server_version") and toc.dumped_from != meta.get("server_version"):
        errors.append(f"the dump was taken from PostgreSQL {toc.dumped_from}, the metadata says {meta.get('server_version')}")
    if meta.get("client_version") and toc.dumped_by != meta.get("client_version"):
        errors.append(f"the dump was made by pg_dump {toc.dumped_by}, the metadata says {meta.get('client_version')}")
    tables = meta.get("tables")
    if not isinstance(tables, dict):
        return errors + ["the metadata has no table row counts"]
    if len(toc.table_data) != len(tables):
        return errors + [f"the dump holds the data of {len(toc.table_data)} tables, the metadata counts rows in {len(tables)}"]
    remaining = [rest for _oid, rest in toc.table_data]
    for key in tables:
        parts = split_qualified(key)
        if parts is None:
            errors.append(f"the metadata names a table oddly: {key!r}")
            continue
        # pg_restore --list writes names as they are, newlines made spaces.
        prefix = " ".join(p.replace("\r", " ").replace("\n", " ") for p in parts) + " "
        hit = next((r for r in remaining if r.startswith(prefix)), None)
        if hit is None:
            errors.append(f"the metadata counts rows of {key}, whose data the dump does not hold")
        else:
            remaining.remove(hit)
    return errors


# ------------------------------------------------------------------ counting


_TABLES_BY_OID = """
SELECT coalesce(json_agg(json_build_array(c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname)) ORDER BY c.oid), '[]')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY('{%s}'::oid[]);
"""

_USER_TABLES = """
SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname))), '[]')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%';
"""


def _count_rows(session: _Session, names: list[str], batch: int = 500) -> list[int]:
    """count(*) of each table (ONLY: a table's own rows, as its dump holds);
    ``names`` are quote_ident() text from the server itself, never from an
    archive."""
    counts: list[int] = []
    for start in range(0, len(names), batch):
        part = names[start : start + batch]
        union = " UNION ALL ".join(f"SELECT {i} AS i, count(*) AS n FROM ONLY {name}" for i, name in enumerate(part))
        got = session.json(f"SELECT json_agg(n ORDER BY i) FROM ({union}) s;")
        counts.extend(int(n) for n in got)
    return counts


def _snapshot_counts(session: _Session, oids: list[int]) -> dict[str, int]:
    if not oids:
        return {}
    rows = session.json(_TABLES_BY_OID % ",".join(str(int(o)) for o in sorted(set(oids))))
    names = [name for _oid, name in rows]
    if len(names) != len(set(oids)):
        raise DatabaseError("a table the dump holds is not in the snapshot's catalog")
    return dict(sorted(zip(names, _count_rows(session, names))))


def _restored_counts(session: _Session, wanted: dict) -> tuple[dict[str, int], list[str]]:
    """Row counts in a restored database of the tables the metadata names;
    and the names it lacks."""
    present = {(s, t): name for s, t, name in session.json(_USER_TABLES)}
    found, missing = {}, []
    for key in wanted:
        parts = split_qualified(key)
        name = present.get(parts) if parts else None
        if name is None:
            missing.append(key)
        else:
            found[key] = name
    counts = _count_rows(session, list(found.values()))
    return dict(zip(found, counts)), missing


# -------------------------------------------------------------------- backup


def _file_name(dbname: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", dbname).strip(".") or "database"
    return safe[:100]


def _dump_compression(archive_compression: str) -> list[str]:
    """Compress once: an archive that compresses gets an uncompressed dump
    (the archive's compressor is faster than pg_dump's zlib, and a
    compressed dump would not shrink further); a plain .tar keeps pg_dump's
    own compression."""
    return [] if archive_compression == "none" else ["--compress=0"]


def pg_dump_command(tools: PgTools, target: PgTarget, *, out: str, snapshot: str | None, compression: str,
                    schemas=(), exclude_tables=()) -> list[str]:
    argv = [tools.pg_dump, "--format=custom", "--no-password", f"--file={out}", *_dump_compression(compression)]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    argv += [f"--schema={s}" for s in schemas]
    argv += [f"--exclude-table={t}" for t in exclude_tables]
    argv.append(f"--dbname={target.conninfo()}")
    return argv


def _sha256(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


@dataclass(frozen=True)
class PgBackupResult:
    """As database.DbBackupResult: the archive and its metadata."""

    backup_path: str
    metadata: dict


def pg_backup(
    root: str,
    *,
    url: str | PgTarget,
    backup_dir: str | None = None,
    name: str | None = None,
    compression: str = "gz",
    sql_dump: bool = True,
    schemas=(),
    exclude_tables=(),
    environment: str | None = None,
    lock_timeout: float = 10.0,
    pg_bin_dir: str | None = None,
    progress=None,
    safety_for: str | None = None,
    found_by: str = "db.url",
    encrypt_to=(),
) -> PgBackupResult:
    """Dump the database into ``<name>_db_<ts>.tar.gz``: the custom dump,
    the SQL dump rendered from it, the manifest and the metadata.  With
    ``encrypt_to`` (age recipients) the archive is encrypted as it is
    written; the dumps themselves wait in a private folder (0700) in the
    backup dir and are removed at once."""
    from concurrent.futures import ThreadPoolExecutor

    from . import archive as _archive
    from .metadata import common_metadata, database_archive_facts, now_utc
    from .selection import Entry
    from .store import BackupStore, default_backup_dir

    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise NotFoundError(f"project root {root} does not exist or is not a directory")
    target = url if isinstance(url, PgTarget) else parse_url(url)
    tools = find_tools(pg_bin_dir)
    backup_dir = os.path.abspath(backup_dir or default_backup_dir(root, "db"))
    name = name or os.path.basename(root) or "project"
    compression_name = _archive.COMPRESSIONS[compression][1]
    store = BackupStore(backup_dir, "db")
    store.ensure()
    children = _Children()
    with store.lock(lock_timeout):
        store.remove_leftovers()
        now = now_utc()
        work = store.temp_dir(f"{name}_db")
        session = None
        try:
            session = _Session(tools, target)
            session.run("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET lock_timeout = 0;")
            facts = session.json(_FACTS_SQL)
            _check_versions(tools, facts)
            # One snapshot for the dump and the counts; pg_dump imports it.
            snapshot = session.json(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL row_security = off;"
                " SELECT to_json(pg_export_snapshot());"
            )
            session.run(_LOCK_TABLES)
            base = _file_name(facts["database"])
            dump_name, sql_name = base + ".dump", base + ".sql"
            dump_path, sql_path = os.path.join(work, dump_name), os.path.join(work, sql_name)
            _run_tool(pg_dump_command(tools, target, out=dump_path, snapshot=snapshot, compression=compression,
                                      schemas=schemas, exclude_tables=exclude_tables),
                      target, what="pg_dump", children=children, watch=dump_path, progress=progress)
            toc = parse_toc(_run_tool([tools.pg_restore, "--list", dump_path], target, what="pg_restore --list", children=children).decode("utf-8", "replace"))
            with ThreadPoolExecutor(max_workers=2) as pool:
                counting = pool.submit(_snapshot_counts, session, [oid for oid, _rest in toc.table_data])
                rendering = pool.submit(_run_tool, [tools.pg_restore, f"--file={sql_path}", dump_path], target,
                                        what="pg_restore (the SQL dump)", children=children) if sql_dump else None
                try:
                    def entries():
                        yield Entry.from_stat(dump_name, "file", os.lstat(dump_path))
                        if rendering is not None:
                            rendering.result()
                            yield Entry.from_stat(sql_name, "file", os.lstat(sql_path))

                    def metadata_for(rep, writer) -> dict:
                        if rep.skipped or rep.changed:
                            raise DatabaseError(f"the dumps in {work} could not be read whole: no backup was kept")
                        tables = counting.result()
                        records = rep.records
                        meta = common_metadata(backup_type="database", root=root, compression=compression_name,
                                               environment=environment, now=now)
                        meta.update({
                            "engine": ENGINE,
                            "source": target.shown(),
                            "found_by": found_by,
                            "database": facts["database"],
                            "server_version": facts["server_version"],
                            "server_version_num": facts["server_version_num"],
                            "client_version": toc.dumped_by,
                            "size": facts["size"],
                            "encoding": facts["encoding"],
                            "collate": facts["collate"],
                            "ctype": facts["ctype"],
                            "owner": facts["owner"],
                            "extensions": facts["extensions"],
                            "snapshot": snapshot,
                            "tables": tables,
                            "schemas": list(schemas),
                            "exclude_tables": list(exclude_tables),
                            "dump_file": dump_name,
                            "dump_format": "custom",
                            "dump_compression": toc.compression,
                            "dump_size": records[dump_name]["size"],
                            "dump_sha256": records[dump_name]["sha256"],
                            "sql_dump": sql_name if sql_dump else None,
                            "sql_size": records[sql_name]["size"] if sql_dump else None,
                            "sql_sha256": records[sql_name]["sha256"] if sql_dump else None,
                            **database_archive_facts(rep, writer, safety_for),
                        })
                        return meta

                    final, metadata = store.write_archive(
                        name=name, compression=compression, root=work, entries=entries(), metadata_for=metadata_for,
                        now=now, progress=progress, keep_records=True, encrypt_to=list(encrypt_to) or None,
                    )
                except BaseException:
                    children.kill_all()
                    session.kill()  # a count still running ends now
                    raise
        except BaseException:
            children.kill_all()
            raise
        finally:
            if session is not None:
                session.close()  # ends the snapshot's transaction
            shutil.rmtree(work, ignore_errors=True)
    return PgBackupResult(final, metadata)


# -------------------------------------------------------------------- verify


def _meta_problems(meta: dict) -> list[str]:
    if meta.get("backup_type") != "database":
        return [f"not a database backup (backup_type {meta.get('backup_type')!r})"]
    if meta.get("engine") != ENGINE:
        return [f"not a PostgreSQL backup (engine {meta.get('engine')!r})"]
    dump = meta.get("dump_file")
    if not isinstance(dump, str) or not dump.endswith(".dump") or "/" in dump:
        return [f"the metadata names no custom dump ({dump!r})"]
    sql = meta.get("sql_dump")
    if sql is not None and (not isinstance(sql, str) or "/" in sql or sql == dump):
        return [f"the metadata names an odd SQL dump ({sql!r})"]
    return []


def _content_problems(res, meta: dict) -> list[str]:
    """The dumps the metadata names, against what the archive holds."""
    errors = []
    dump, sql = meta["dump_file"], meta.get("sql_dump")
    if res.sha256_of(dump) is None:
        return [f"the custom dump {dump!r} is missing from the archive"]
    if res.sha256_of(dump) != meta.get("dump_sha256"):
        errors.append("the custom dump's SHA-256 does not match the metadata")
    if sql:
        if res.sha256_of(sql) is None:
            errors.append(f"the SQL dump {sql!r} is missing from the archive")
        elif res.sha256_of(sql) != meta.get("sql_sha256"):
            errors.append("the SQL dump's SHA-256 does not match the metadata")
    return errors


def _restore_version_problem(tools: PgTools, meta: dict) -> str | None:
    made_by = meta.get("client_version") or ""
    if made_by and _version_key(tools.version("pg_restore")) < _version_key(made_by):
        major = _major_text(_version_key(made_by))
        return (
            f"pg_restore {tools.version('pg_restore')} cannot read a dump made by pg_dump {made_by}: install the "
            f"PostgreSQL {major} client tools or newer (Debian/Ubuntu: postgresql-client-{major}) and put them on PATH "
            f"or set db.pg_bin_dir"
        )
    return None


def _member_chunks(archive: str, member: str, identity_file: str | None = None):
    """The bytes of one archive member, streamed (a second pass: the first,
    scan_archive, checked every hash)."""
    from .archive import ArchiveReader

    members = iter(ArchiveReader(archive, identity_file=identity_file))
    try:
        for ti, fobj in members:
            if ti.name == member:
                while chunk := fobj.read(1 << 20):
                    yield chunk
                return
    finally:
        members.close()  # the decompressor's thread stops here


def verify_backup(path: str, *, tools: PgTools | None = None, target: PgTarget | None = None, progress=None,
                  identity_file: str | None = None):
    """Verify one PostgreSQL backup without a server: every hash, the
    metadata, and ``pg_restore --list`` over the custom dump (streamed to
    it, never written to disk).  An encrypted backup is read with
    ``identity_file``; without one, its file is checked against the SHA-256
    recorded when it was written (as for any encrypted backup)."""
    from .archive.crypto import is_encrypted
    from .extract import scan_archive
    from .project import VerifyReport, verify_ciphertext

    if not os.path.exists(path):
        return VerifyReport(path, False, (f"{path} does not exist",))
    if identity_file is None and is_encrypted(path):
        return verify_ciphertext(path)
    try:
        res = scan_archive(path, progress=progress, identity_file=identity_file)
    except IntegrityError as exc:
        return VerifyReport(path, False, (str(exc),))
    meta = res.metadata or {}
    errors = list(res.errors) or _meta_problems(meta)
    if not errors:
        errors = _content_problems(res, meta)
    if not errors:
        tools = tools or find_tools(need=("pg_restore",))
        problem = _restore_version_problem(tools, meta)
        if problem:
            raise DatabaseError(problem)
        target = target or PgTarget(())
        try:
            listing = _run_tool([tools.pg_restore, "--list"], target, what="pg_restore --list",
                                stdin_chunks=_member_chunks(path, meta["dump_file"], identity_file))
            errors = _toc_problems(parse_toc(listing.decode("utf-8", "replace")), meta)
        except (DatabaseError, IntegrityError) as exc:
            errors = [f"the custom dump does not read: {exc}"]
    return VerifyReport(path, not errors, tuple(errors), meta)


def pg_verify(backup_dir: str, paths=(), *, pg_bin_dir: str | None = None, identity_file: str | None = None) -> list:
    """``db.verify`` for PostgreSQL backups: every one in ``backup_dir`` (or ``paths``)."""
    from .store import BackupStore

    if not paths:
        paths = [bf.path for bf in BackupStore(backup_dir, "db").backups()]
        if not paths:
            raise NotFoundError(f"no database backups to verify in {backup_dir}")
    tools = find_tools(pg_bin_dir, need=("pg_restore",))
    return [verify_backup(p, tools=tools, identity_file=identity_file) for p in paths]


# ------------------------------------------------------------------- restore


@dataclass(frozen=True)
class PgRestoreResult:
    database: str  # the name that now holds the restored data
    backup_path: str
    safety_backup: str | None  # the safety backup of the database it replaced
    tables: dict
    replaced: bool  # a live database was swapped out
    previous: str | None  # where the replaced database is kept (None: dropped, or there was none)
    terminated: int  # sessions ended by force
    notes: tuple[str, ...] = ()
    work_folders: tuple[dict, ...] = ()  # leftovers of killed runs removed from (or left in) the backup dir


def side_name(db: str, label: str, stamp: str, taken=()) -> str:
    """``<db>_<label>_<stamp>`` within PostgreSQL's 63 bytes (it would cut a
    longer one silently), not one of ``taken``."""
    for seq in range(1000):
        suffix = f"_{label}_{stamp}" + (f"_{seq}" if seq else "")
        room = NAMEDATALEN - len(suffix.encode())
        head = db.encode("utf-8")[:room].decode("utf-8", "ignore")
        name = head + suffix
        if name not in taken:
            return name
    raise DatabaseError(f"no free name for the {label} database of {db}")


def _extract_dump(archive: str, work: str, progress=None, identity_file: str | None = None):
    """Verify the whole archive while extracting only the custom dump."""
    from .extract import scan_archive
    from .wildmatch import PatternList, parse_lines

    try:
        res = scan_archive(archive, dest=work, includes=PatternList(b"", parse_lines(b"/*.dump\n")), progress=progress,
                           identity_file=identity_file)
    except IntegrityError as exc:
        raise IntegrityError(f"{archive} fails verification, nothing restored: {exc}") from None
    meta = res.metadata or {}
    if not res.errors and meta.get("backup_type") == "database" and meta.get("engine") in (None, "sqlite"):
        # A sound backup of the other engine: the wrong archive for this database, not a damaged one.
        raise UsageError(f"{archive} is a backup of a SQLite database, not of PostgreSQL: restore it into a SQLite file "
                         f"(--db-path, or db.path)")
    errors = list(res.errors) or _meta_problems(meta)
    if not errors:
        errors = _content_problems(res, meta)
    if errors:
        raise IntegrityError(f"{archive} fails verification, nothing restored: {errors[0]}")
    return meta


def _create_options(meta: dict, live_facts: dict | None) -> list[str]:
    """CREATE DATABASE options: the live database's encoding and locale, else
    the backup's (names from an archive only when they look like names)."""
    src = live_facts or meta
    opts = ["TEMPLATE template0"]
    for key, opt in (("encoding", "ENCODING"), ("collate", "LC_COLLATE"), ("ctype", "LC_CTYPE")):
        value = src.get(key)
        if isinstance(value, str) and _SAFE_SETTING.fullmatch(value):
            opts.append(f"{opt} {quote_literal(value)}")
    if live_facts and live_facts.get("owner"):
        opts.append(f"OWNER {quote_ident(live_facts['owner'])}")
    return opts


_DB_FACTS = """
SELECT coalesce(json_object_agg(d.datname, json_build_object(
  'encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate, 'ctype', d.datctype,
  'owner', pg_get_userbyid(d.datdba), 'allow_connections', d.datallowconn)), '{}')
FROM pg_database d;
"""


def _other_sessions(session: _Session, db: str) -> int:
    return int(session.json(
        f"SELECT to_json(count(*)) FROM pg_stat_activity WHERE datname = {quote_literal(db)} AND pid <> pg_backend_pid();"
    ))


def _maintenance(tools: PgTools, target: PgTarget, avoid: set[str]) -> _Session:
    """A session on ``postgres`` (else ``template1``): renames and drops
    cannot run from inside the databases they act on."""
    last = None
    for db in ("postgres", "template1"):
        if db in avoid:
            continue
        session = _Session(tools, target, db)
        try:
            session.run("SELECT 1;")
            return session
        except DatabaseError as exc:
            last = exc
    raise last or DatabaseError("no maintenance database to connect to")


def pg_restore_backup(
    archive: str,
    *,
    root: str,
    url: str | PgTarget,
    backup_dir: str | None = None,
    name: str | None = None,
    target_db: str | None = None,
    force: bool = False,
    drop_previous: bool = False,
    pg_bin_dir: str | None = None,
    lock_timeout: float = 10.0,
    jobs: int | None = None,
    progress=None,
    identity_file: str | None = None,
    encrypt_to=(),
    found_by: str = "db.url",
) -> PgRestoreResult:
    """Restore ``archive`` over the URL's database (or into ``target_db``).

    Never drops the live database first: verify the archive and its dump,
    restore into ``<db>_restore_<ts>``, check its row counts, take a safety
    backup of the live database, then rename in one transaction (the live
    one to ``<db>_previous_<ts>``, kept unless ``drop_previous``; the new one
    to the live name).  Refused while other sessions use the live database
    unless ``force``, which terminates them.  Any failure drops the new
    database and leaves the live one as it was.

    An encrypted backup needs ``identity_file``; ``encrypt_to`` encrypts
    the safety backup like any new backup.  The custom dump is extracted
    into a work folder in the backup dir (``.<archive>.restore-…``, swept
    like every work folder when its owner is gone)."""
    from .metadata import now_utc
    from .store import default_backup_dir
    from .workdir import create_work_dir, sweep

    root = os.path.abspath(root)
    if not os.path.exists(archive):
        raise NotFoundError(f"backup {archive} does not exist")
    target = url if isinstance(url, PgTarget) else parse_url(url)
    tools = find_tools(pg_bin_dir)
    backup_dir = os.path.abspath(backup_dir or default_backup_dir(root, "db"))
    parent = backup_dir if os.path.isdir(backup_dir) else os.path.dirname(os.path.abspath(archive))
    if not os.access(parent, os.W_OK):
        parent = tempfile.gettempdir()
    swept = tuple(sweep(parent))
    wd = create_work_dir(archive, "restore", parent=parent)
    work = wd.tree
    notes: list[str] = []
    try:
        # 1. The archive and its dump, before any database is touched.
        meta = _extract_dump(archive, work, progress, identity_file)
        dump = os.path.join(work, meta["dump_file"])
        problem = _restore_version_problem(tools, meta)
        if problem:
            raise DatabaseError(problem)
        try:
            listing = _run_tool([tools.pg_restore, "--list", dump], target, what="pg_restore --list")
        except DatabaseError as exc:
            raise IntegrityError(f"{archive}: the custom dump does not read, nothing restored: {exc}") from None
        errors = _toc_problems(parse_toc(listing.decode("utf-8", "replace")), meta)
        if errors:
            raise IntegrityError(f"{archive} fails verification, nothing restored: {errors[0]}")

        # 2. The server: versions, names, sessions.
        live = target_db or target.dbname
        if not live:
            with _Session(tools, target) as s:
                live = s.json("SELECT to_json(current_database());")
        stamp = f"{now_utc():%Y%m%d_%H%M%S}"
        with _maintenance(tools, target, {live}) as maint:
            facts = maint.json(_FACTS_SQL)
            databases = maint.json(_DB_FACTS)
            exists = live in databases
            if exists and not target_db:
                _check_versions(tools, facts, ("pg_dump",))  # for the safety backup, before anything is done
            if target_db and exists:
                raise DatabaseError(f"database {target_db} already exists: choose a new name for --target-db (the live database is never touched by it)")
            if exists and not force:
                others = _other_sessions(maint, live)
                if others:
                    raise DatabaseError(_busy(live, others))
        server_num = facts["server_version_num"]
        new = side_name(live, "restore", stamp, databases)
        previous = side_name(live, "previous", stamp, databases) if exists else None
        _create_database(tools, target, new, meta, databases.get(live), avoid={live, new}, notes=notes)
        try:
            # 3. Restore beside the live database and check it.
            jobs = jobs or max(1, min(4, os.cpu_count() or 1))
            _run_tool([tools.pg_restore, "--exit-on-error", "--no-password", f"--jobs={jobs}",
                       f"--dbname={target.conninfo(new)}", dump], target, what="pg_restore")
            with _Session(tools, target, new) as s:
                counts, missing = _restored_counts(s, meta["tables"])
                if missing:
                    raise IntegrityError(f"the restored database lacks tables the backup counted ({', '.join(missing[:5])}): nothing replaced")
                if counts != meta["tables"]:
                    diff = [f"{k}: {counts[k]} rows, the backup counted {meta['tables'][k]}" for k in counts if counts[k] != meta["tables"][k]]
                    raise IntegrityError(f"the restored database's row counts differ from the backup's ({'; '.join(diff[:3])}): nothing replaced")
                s.run("ANALYZE;")
            # 4. A safety backup of what is replaced, then the swap.
            safety = None
            if exists:
                safety = pg_backup(root, url=target.with_params(dbname=live), backup_dir=backup_dir, name=name,
                                   lock_timeout=lock_timeout, pg_bin_dir=pg_bin_dir, found_by=found_by,
                                   safety_for=os.path.basename(archive), encrypt_to=encrypt_to).backup_path
            terminated = _swap(tools, target, live=live, new=new, previous=previous, force=force,
                               allow=bool((databases.get(live) or {}).get("allow_connections", True)), server_num=server_num)
        except BaseException:
            # After a committed swap "new" names nothing any more: this drops
            # only a half-restored database.
            _drop_quietly(tools, target, new, live, server_num)
            raise
        if previous and drop_previous:
            try:
                with _maintenance(tools, target, {live, previous}) as m:
                    m.run(f"DROP DATABASE {quote_ident(previous)};")
                previous = None
            except DatabaseError as exc:
                notes.append(f"the previous database could not be dropped ({exc})")
        return PgRestoreResult(live, archive, safety, counts, exists, previous, terminated, tuple(notes), swept)
    finally:
        wd.remove()


def _create_database(tools: PgTools, target: PgTarget, name: str, meta: dict, live_facts: dict | None, *, avoid: set, notes: list) -> None:
    opts = _create_options(meta, live_facts)
    try:
        with _maintenance(tools, target, avoid) as m:
            m.run(f"CREATE DATABASE {quote_ident(name)} {' '.join(opts)};")
    except DatabaseError as exc:
        if "locale" not in str(exc).lower() and "collation" not in str(exc).lower():
            raise
        # The backup's locale is not on this server: the server's default.
        opts = [o for o in opts if not o.startswith(("LC_COLLATE", "LC_CTYPE"))]
        with _maintenance(tools, target, avoid) as m:
            m.run(f"CREATE DATABASE {quote_ident(name)} {' '.join(opts)};")
        notes.append(f"the backup's locale ({meta.get('collate')}) is not available here: {name} uses the server's default")


def _busy(db: str, n: int) -> str:
    return (f"database {db} is in use: {n} other session{'s' if n != 1 else ''} connected "
            f"(stop the application, or use --force to terminate them); nothing was changed")


def _swap(tools: PgTools, target: PgTarget, *, live: str, new: str, previous: str | None, force: bool,
          allow: bool, server_num: int) -> int:
    """Rename in one transaction, from a maintenance session; with ``force``
    first close the live database to new connections and terminate its
    sessions.  The number of sessions terminated."""
    if previous is None:  # nothing to replace
        with _maintenance(tools, target, {live, new}) as m:
            m.run(f"ALTER DATABASE {quote_ident(new)} RENAME TO {quote_ident(live)};")
        return 0
    terminated = 0
    closed = False
    try:
        with _maintenance(tools, target, {live, new, previous}) as m:
            if force:
                if allow:
                    m.run(f"ALTER DATABASE {quote_ident(live)} WITH ALLOW_CONNECTIONS false;")
                    closed = True
                wait = ", 5000" if server_num >= 140000 else ""
                terminated = int(m.json(
                    f"SELECT to_json(count(*)) FROM (SELECT pg_terminate_backend(pid{wait}) FROM pg_stat_activity "
                    f"WHERE datname = {quote_literal(live)} AND pid <> pg_backend_pid()) t;"
                ))
            reopen = f" ALTER DATABASE {quote_ident(previous)} WITH ALLOW_CONNECTIONS true;" if closed else ""
            # An error ends psql (ON_ERROR_STOP), which rolls the transaction back.
            m.run(
                f"BEGIN; ALTER DATABASE {quote_ident(live)} RENAME TO {quote_ident(previous)};"
                f" ALTER DATABASE {quote_ident(new)} RENAME TO {quote_ident(live)};{reopen} COMMIT;"
            )
        return terminated
    except BaseException as exc:
        if closed:
            # The renames were rolled back: the live name is still the live database.
            with contextlib.suppress(DatabaseError), _maintenance(tools, target, {live, new}) as m:
                m.run(f"ALTER DATABASE {quote_ident(live)} WITH ALLOW_CONNECTIONS true;")
        if isinstance(exc, DatabaseError) and "being accessed by other users" in str(exc):
            found = re.search(r"There (?:is|are) (\d+) other session", str(exc))
            raise DatabaseError(_busy(live, int(found.group(1)) if found else 1)) from None
        raise


def _drop_quietly(tools: PgTools, target: PgTarget, new: str, live: str, server_num: int) -> None:
    """Remove the half-restored database (a pg_restore still connected when
    interrupted is disconnected); never raises."""
    force = " WITH (FORCE)" if server_num >= 130000 else ""
    with contextlib.suppress(DatabaseError, OSError), _maintenance(tools, target, {live, new}) as m:
        m.run(f"DROP DATABASE IF EXISTS {quote_ident(new)}{force};")
