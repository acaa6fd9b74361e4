"""The metadata common to every backup: who, when, what, from where."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import socket

from . import __version__
from . import git as _git
from .archive import FORMAT_VERSION

__all__ = ["SUMMARY_FIELDS", "now_utc", "shown_path", "common_metadata", "application_version", "environment_name", "database_info", "file_sha256"]


# What a listing shows of each project backup, read from its metadata
# (backup.list, local or remote).
SUMMARY_FIELDS = ("backup_timestamp", "backup_type", "total_files", "total_size", "compression", "project_hash")


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def shown_path(root: str, path: str) -> str:
    """A path as metadata shows it: relative when inside the root."""
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel


def application_version(root: str) -> str | None:
    """From pyproject.toml, package.json or VERSION, else None."""
    pyproject = os.path.join(root, "pyproject.toml")
    if os.path.isfile(pyproject):
        import tomllib

        try:
            with open(pyproject, "rb") as fh:
                data = tomllib.load(fh)
            version = data.get("project", {}).get("version") or data.get("tool", {}).get("poetry", {}).get("version")
            if isinstance(version, str):
                return version
        except (OSError, tomllib.TOMLDecodeError):
            pass
    package = os.path.join(root, "package.json")
    if os.path.isfile(package):
        try:
            with open(package, encoding="utf-8") as fh:
                version = json.load(fh).get("version")
            if isinstance(version, str):
                return version
        except (OSError, ValueError, AttributeError):
            pass
    version_file = os.path.join(root, "VERSION")
    if os.path.isfile(version_file):
        try:
            with open(version_file, encoding="utf-8") as fh:
                text = fh.read(200).strip()
            if text and re.fullmatch(r"[\w.+\-]+", text):
                return text
        except (OSError, UnicodeDecodeError):
            pass
    return None


def environment_name(configured: str | None = None) -> str:
    return configured or os.environ.get("APP_ENV") or os.environ.get("ENVIRONMENT") or "development"


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def database_info(root: str, db_path: str | None) -> dict | None:
    if not db_path:
        return None
    shown = shown_path(root, db_path)
    try:
        st = os.stat(db_path)
        digest = file_sha256(db_path)
    except OSError:
        return {"path": shown, "size": None, "hash": None, "exists": False}
    return {"path": shown, "size": st.st_size, "hash": digest}


def database_archive_facts(rep, writer, safety_for: str | None) -> dict:
    """What every database backup's metadata says of the archive written
    (both engines), and whether db.restore took it as a safety backup."""
    facts = {
        "total_files": rep.total_files,
        "total_size": rep.total_size,
        "project_hash": writer.finish_hash(),
        "safety_backup": safety_for is not None,
        "skipped_files": rep.skipped,
    }
    if safety_for:
        facts["reason"] = f"taken by db.restore before restoring {safety_for}"
    return facts


def common_metadata(*, backup_type: str, root: str, compression: str, environment: str | None, now: _dt.datetime,
                    git_head: "_git.HeadQuery | None" = None) -> dict:
    """``git_head``: the git facts, asked for earlier (else asked now)."""
    top = _git.find_repo(root) if git_head is None else None
    return {
        "format_version": FORMAT_VERSION,
        "backup_type": backup_type,
        "backup_timestamp": now.isoformat(),
        "project_root": root,
        "hostname": socket.gethostname(),
        "tool_version": __version__,
        "application_version": application_version(root),
        "environment": environment_name(environment),
        "compression": compression,
        "git": git_head.result() if git_head is not None else (_git.head_info(top.top) if top else None),
    }
