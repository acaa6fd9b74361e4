"""Which database the application uses: one resolution for every task.

Order, first match wins:

1. an explicit path (``--db-path`` or config ``db.path``);
2. config ``db.url`` (the same URL forms as below; together with an
   explicit path it is a usage error: one of them is the database);
3. the first of ``DATABASE_URL`` / ``SQLALCHEMY_DATABASE_URI`` that is set,
   each from the environment before the project's ``.env``: a
   ``sqlite:///…`` URL names the file, a ``postgresql://`` /
   ``postgres://`` URL a PostgreSQL database (:mod:`backup_lib.postgres`);
   any other URL (another engine, an in-memory SQLite database) names a
   database this tool does not back up, and is never a reason to take some
   other file;
4. the lone SQLite file (``*.db`` / ``*.sqlite`` / ``*.sqlite3`` starting
   with SQLite's header) under the root, outside the backup directories.

``backup.create`` and every ``db.*`` task call :func:`resolve_database`; the
database tasks refuse what it cannot name (:attr:`Database.problem`), and a
project backup leaves out what :func:`left_out_of_project_backups` says.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from .errors import UsageError
from .store import default_backup_dir

__all__ = [
    "URL_VARIABLES",
    "url_setting",
    "SUPPORTED_ENGINES",
    "Database",
    "DatabaseURL",
    "resolve_database",
    "parse_database_url",
    "sqlite_url_path",
    "side_files",
    "left_out_of_project_backups",
]

URL_VARIABLES = ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI")
SUPPORTED_ENGINES = ("sqlite", "postgresql")  # database.py dispatches on the engine
DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SQLITE_MAGIC = b"SQLite format 3\0"
_SCAN_SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".tox", ".mypy_cache"}
HOW_TO_SET = ("set it with --db-path, config db.path (invoke.yaml) or DATABASE_URL=sqlite:///path in .env "
              "(PostgreSQL: config db.url or DATABASE_URL=postgresql://…)")
SUPPORTED_URLS = "sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host:port/dbname"
EXPLICIT, CONFIGURED_URL, SCANNED, NOTHING = "db.path", "db.url", "found under the project root", "none"
_ENGINE_ALIASES = {"postgres": "postgresql", "pgsql": "postgresql", "mariadb": "mysql"}
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,40}")


def side_files(db: str) -> list[str]:
    """The database file and the files SQLite keeps beside it."""
    return [db, db + "-wal", db + "-shm", db + "-journal"]


# ------------------------------------------------------------ URLs (pure)


@dataclass(frozen=True)
class DatabaseURL:
    """What a database URL names, without its credentials.

    ``engine``: "sqlite", "postgresql", "mysql" …, or None when the value is
    not a URL; ``scheme``: as written ("postgresql+psycopg2"), only when it
    is a well-formed scheme; ``path``: a SQLite file (None for an in-memory
    database)."""

    engine: str | None
    scheme: str | None = None
    path: str | None = None


def parse_database_url(value: str) -> DatabaseURL:
    """Parse a SQLAlchemy-style URL.  Nothing of the user, password or host
    is kept, so no message built from the result can leak them."""
    value = value.strip().strip("'\"")
    scheme, sep, rest = value.partition("://")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        return DatabaseURL(None)
    engine = scheme.split("+", 1)[0].lower()
    engine = _ENGINE_ALIASES.get(engine, engine)
    if engine != "sqlite":
        return DatabaseURL(engine, scheme)
    rest, _, query = rest.partition("?")
    if not rest.startswith("/"):
        return DatabaseURL("sqlite", scheme)  # "sqlite://" alone, or a host part: SQLAlchemy opens :memory:
    path = unquote(rest[1:])  # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs"
    params = parse_qs(query)
    if path.startswith("file:") and "true" in [v.lower() for v in params.get("uri", [])]:
        if "memory" in params.get("mode", []):
            return DatabaseURL("sqlite", scheme)
        path = path[len("file:"):]
    if not path or path == ":memory:":
        return DatabaseURL("sqlite", scheme)
    return DatabaseURL("sqlite", scheme, path)


def sqlite_url_path(url: str) -> str | None:
    """The file path of a ``sqlite:///`` URL (relative or absolute), else None."""
    return parse_database_url(url).path


# ------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Database:
    """The application's database as :func:`resolve_database` found it.

    ``engine``: "sqlite", "postgresql", another engine named by a URL, or
    None when nothing names one; ``path``: the SQLite file, when there is
    one; ``url``: a PostgreSQL database's URL as written (it may hold a
    password: never shown, see :func:`backup_lib.postgres.parse_url`);
    ``how``: where it came from ("db.path", "db.url", "$DATABASE_URL",
    "DATABASE_URL in .env", "found under the project root", "none");
    ``candidates``: what the lone-file scan found (none or several when it
    could not choose); ``problem``: why the database tasks cannot use it,
    one line (None when they can)."""

    engine: str | None
    path: str | None
    how: str
    candidates: tuple[str, ...] = ()
    problem: str | None = None
    url: str | None = field(default=None, repr=False, compare=False)

    @property
    def usable(self) -> bool:
        return self.problem is None and (self.path is not None or self.url is not None)


def _dotenv(root: str) -> dict[str, str]:
    path = os.path.join(root, ".env")
    if not os.path.isfile(path):
        return {}
    from dotenv import dotenv_values

    try:
        return {k: v for k, v in dotenv_values(path).items() if v is not None}
    except (OSError, UnicodeDecodeError):
        return {}


