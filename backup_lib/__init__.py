"""backup_lib: project and SQLite backups as standard, self-describing archives.

The public surface is re-exported here and imported lazily (PEP 562), so
that ``import backup_lib`` costs nothing a task does not use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # errors
    "BackupError": "errors",
    "UsageError": "errors",
    "NotFoundError": "errors",
    "NotABackupError": "errors",
    "IntegrityError": "errors",
    "UnsafeArchiveError": "errors",
    "TargetNotEmptyError": "errors",
    "LockedError": "errors",
    "DatabaseError": "errors",
    # selection
    "DEFAULT_EXCLUDES": "selection",
    "Selection": "selection",
    "select_files": "selection",
    # project backups
    "create_backup": "project",
    "list_backups": "project",
    "backup_info": "project",
    "restore_backup": "project",
    "verify_backups": "project",
    "cleanup_backups": "project",
    # database backups
    "db_backup": "database",
    "db_verify": "database",
    "db_restore": "database",
    "locate_database": "database",
    # retention
    "plan_retention": "retention",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'backup_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
