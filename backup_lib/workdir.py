"""Private work folders, and the clean-up of those a killed run left behind.

A restore (project or database) and ``db.verify`` work in a hidden folder
``.<name>.<kind>-XXXXXXXX`` beside the target, the live database or the
backup directory.  Each holds an owner record (``owner.json``: host name,
pid, the process's start time from ``/proc/<pid>/stat`` and the boot id), and
the work itself goes into its ``tree/`` subfolder, so that nothing an archive
holds can collide with the record.

:func:`sweep` removes the folders whose owner is gone: same host, and the
process no longer exists, or a process with that pid started at another
time (the pid was reused), or the machine was rebooted since.  A folder of
another host (a shared or network file system) is left alone and
mentioned, as is one without a readable record (an older version's).
``backup.create`` never selects such folders (:func:`is_work_dir_name`).

:func:`remove_tree` removes a tree without recursion (trees deeper than
Python's recursion limit are legal) and without following links, and
unlinks in parallel: on some disks each unlink of a file with data waits on
the device, and many waits overlap.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from dataclasses import dataclass

__all__ = ["WorkDir", "create_work_dir", "sweep", "sweep_paths", "is_work_dir_name", "owner_gone", "remove_tree", "DirStack"]

OWNER_NAME = "owner.json"
TREE_NAME = "tree"
# mkdtemp's names: the prefix, then 8 characters of [a-z0-9_].
_WORK_RE = rb"^\..+\.(?:restore|verify)-[a-z0-9_]{8}\Z"
_work_re = None  # compiled on first use: most walks never meet such a name
_YOUNG = 60.0  # seconds a folder without a record may be one being set up right now

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_work_dir_name(name) -> bool:
    """Is this the name of a work folder of this toolkit (or of an older
    version, which named them the same way)?"""
    global _work_re
    if isinstance(name, str):
        name = os.fsencode(name)
    if name[:1] != b"." or (b".restore-" not in name and b".verify-" not in name):
        return False
    if _work_re is None:
        _work_re = re.compile(_WORK_RE, re.S)
    return _work_re.match(name) is not None


# ------------------------------------------------------------------ owners


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("ascii", "replace")
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks after boot (``/proc``), None
    when it cannot be read (no such process, a zombie, or no /proc)."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    try:
        fields = text[text.rindex(")") + 2 :].split()  # the name in (…) may hold spaces and parentheses
        if fields[0] in ("Z", "X"):
            return None  # ended, not yet reaped
        return int(fields[19])  # field 22 of the line
    except (ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _hostname() -> str:
    import socket

    return socket.gethostname()


def owner_record(pid: int | None = None) -> dict:
    pid = os.getpid() if pid is None else pid
    return {"tool": "backup-toolkit", "host": _hostname(), "pid": pid, "start": process_start(pid),
            "boot_id": _boot_id(), "created": time.time()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def owner_gone(record: dict, *, host: str, boot_id: str | None, start_of) -> str | None:
    """Why the owner of a work folder is gone (a reason), or None when it
    may still be running or is not ours to judge.  ``start_of(pid)`` gives a
    live process's start time, or raises ProcessLookupError."""
    if record.get("host") != host:
        return None
    pid = record.get("pid")
    if type(pid) is not int or pid <= 0:
        return None
    if boot_id and record.get("boot_id") and record["boot_id"] != boot_id:
        return "the machine was restarted since"
    try:
        start = start_of(pid)
    except ProcessLookupError:
        return f"process {pid} has ended"
    if record.get("start") is not None and start is not None and start != record["start"]:
        return f"process {pid} has ended (the pid now belongs to another process)"
    return None


def _start_of(pid: int):
    if os.path.isdir("/proc/self"):
        start = process_start(pid)
        if start is None:
            raise ProcessLookupError(pid)
        return start
    if not _alive(pid):  # no /proc: whether the pid exists is all there is to know
        raise ProcessLookupError(pid)
    return None


# ------------------------------------------------------------- work folders


@dataclass(frozen=True)
class WorkDir:
    path: str  # the folder: the owner record and tree/

    @property
    def tree(self) -> str:
        """Where the work goes (an empty folder at first)."""
        return os.path.join(self.path, TREE_NAME)

    def remove(self) -> None:
        """Remove the folder; one that cannot be removed is left to the next
        sweep (this runs in ``finally`` blocks: it must not hide the error
        that got there)."""
        with contextlib.suppress(OSError):
            remove_tree(self.path)


