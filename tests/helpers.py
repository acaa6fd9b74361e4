import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from invoke import Program

REPO = Path(__file__).resolve().parent.parent


def make_project(root: Path) -> Path:
    """A small web-app tree with the usual clutter."""
    from conftest import write_tree

    write_tree(root, {
        "app/__init__.py": "from flask import Flask\n",
        "app/models.py": "class User: pass\n" * 20,
        "app/templates/index.html": "<html></html>\n",
        "static/app.js": "console.log(1)\n",
        "README.md": "# demo\n",
        ".gitignore": "*.log\n__pycache__/\ninstance/\n.env\n",
        ".env": "SECRET_KEY=x\nDATABASE_URL=sqlite:///app.db\n",
        "app.log": "log\n",
        "app/__pycache__/models.cpython-311.pyc": b"\0\1",
        ".venv/lib/site.py": "",
        "node_modules/left-pad/index.js": "",
        "empty/": None,
        "app.db": b"SQLite format 3\0" + bytes(100),
        "app.db-wal": b"",
    })
    os.symlink("app/models.py", root / "models_link.py")
    return root


def run_cli(args: list[str], *, capsys=None) -> tuple[int, str, str]:
    """Run tasks through invoke.Program, in process; returns (code, stdout, stderr)."""
    sys.path.insert(0, str(REPO))
    import tasks

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            Program(namespace=tasks.ns, version="test").run(["invoke", *args], exit=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def run_subprocess(args: list[str], cwd, env=None, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, **kw)
