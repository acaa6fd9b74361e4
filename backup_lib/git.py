"""The few facts the toolkit asks of git: where a work tree is, its config,
its tracked-but-ignored files and its HEAD.  Everything degrades to "not a
git work tree" when git is not installed."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

__all__ = ["Repo", "find_repo", "git_config", "tracked_ignored", "head_info", "HeadQuery"]


@dataclass(frozen=True, slots=True)
class Repo:
    top: str  # the work tree's top directory
    git_dir: str  # where info/exclude lives (the common dir for worktrees)


def _run(args: list[str], cwd: str) -> bytes | None:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _git_dir_of(top: str) -> str | None:
    dot_git = os.path.join(top, ".git")
    if os.path.isdir(dot_git):
        git_dir = dot_git
    elif os.path.isfile(dot_git):
        try:
            with open(dot_git, "rb") as fh:
                line = fh.read(4096).splitlines()[0].decode("utf-8", "surrogateescape")
        except (OSError, IndexError):
            return None
        if not line.startswith("gitdir:"):
            return None
        git_dir = os.path.join(top, line[len("gitdir:") :].strip())
    else:
        return None
    common = os.path.join(git_dir, "commondir")
    if os.path.isfile(common):
        try:
            with open(common, encoding="utf-8", errors="surrogateescape") as fh:
                git_dir = os.path.join(git_dir, fh.read().strip())
        except OSError:
            pass
    return os.path.normpath(git_dir)


def repo_at(top: str) -> Repo | None:
    """The repository whose work tree top is exactly ``top``, if any."""
    git_dir = _git_dir_of(top)
    return Repo(top, git_dir) if git_dir else None


def find_repo(path: str) -> Repo | None:
    """The work tree enclosing ``path`` (``path`` itself included)."""
    cur = os.path.abspath(path)
    while True:
        repo = repo_at(cur)
        if repo:
            return repo
        parent = os.path.dirname(cur)
        if parent == cur:
            return None
        cur = parent


def git_config(cwd: str) -> dict[str, str]:
    """core.excludesFile and core.ignorecase as git resolves them at cwd."""
    out = _run(["config", "-z", "--get-regexp", r"^core\.(excludesfile|ignorecase)$"], cwd)
    config: dict[str, str] = {}
    for item in (out or b"").split(b"\0"):
        if b"\n" in item:
            key, _, value = item.partition(b"\n")
            config[key.decode().lower()] = value.decode("utf-8", "surrogateescape")
    return config


def tracked_ignored(top: str) -> list[str]:
    """Tracked paths (relative to top) that ignore rules match: git keeps them."""
    out = _run(["ls-files", "-z", "--cached", "--ignored", "--exclude-standard"], top)
    if not out:
        return []
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


_HEAD_COMMANDS = (
    ["rev-parse", "--verify", "-q", "HEAD"],
    ["symbolic-ref", "-q", "--short", "HEAD"],
    ["status", "--porcelain", "--untracked-files=no", "-z"],
)


def _start(args: list[str], cwd: str) -> subprocess.Popen | None:
    try:
        return subprocess.Popen(["git", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
    except OSError:
        return None


def _output(proc: subprocess.Popen | None) -> bytes | None:
    if proc is None:
        return None
    out, _ = proc.communicate()
    return out if proc.returncode == 0 else None


class HeadQuery:
    """The git commands of :func:`head_info`, started now and side by side
    (a create walks the tree meanwhile); :meth:`result` collects them."""

    def __init__(self, top: str):
        self._procs = [_start(args, top) for args in _HEAD_COMMANDS]

    def result(self) -> dict:
        out, branch_out, status = (_output(p) for p in self._procs)
        commit = out.decode().strip() if out else None
        branch = branch_out.decode("utf-8", "replace").strip() if branch_out else None
        dirty = bool(status) if status is not None else None
        return {"commit": commit, "branch": branch, "dirty": dirty}


def head_info(top: str) -> dict | None:
    """{commit, branch, dirty} of the work tree at top, or None."""
    return HeadQuery(top).result()
