import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HAVE_GIT = shutil.which("git") is not None
HAVE_TAR = shutil.which("tar") is not None
HAVE_SQLITE3 = shutil.which("sqlite3") is not None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No user or system git config, no app settings from the environment."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")
    for var in ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI", "APP_ENV", "ENVIRONMENT", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("INVOKE_"):
            monkeypatch.delenv(var, raising=False)
    yield


def write_tree(root: Path, spec: dict) -> None:
    """spec: {"a/b.txt": "content" | bytes, "empty/": None, "link": ("symlink", "target")}"""
    for rel, content in spec.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "symlink":
            os.symlink(content[1], path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if content is not None else rel)


def git(*args, cwd, check=True, env=None):
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, env=env)
