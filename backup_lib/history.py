"""The run history: one JSON line per task run, in ``history.jsonl``.

Where it lives (:func:`history_path`): beside the backup directories, one
file per project for every kind, so that ``backup.status`` finds all runs
in one place:

* ``history.path`` when configured (relative to the project root);
* else, when the project backup dir is named ``project`` (the default
  ``<root>/backups/project``, or any ``…/project`` a user chose), in its
  parent: ``<root>/backups/history.jsonl``, beside ``project/`` and ``db/``;
* else inside the project backup dir itself (``--backup-dir /mnt/nas/myapp``
  gives ``/mnt/nas/myapp/history.jsonl``): it travels with the backups (a
  volume in a container), and a parent shared by several projects is never
  written to.  The store ignores the file: it is not an archive name.

A record (format ``v`` 1)::

    {"v": 1, "task": "backup.create", "kind": "project", "project": "myapp",
     "start": "2026-…+00:00", "end": "…", "duration": 1.234,
     "outcome": "success" | "incomplete" | "failure", "exit_code": 0,
     "archive": "myapp_project_….tar.gz", "size": 123, "files": 45,
     "checked": 3, "failed": 0,          # verify runs
     "error": "one line", "host": "web1", "pid": 4242}

Only these fields are ever written; the error line goes through
:func:`backup_lib.redact.redact` (URL passwords, secret-looking environment
and ``.env`` values), and no configuration value is copied in.

Concurrency and size:

* an append is ONE ``write(2)`` of a whole line on an ``O_APPEND`` file, and
  a line is at most :data:`MAX_LINE` bytes (the error is shortened to fit),
  so lines from concurrent tasks never interleave;
* appenders hold an exclusive ``flock`` on ``history.jsonl.lock``; past
  :data:`MAX_BYTES` (1 MB, about 4,000 runs) the appender that noticed takes
  it again and rewrites the newest :data:`TRIM_TO` bytes of whole
  lines to a temp file that replaces the history by ``rename(2)``: no
  append is lost to the swap and a reader sees the old file or the new one;
* reading skips a torn or garbage line, and an append after a torn line
  first ends it.

Writing the history never fails a task: a problem is one warning line.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import fcntl
import json
import os
import socket
import sys
import time
from typing import Callable, Iterable, Iterator

from .redact import redact

__all__ = [
    "HISTORY_NAME",
    "MAX_BYTES",
    "TRIM_TO",
    "MAX_LINE",
    "Run",
    "history_path",
    "append_record",
    "encode_record",
    "read_history",
    "trim_history",
    "recording",
    "current_run",
    "kind_for_task",
    "outcome_for",
]

HISTORY_NAME = "history.jsonl"
LOCK_SUFFIX = ".lock"
MAX_BYTES = 1_000_000  # the README states it: past 1 MB the oldest lines go
TRIM_TO = 750_000  # what a trim keeps (slack, so that not every append rewrites)
MAX_LINE = 4096  # one line, PIPE_BUF-sized: one write(2), never interleaved
MAX_ERROR = 1000  # characters of the error line
LOCK_WAIT = 5.0  # seconds an append waits for a trim to finish
RECORD_VERSION = 1

# The fields a record may hold, in the order they are written.
FIELDS = ("v", "task", "kind", "remote", "project", "start", "end", "duration", "outcome", "exit_code",
          "archive", "size", "files", "checked", "failed", "error", "host", "pid")


def history_path(project_backup_dir: str, configured: str | None = None, root: str | None = None) -> str:
    """The history file for a project (see the module's docstring)."""
    if configured:
        return os.path.abspath(os.path.join(root or os.getcwd(), os.path.expanduser(configured)))
    bdir = os.path.abspath(project_backup_dir)
    if os.path.basename(bdir) == "project":
        return os.path.join(os.path.dirname(bdir), HISTORY_NAME)
    return os.path.join(bdir, HISTORY_NAME)


def kind_for_task(task: str) -> str:
    """``db.*`` tasks are about the database, the rest about the project."""
    return "db" if task.startswith("db.") else "project"


def outcome_for(exit_code: int) -> str:
    """0 success, 3 incomplete (done, files skipped), anything else failure."""
    if exit_code == 0:
        return "success"
    if exit_code == 3:
        return "incomplete"
    return "failure"


# --------------------------------------------------------------- the file


def encode_record(record: dict) -> bytes:
    """One line, at most MAX_LINE bytes, fields in a fixed order."""
    rec = {k: record[k] for k in FIELDS if record.get(k) is not None}
    line = json.dumps(rec, ensure_ascii=True, separators=(",", ":"), default=str)
    while len(line) >= MAX_LINE:
        error = rec.get("error")
        if error and len(error) > 8:
            rec["error"] = error[: len(error) // 2] + "…"
        else:
            # Only our own short fields remain: keep what identifies the run.
            rec = {k: rec[k] for k in ("v", "task", "kind", "start", "end", "outcome", "exit_code") if k in rec}
            rec["error"] = "record too long"
            line = json.dumps(rec, ensure_ascii=True, separators=(",", ":"), default=str)[: MAX_LINE - 1]
            break
        line = json.dumps(rec, ensure_ascii=True, separators=(",", ":"), default=str)
    return (line + "\n").encode("ascii")


@contextlib.contextmanager
def _locked(path: str, mode: int, wait: float = LOCK_WAIT) -> Iterator[bool]:
    """flock ``path + .lock`` (shared or exclusive); yields whether it got it."""
    fd = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    got = False
                    break
                time.sleep(0.02)
        yield got
    finally:
        os.close(fd)


def append_record(path: str, record: dict, *, max_bytes: int = MAX_BYTES, trim_to: int = TRIM_TO,
                  create_dir: bool = True) -> None:
    """Append one record as one line; trim the file when it grew past max_bytes.
    Without ``create_dir``, a history whose folder does not exist is not
    written (nothing was ever backed up there: a task that failed before
    making the backup folder must not make one for its record).

    Raises OSError (the caller turns it into a warning)."""
    data = encode_record(record)
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        if not create_dir:
            return
        os.makedirs(directory, mode=0o700, exist_ok=True)
    # Appends take the lock exclusively, as a trim does: the check for a torn
    # last line reads the file's end, which another writer's append in
    # progress could show half-written (ext4 grows the size page by page).
    # Waiting past LOCK_WAIT (a stuck process) we append anyway: a line at
    # risk beats a line never written.
    with _locked(path, fcntl.LOCK_EX):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end a torn line first
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to {path} ({written} of {len(data)} bytes)")
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
    if size > max_bytes:
        trim_history(path, max_bytes=max_bytes, trim_to=trim_to)


def trim_history(path: str, *, max_bytes: int = MAX_BYTES, trim_to: int = TRIM_TO) -> bool:
    """Keep the newest whole lines (at most ``trim_to`` bytes) when the file
    is past ``max_bytes``; rewrite + rename under the exclusive lock.
    Returns whether it trimmed."""
    with _locked(path, fcntl.LOCK_EX) as got:
        if not got:
            return False  # another process is at it; the next append tries again
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size <= max_bytes:
                    return False
                fh.seek(max(0, size - trim_to))
                tail = fh.read()
        except FileNotFoundError:
            return False
        if size > trim_to:
            cut = tail.find(b"\n")
            tail = tail[cut + 1 :] if cut >= 0 else b""  # the first line is cut: drop it
        tmp = f"{path}.{os.getpid()}.trim"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, tail)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        return True


def read_history(path: str) -> list[dict]:
    """Every readable record, oldest first.  A torn or garbage line, or one
    that is not a record, is skipped; a missing file is an empty history."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("task"), str) and isinstance(rec.get("end"), str):
            out.append(rec)
    return out


# ------------------------------------------------------------ the recorder


def _iso(t: _dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class Run:
    """What one task run reports: filled by the task, written at its end."""

    def __init__(self, task: str, kind: str | None = None, project: str | None = None):
        self.task = task
        self.kind = kind or kind_for_task(task)
        self.project = project
        self.start = _now()
        self._t0 = time.monotonic()
        self.end: _dt.datetime | None = None
        self.duration: float | None = None
        self.exit_code = 0
        self.error: str | None = None
        self.archive_name: str | None = None
        self.size: int | None = None
        self.files: int | None = None
        self.checked: int | None = None
        self.failed: int | None = None
        self.remote: str | None = None  # the remote a push, verify, cleanup, pull or restore worked on

    # -- what a task reports -------------------------------------------------
    def archive(self, path: str | None, *, size: int | None = None, files: int | None = None) -> None:
        """The archive this run wrote (or restored, verified …): its name
        (never the full path), its size in bytes and its file count."""
        self.archive_name = os.path.basename(path) if path else None
        if size is None and path:
            with contextlib.suppress(OSError):
                size = os.path.getsize(path)
        self.size = size
        self.files = files

    def verified(self, checked: int, failed: int) -> None:
        """A verify run: how many archives it checked, how many failed."""
        self.checked, self.failed = int(checked), int(failed)

    def fail(self, exit_code: int, error: str) -> None:
        """Record a failure (or, with 3, an incomplete run) without raising."""
        self.exit_code = int(exit_code)
        self.error = error

    # -- the end -------------------------------------------------------------
    @property
    def outcome(self) -> str:
        return outcome_for(self.exit_code)

    def from_exception(self, exc: BaseException) -> None:
        from .errors import BackupError

        if isinstance(exc, BackupError):
            code, message = exc.exit_code, str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            code, message = 130, "interrupted"
        elif isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            message = None if exc.code is None or isinstance(exc.code, int) else str(exc.code)
        elif isinstance(getattr(exc, "code", None), int):  # invoke.Exit, raised by a task for exit 3 or 4
            code = exc.code
            message = getattr(exc, "message", None) or str(exc) or None
        else:
            code, message = 1, f"unexpected {type(exc).__name__}: {exc}"
        self.exit_code = code
        if code != 0:
            self.error = message or f"exit code {code}"

    def finish(self) -> None:
        if self.end is None:
            self.end = _now()
            self.duration = round(time.monotonic() - self._t0, 3)

    def record(self, secrets: Iterable[str] | Callable[[], Iterable[str]] = ()) -> dict:
        """The record to write: chosen fields only; the error line redacted."""
        self.finish()
        error = None
        if self.error:
            error = " ".join(str(self.error).split())  # one line
            for prefix in ("error: ", "incomplete: "):
                if error.startswith(prefix):
                    error = error[len(prefix) :]
            if callable(secrets):
                secrets = secrets()
            error = redact(error, secrets)
            if len(error) > MAX_ERROR:
                error = error[: MAX_ERROR - 1] + "…"
        rec = {
            "v": RECORD_VERSION,
            "task": self.task,
            "kind": self.kind,
            "remote": self.remote,
            "project": self.project,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "duration": self.duration,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "archive": self.archive_name,
            "size": self.size,
            "files": self.files,
            "checked": self.checked,
            "failed": self.failed,
            "error": error,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        return {k: v for k, v in rec.items() if v is not None}


_CURRENT: contextvars.ContextVar[Run | None] = contextvars.ContextVar("backup_run", default=None)


def current_run() -> Run:
    """The run being recorded (inside :func:`recording`), else a throwaway
    one, so that a task can report to it unconditionally."""
    return _CURRENT.get() or Run("none")


def _stderr_warning(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


@contextlib.contextmanager
def recording(
    path: str | None,
    *,
    task: str,
    kind: str | None = None,
    project: str | None = None,
    on_finish: Iterable[Callable[[dict], None]] = (),
    secrets: Iterable[str] | Callable[[], Iterable[str]] = (),
    warn: Callable[[str], None] | None = None,
    create_dir: bool = True,
) -> Iterator[Run]:
    """Record a task run around its body::

        with recording(path, task="backup.create", kind="project", project="myapp") as run:
            result = create_backup(...)
            run.archive(result.backup_path, files=result.metadata["total_files"])

    At the end one record is appended to ``path`` (None: none), then each
    ``on_finish(record)`` is called (notifications, heartbeats).  On an
    exception the record holds the failure, with the exit code of a
    ``BackupError`` (or of anything carrying an integer ``code``, as
    ``invoke.Exit`` does; KeyboardInterrupt is 130, anything else 1), and
    the exception propagates unchanged.  Nothing here ever raises or changes
    the task's result: a history that cannot be written, or a callback that
    fails, is one line through ``warn``.  ``secrets`` (or a callable giving
    them, called only when there is an error line) are masked in it.
    """
    warn = warn or _stderr_warning
    run = Run(task, kind, project)
    token = _CURRENT.set(run)
    try:
        yield run
    except BaseException as exc:
        run.from_exception(exc)
        raise
    finally:
        _CURRENT.reset(token)
        _finish(run, path, on_finish, secrets, warn, create_dir)


def _finish(run: Run, path, on_finish, secrets, warn, create_dir: bool = True) -> None:
    try:
        record = run.record(secrets)
    except Exception as exc:  # a secrets callable that failed: record without them
        warn(f"run history: {type(exc).__name__} while redacting; error line left out")
        run.error = None
        record = run.record(())
    if path:
        try:
            append_record(path, record, create_dir=create_dir)
        except OSError as exc:
            warn(f"run history not written to {path}: {exc.strerror or exc}")
    for callback in on_finish:
        try:
            callback(record)
        except Exception as exc:  # a notifier must never change the task's result
            warn(f"{getattr(callback, '__name__', 'callback')} failed: {type(exc).__name__}: {redact(str(exc))}")
