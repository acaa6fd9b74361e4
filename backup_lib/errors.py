"""One exception family for the whole library.

Every failure a user can meet is a :class:`BackupError` subclass with an
``exit_code``; ``tasks.py`` turns it into one line on stderr and that exit
code, at a single boundary (as httpx does with its exception family).

Exit codes (documented in the README):

==== =====================================================================
0    success
1    the operation failed (:class:`BackupError` and most subclasses)
2    bad usage: a flag or configuration value is invalid
3    done, but incomplete (files skipped, links not recreated)
4    integrity: an archive is corrupt, not a backup, or fails verification
5    busy: another create or cleanup holds the backup directory's lock
==== =====================================================================
"""

from __future__ import annotations

__all__ = [
    "BackupError",
    "UsageError",
    "NotFoundError",
    "NotABackupError",
    "IntegrityError",
    "UnsafeArchiveError",
    "TargetNotEmptyError",
    "TargetConflictError",
    "LockedError",
    "DatabaseError",
    "RemoteError",
    "RemoteUnreachableError",
    "RemoteMissingError",
    "RemoteAccessError",
    "RemoteFullError",
    "ObjectNotFoundError",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INCOMPLETE",
    "EXIT_INTEGRITY",
    "EXIT_BUSY",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTEGRITY = 4
EXIT_BUSY = 5


class BackupError(Exception):
    """Base class: a failure with a message fit for one line on stderr."""

    exit_code = EXIT_FAILED

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args).replace("\n", " ")


class UsageError(BackupError):
    """A flag or configuration value is invalid."""

    exit_code = EXIT_USAGE


class NotFoundError(BackupError):
    """A path the user named (root, archive, database) does not exist."""


class TargetNotEmptyError(BackupError):
    """A restore target already holds files and --force was not given."""


class TargetConflictError(BackupError):
    """A --force restore would replace a folder of the target by a file or a
    symlink, or a file of the target by a folder: nothing is restored."""


class DatabaseError(BackupError):
    """The database cannot be found, opened, snapshotted or restored."""


class IntegrityError(BackupError):
    """An archive is corrupt or fails verification."""

    exit_code = EXIT_INTEGRITY


class NotABackupError(IntegrityError):
    """A file is not an archive written by this toolkit."""


class UnsafeArchiveError(IntegrityError):
    """An archive holds a member that would write outside its target."""


class LockedError(BackupError):
    """Another create or cleanup holds the backup directory."""

    exit_code = EXIT_BUSY


class RemoteError(BackupError):
    """A remote (an S3 bucket or a second folder) failed; the message names
    the remote and the cause.  Local backups are never touched by it."""


class RemoteUnreachableError(RemoteError):
    """The endpoint cannot be reached (refused, timed out, name unknown)."""


class RemoteMissingError(RemoteError):
    """The bucket or the remote's folder does not exist."""


class RemoteAccessError(RemoteError):
    """Access denied, credentials rejected or missing, wrong region, read-only."""


class RemoteFullError(RemoteError):
    """The remote's disk is full (or over quota); the partial copy was removed."""


class ObjectNotFoundError(RemoteError):
    """An object the operation needs is not on the remote."""