def create_work_dir(beside: str, kind: str = "restore", *, parent: str | None = None) -> WorkDir:
    """A new private work folder ``.<basename(beside)>.<kind>-XXXXXXXX`` in
    ``parent`` (default: beside's folder), with its owner record and an
    empty ``tree/``.  Raises OSError."""
    import tempfile

    parent = parent if parent is not None else os.path.dirname(os.path.abspath(beside))
    label = os.path.basename(beside.rstrip("/")) or "work"
    label = os.fsdecode(os.fsencode(label)[:180])  # room for the rest of the name within 255 bytes
    path = tempfile.mkdtemp(prefix=f".{label}.{kind}-", dir=parent)
    try:
        fd = os.open(os.path.join(path, OWNER_NAME), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(owner_record()).encode())
        finally:
            os.close(fd)
        os.mkdir(os.path.join(path, TREE_NAME), 0o700)
    except BaseException:
        remove_tree(path)
        raise
    return WorkDir(path)


def _load_owner(path: str) -> dict | None:
    try:
        fd = os.open(os.path.join(path, OWNER_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        rec = json.loads(data)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def _judge(path: str, host: str, boot_id: str | None) -> dict | None:
    """One candidate folder: a note (removed or left alone), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    rec = _load_owner(path)
    if rec is None:
        if time.time() - st.st_mtime < _YOUNG:
            return None  # perhaps being set up this very moment
        return {"path": path, "removed": False,
                "reason": "no owner record (left by an older version?); delete it when no restore is running"}
    if rec.get("host") != host:
        return {"path": path, "removed": False, "reason": f"owned by host {rec.get('host')!r} (pid {rec.get('pid')})"}
    why = owner_gone(rec, host=host, boot_id=boot_id, start_of=_start_of)
    if why is None:
        return None  # a run in progress
    try:
        remove_tree(path)
    except OSError as exc:
        return {"path": path, "removed": False, "reason": f"left by a run that is gone ({why}), but cannot be removed: {exc.strerror or exc}"}
    return {"path": path, "removed": True, "reason": f"left by a run that is gone ({why})"}


def sweep_paths(paths) -> list[dict]:
    """Judge these work folders (found by a walk, say); remove those whose
    owner is gone.  Returns one note per folder removed or left alone."""
    host, boot = _hostname(), _boot_id()
    notes = []
    for path in paths:
        note = _judge(path, host, boot)
        if note is not None:
            notes.append(note)
    return notes


def sweep(directory: str) -> list[dict]:
    """:func:`sweep_paths` over the work folders directly in ``directory``."""
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it if is_work_dir_name(e.name)]
    except OSError:
        return []
    return sweep_paths(os.path.join(directory, n) for n in sorted(names))


# -------------------------------------------------------------- the walks


class DirStack:
    """Directory file descriptors along a path below a root, each opened
    with ``O_NOFOLLOW``: whatever is swapped in concurrently, a walk never
    passes through a symlink.  At most ``keep`` are open; one closed on the
    way down is reopened as ``..`` of its child on the way up, and checked
    to be the same directory (device and inode)."""

    def __init__(self, root_fd: int, keep: int = 64):
        st = os.fstat(root_fd)
        self.fds: list[int | None] = [root_fd]
        self.ids: list[tuple[int, int]] = [(st.st_dev, st.st_ino)]
        self.keep = max(2, keep)
        self._first_open = 1  # fds[1:_first_open] are closed; the root always stays open

    @property
    def top(self) -> int:
        return self.fds[-1]

    def __len__(self) -> int:
        return len(self.fds)

    def push(self, name: str) -> int:
        fd = os.open(name, _O_DIR, dir_fd=self.fds[-1])
        st = os.fstat(fd)
        self.fds.append(fd)
        self.ids.append((st.st_dev, st.st_ino))
        if len(self.fds) - self._first_open > self.keep:
            os.close(self.fds[self._first_open])
            self.fds[self._first_open] = None
            self._first_open += 1
        return fd

    def pop(self) -> None:
        fd = self.fds.pop()
        self.ids.pop()
        try:
            if self.fds[-1] is None:
                parent = os.open("..", _O_DIR, dir_fd=fd)
                st = os.fstat(parent)
                if (st.st_dev, st.st_ino) != self.ids[-1]:
                    os.close(parent)
                    raise OSError(errno.ESTALE, "a directory was moved while it was being worked on")
                self.fds[-1] = parent
                self._first_open = len(self.fds) - 1
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close every descriptor but the root's (the caller's)."""
        for fd in self.fds[1:]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        del self.fds[1:], self.ids[1:]
        self._first_open = 1


_PARALLEL = 16  # unlinks in flight: each may wait on the disk, not on a CPU
_BATCH = 16  # names per task
_MAX_PENDING = 256  # tasks queued at most: memory stays flat


class _Unlinker:
    """Unlinks and rmdirs handed to a thread pool (started only once there
    is enough to gain from it), across directories: the walk goes on while
    earlier directories are emptied; :meth:`wait` before a directory that
    must be empty by then is removed."""

    def __init__(self):
        self._pool = None
        self._pending: list = []  # futures, oldest first

    def submit(self, fn, dir_fd: int, names: list[str]) -> list:
        """Start ``fn(name, dir_fd)`` for every name; returns what to wait
        for.  ``dir_fd`` must stay open until then."""
        if len(names) < 4:
            for n in names:
                fn(n, dir_fd)
            return []
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(_PARALLEL, thread_name_prefix="unlink")
        futures = [self._pool.submit(_each, fn, dir_fd, names[i : i + _BATCH]) for i in range(0, len(names), _BATCH)]
        self._pending.extend(futures)
        if len(self._pending) > _MAX_PENDING:
            self._pending = [f for f in self._pending if not f.done()]
            while len(self._pending) > _MAX_PENDING:
                self._pending.pop(0).result()
        return futures

    @staticmethod
    def wait(futures: list) -> None:
        for f in futures:
            f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _each(fn, dir_fd, names):
    for n in names:
        fn(n, dir_fd)


def _unlink(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _rmdir(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=dir_fd)


def remove_tree(path: str) -> None:
    """``rm -rf path`` without recursion and without following any link
    (a symlink at ``path`` is removed, not followed).  A missing path is
    fine; other errors raise OSError."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    try:
        pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            _unlink(name, pfd)
            return
        remove_below(pfd, name)
        _rmdir(name, pfd)
    finally:
        os.close(pfd)


_OWN_FDS = 32  # directories whose unlinks may still run while the walk is below them


def remove_below(parent_fd: int, name: str) -> None:
    """Empty the directory ``name`` of ``parent_fd`` (which stays)."""
    stack = DirStack(parent_fd)
    unlinker = _Unlinker()
    # One frame per open directory: [its name, the subdirectories still to
    # enter, those already emptied, the unlinks started in it and the
    # descriptor of its own they use (the stack may close its one on the
    # way down), or None once they are done].
    frames: list[list] = []
    busy: list[list] = []  # frames whose own descriptor is open, oldest first
    try:
        _enter(stack, name, frames, busy, unlinker)
        while frames:
            frame = frames[-1]
            if frame[1]:
                if len(busy) >= _OWN_FDS:
                    _settle(busy.pop(0), unlinker)
                _enter(stack, frame[1].pop(), frames, busy, unlinker)
                continue
            if frame[4] is not None:
                busy.remove(frame)
                _settle(frame, unlinker)
            unlinker.wait(unlinker.submit(_rmdir, stack.top, frame[2]))
            frames.pop()
            stack.pop()
            if frames:
                frames[-1][2].append(frame[0])
    finally:
        unlinker.close()
        for frame in busy:
            with contextlib.suppress(OSError):
                os.close(frame[4])
        stack.close()


def _settle(frame: list, unlinker: _Unlinker) -> None:
    try:
        unlinker.wait(frame[3])
    finally:
        os.close(frame[4])
        frame[3], frame[4] = [], None


def _enter(stack: DirStack, name: str, frames: list, busy: list, unlinker: _Unlinker) -> None:
    fd = stack.push(name)
    st = os.fstat(fd)
    if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
        with contextlib.suppress(OSError):
            os.chmod(fd, 0o700)  # a read-only folder of an archive: ours to empty
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    files = [n for n, is_dir in entries if not is_dir]
    frame = [name, [n for n, is_dir in entries if is_dir], [], [], None]
    frames.append(frame)
    if len(files) < 4:
        unlinker.submit(_unlink, fd, files)  # done at once, here
        return
    frame[4] = os.dup(fd)
    busy.append(frame)
    frame[3] = unlinker.submit(_unlink, frame[4], files)
