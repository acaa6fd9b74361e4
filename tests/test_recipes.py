"""The README's CI and container recipes, run; and the machine contract
(`--json` fields, exit codes) that their steps key on.

Each recipe is a file under examples/ that the README shows verbatim.  Its
shell steps (the `run:` steps of the GitHub workflow, the `script:` lines of
the GitLab job, the command of the container's backup service) are taken
from the file with a YAML parser and run with /bin/sh -e in a scratch
project: a small Flask-like git checkout with a real SQLite database and a
copy of tasks.py, where `.venv/bin/invoke` (and, in the container, `invoke`
on PATH) is a shim that runs this checkout's Invoke.  The steps that install
the toolkit (pip) and the image build are checked statically, not run.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

from invoke.util import yaml  # the parser Invoke, and so tasks.py, uses

from conftest import HAVE_GIT, git, write_tree

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
README = (REPO / "README.md").read_text()

# ------------------------------------------------------------ the scratch project


def make_app(root: Path, *, db: Path | None = None, checkout: bool = True) -> Path:
    """A small Flask-like app with tasks.py at its root and a live SQLite
    database (``db``, default instance/app.db, ignored by git); a git
    checkout, as a CI job has it, unless ``checkout`` is false."""
    write_tree(root, {
        "app/__init__.py": "from flask import Flask\n\ndef create_app():\n    return Flask(__name__)\n",
        **{f"app/views/v{i}.py": f"def view_{i}():\n    return {i}\n" for i in range(12)},
        "app/templates/index.html": "<html><body>hello</body></html>\n",
        "static/app.css": "body { margin: 0 }\n",
        "requirements.txt": "flask\ngunicorn\n",
        "README.md": "# shop\n",
        ".gitignore": ".venv/\n__pycache__/\n*.pyc\ninstance/\n.env\n",
    })
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    db = db or root / "instance" / "app.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO users (name) VALUES (?)", [(f"user{i}",) for i in range(50)])
    con.commit()
    con.close()
    if checkout and HAVE_GIT:
        git("init", "-q", cwd=root)
        git("add", "-A", cwd=root)
        git("commit", "-qm", "app", cwd=root)
    return root


def shim(path: Path) -> None:
    """An `invoke` that runs this checkout's Invoke over the project's tasks.py
    (what `pip install` of the toolkit puts in bin/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m invoke "$@"\n')
    path.chmod(0o755)


def run_sh(script: str, *, cwd: Path, env: dict, argv=None) -> subprocess.CompletedProcess:
    """A shell step as the CI runner runs it: a script file, /bin/sh -e."""
    if argv is None:
        path = cwd.parent / f".step-{os.getpid()}.sh"
        path.write_text(script)
        argv = ["/bin/sh", "-e", str(path)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def archives(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if not p.name.endswith(".index.json"))


def tar_names(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


# ------------------------------------------------- one invoke, two tasks of one name


def test_one_invoke_runs_both_tasks_of_the_same_name(tmp_path):
    """backup.verify and db.verify (or backup.cleanup and db.cleanup) in one
    invoke run both: Invoke took them for one task and ran only the first."""
    root = make_app(tmp_path / "shop")
    shim(root / ".venv" / "bin" / "invoke")
    result = run_sh(".venv/bin/invoke db.backup backup.create\n.venv/bin/invoke backup.verify db.verify\n"
                    ".venv/bin/invoke backup.cleanup db.cleanup\n", cwd=root, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines() if line.startswith("ok ")] == ["ok", "ok"]
    tasks = [r["task"] for r in history(root / "backups" / "history.jsonl")]
    assert tasks == ["db.backup", "backup.create", "backup.verify", "db.verify", "backup.cleanup", "db.cleanup"]
