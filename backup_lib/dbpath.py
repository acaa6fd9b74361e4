"""Where the application's SQLite database is.

Order: an explicit path (flag or config ``db.path``), else ``DATABASE_URL`` /
``SQLALCHEMY_DATABASE_URI`` (``sqlite:///…``) from the environment or the
project's ``.env``, else (database tasks only) the single ``*.db`` /
``*.sqlite`` / ``*.sqlite3`` file under the root.
"""

from __future__ import annotations

import os
from urllib.parse import unquote

from .errors import DatabaseError

__all__ = ["URL_VARIABLES", "resolve_database", "sqlite_url_path", "side_files"]

URL_VARIABLES = ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI")
DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SCAN_SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".tox", ".mypy_cache"}
HOW_TO_SET = "set it with --db-path, config db.path (invoke.yaml) or DATABASE_URL=sqlite:///path in .env"


def side_files(db: str) -> list[str]:
    """The database file and the files SQLite keeps beside it."""
    return [db, db + "-wal", db + "-shm", db + "-journal"]


def sqlite_url_path(url: str) -> str | None:
    """The file path of a ``sqlite:///`` URL (relative or absolute), else None."""
    url = url.strip().strip("'\"")
    scheme, sep, rest = url.partition("://")
    if not sep or not (scheme == "sqlite" or scheme.startswith("sqlite+")):
        return None
    rest = rest.split("?", 1)[0]
    if not rest.startswith("/"):
        return None  # "sqlite://" alone (memory) or a host part
    path = unquote(rest[1:])  # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs"
    if not path or path == ":memory:":
        return None
    return path


def _dotenv(root: str) -> dict[str, str]:
    path = os.path.join(root, ".env")
    if not os.path.isfile(path):
        return {}
    from dotenv import dotenv_values

    try:
        return {k: v for k, v in dotenv_values(path).items() if v is not None}
    except (OSError, UnicodeDecodeError):
        return {}


def _from_url(root: str) -> tuple[str, str] | None:
    env_file = None
    for var in URL_VARIABLES:
        value = os.environ.get(var)
        source = f"${var}"
        if value is None:
            env_file = _dotenv(root) if env_file is None else env_file
            value = env_file.get(var)
            source = f"{var} in .env"
        if value:
            path = sqlite_url_path(value)
            if path is None:
                continue
            if os.path.isabs(path):
                path = "/" + path.lstrip("/")
            else:
                path = _relative(root, path)
            return os.path.normpath(path), source
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


def _scan(root: str, skip_dirs: set[str]) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if d not in _SCAN_SKIP and os.path.join(dirpath, d) not in skip_dirs
        ]
        for f in filenames:
            if f.endswith(DB_SUFFIXES):
                full = os.path.join(dirpath, f)
                if os.path.isfile(full) and not os.path.islink(full):
                    found.append(full)
    return sorted(found)


def resolve_database(root: str, explicit: str | None = None, *, scan: bool = False, skip_dirs=()) -> tuple[str | None, str]:
    """(path, how it was found); path None when nothing names a database.

    With ``scan`` (the database tasks) a lone database file under the root is
    found too, and none or several is an error that says how to choose.
    """
    root = os.path.abspath(root)
    if explicit:
        path = explicit if os.path.isabs(explicit) else os.path.join(root, explicit)
        return os.path.normpath(path), "db.path"
    found = _from_url(root)
    if found:
        return found
    if not scan:
        return None, "none"
    candidates = _scan(root, {os.path.abspath(d) for d in skip_dirs})
    if not candidates:
        raise DatabaseError(f"no SQLite database found under {root}: {HOW_TO_SET}")
    if len(candidates) > 1:
        names = ", ".join(os.path.relpath(c, root) for c in candidates[:5])
        raise DatabaseError(f"several SQLite databases found under {root} ({names}): {HOW_TO_SET}")
    return candidates[0], "found under the project root"