def url_setting(root: str, environ=None) -> tuple[str, str] | None:
    """(value, where it was set) of the first of DATABASE_URL /
    SQLALCHEMY_DATABASE_URI that is set (environment, then ``.env``)."""
    return _url_setting(os.path.abspath(root), os.environ if environ is None else environ)


def _url_setting(root: str, environ) -> tuple[str, str] | None:
    """(value, where it was set) of the first URL variable that is set."""
    env_file = None
    for var in URL_VARIABLES:
        value = environ.get(var)
        source = f"${var}"
        if value is None:
            env_file = _dotenv(root) if env_file is None else env_file
            value = env_file.get(var)
            source = f"{var} in .env"
        if value and value.strip().strip("'\""):
            return value, source
    return None


def _relative(root: str, path: str) -> str:
    """A relative sqlite:/// path: where the file is (instance/ first, as
    Flask-SQLAlchemy resolves it), else where it will be: instance/ when that
    folder exists, else the root."""
    in_instance = os.path.join(root, "instance", path)
    at_root = os.path.join(root, path)
    if os.path.exists(in_instance):
        return in_instance
    if os.path.exists(at_root):
        return at_root
    return in_instance if os.path.isdir(os.path.join(root, "instance")) else at_root


def _from_url(root: str, value: str, source: str) -> Database:
    url = parse_database_url(value)
    if url.engine is None:
        return Database(None, None, source, problem=(
            f"{source} is not a database URL (scheme://…): the db tasks back up SQLite and PostgreSQL ({SUPPORTED_URLS})"))
    if url.engine not in SUPPORTED_ENGINES:
        return Database(url.engine, None, source, problem=(
            f"{source} names a {url.engine} database ({url.scheme}://…), which the db tasks do not back up: "
            f"they handle SQLite and PostgreSQL ({SUPPORTED_URLS}); to back up a SQLite file instead, name it with "
            f"--db-path or db.path"))
    if url.engine == "postgresql":
        return Database("postgresql", None, source, url=value.strip().strip("'\""))
    if url.path is None:
        return Database("sqlite", None, source, problem=(
            f"{source} names an in-memory SQLite database ({url.scheme}://…): there is no file to back up; "
            f"use {SUPPORTED_URLS}, or --db-path"))
    path = "/" + url.path.lstrip("/") if os.path.isabs(url.path) else _relative(root, url.path)
    return Database("sqlite", os.path.normpath(path), source)


def _looks_like_sqlite(path: str) -> bool:
    """SQLite's header, or unreadable (it may be one: never assume it is not)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return True


def _scan(root: str, skip_dirs: set[str]) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if d not in _SCAN_SKIP and os.path.join(dirpath, d) not in skip_dirs
        ]
        for f in filenames:
            if f.endswith(DB_SUFFIXES):
                full = os.path.join(dirpath, f)
                if os.path.isfile(full) and not os.path.islink(full) and _looks_like_sqlite(full):
                    found.append(full)
    return sorted(found)


def resolve_database(root: str, explicit: str | None = None, *, url: str | None = None, skip_dirs=(), environ=None) -> Database:
    """The one answer to "which is the application's database", for every task.

    ``explicit``: ``db.path``; ``url``: ``db.url``.  ``skip_dirs``: backup
    directories the scan must not enter (the two default ones under the
    root are always skipped).  Never raises for a database it cannot name
    (the answer's ``problem`` says why); both ``explicit`` and ``url`` is a
    :class:`UsageError` (exit 2): the configuration names two databases.
    """
    root = os.path.abspath(root)
    if url is not None and not url.strip().strip("'\""):
        url = None
    if explicit and url:
        raise UsageError("--db-path / db.path and db.url both name the database: set one of them "
                         "(db.path for a SQLite file, db.url for a URL)")
    if explicit:
        path = explicit if os.path.isabs(explicit) else os.path.join(root, explicit)
        return Database("sqlite", os.path.normpath(path), EXPLICIT)
    if url:
        return _from_url(root, url, CONFIGURED_URL)
    setting = _url_setting(root, os.environ if environ is None else environ)
    if setting:
        return _from_url(root, *setting)
    skip = {os.path.abspath(d) for d in (*skip_dirs, default_backup_dir(root, "project"), default_backup_dir(root, "db"))}
    candidates = tuple(_scan(root, skip))
    if len(candidates) == 1:
        return Database("sqlite", candidates[0], SCANNED, candidates)
    if not candidates:
        return Database(None, None, NOTHING, problem=f"no SQLite database found under {root}: {HOW_TO_SET}")
    names = ", ".join(os.path.relpath(c, root) for c in candidates[:5]) + (", …" if len(candidates) > 5 else "")
    return Database(None, None, SCANNED, candidates, problem=f"several SQLite databases found under {root} ({names}): {HOW_TO_SET}")


def left_out_of_project_backups(db: Database, root: str) -> tuple[list[str], str | None]:
    """The paths a project backup leaves out as the database, and a warning.

    The database tasks' file with its ``-wal``/``-shm``/``-journal``; when
    the scan found several and cannot choose, every one of them (a raw copy
    of a live database is never taken silently), with a warning that names
    them; nothing for a database that is not a file (another engine, memory).
    """
    if db.path:
        return side_files(db.path), None
    if len(db.candidates) > 1:
        names = ", ".join(os.path.relpath(c, root) for c in db.candidates[:5]) + (", …" if len(db.candidates) > 5 else "")
        return [p for c in db.candidates for p in side_files(c)], (
            f"several SQLite databases under the project root ({names}): all of them are left out "
            f"with their -wal/-shm/-journal files; name the application's database with db.path or "
            f"DATABASE_URL (or keep one with --include)")
    return [], None
