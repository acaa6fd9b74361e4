"""Restore drills: a backup restored into a fresh temporary folder with every
check, the smoke command run in it under a timeout, the database drill, and
the tasks (one line per step, --json, the history, the exit codes)."""

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from backup_lib.database import db_backup
from backup_lib.drill import (EXIT_COMMAND_FAILED, EXIT_RESTORE_FAILED, EXIT_TIMED_OUT, chain_problem, check_work_base,
                              command_environment, drill_database, drill_project)
from backup_lib.errors import UsageError
from backup_lib.history import read_history
from backup_lib.project import create_backup
from backup_lib.store import read_metadata
from conftest import write_tree
from forge import file, forge, symlink
from helpers import run_cli


@pytest.fixture(autouse=True)
def own_tempdir(tmp_path, monkeypatch):
    """Each test its own temporary folder: drills of tests running beside it
    (pytest -n) come and go in the shared one."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "shop"
    write_tree(root, {"app.py": "print('shop')\n", "static/site.css": "body{}\n", ".env": "SECRET=from-dotenv\n",
                      "tests/test_smoke.py": "def test_ok():\n    assert True\n"})
    return root


def backup(root, tmp_path, **kw):
    return create_backup(str(root), cache_dir=str(tmp_path / "cache"), **kw).backup_path


def drill(root, path, **kw):
    kw.setdefault("command", None)
    return drill_project(path, root=str(root), backup_dirs=[str(root / "backups" / "project")], **kw)


def drill_dirs():
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(".backup-drill.restore-")}


def test_the_command_runs_in_the_restored_tree_with_the_documented_environment(proj, tmp_path):
    path = backup(proj, tmp_path)
    out = tmp_path / "seen.txt"
    before = drill_dirs()
    cmd = (f'printf "%s\\n" "$BACKUP_DRILL" "$BACKUP_DRILL_ROOT" "$PWD" "$(pwd -P)" "$BACKUP_DRILL_ARCHIVE" '
           f'"${{SECRET-unset}}" "${{INVOKE_BACKUP_NAME-unset}}" > {out}; cat app.py >> {out}')
    res = drill(proj, path, command=cmd, base_env={**os.environ, "INVOKE_BACKUP_NAME": "x"})
    assert res.ok and res.exit_code == 0, res.error
    flag, root, pwd, physical, archive, secret, invoke, content = out.read_text().splitlines()
    assert flag == "1" and root == pwd == os.path.join(res.work_dir, "tree") and archive == path
    assert secret == "unset" and invoke == "unset"  # the restored .env is not sourced; the toolkit's settings stay out
    assert content == "print('shop')"
    for inside in (proj, proj / "backups"):
        assert not physical.startswith(str(inside.resolve()) + "/")
    assert [s.name for s in res.steps] == ["restore", "command"] and all(s.ok for s in res.steps)
    assert not os.path.exists(res.work_dir) and drill_dirs() == before  # removed afterwards


def test_the_folder_of_a_killed_drill_is_removed_by_the_next(proj, tmp_path):
    import subprocess
    import sys

    path = backup(proj, tmp_path)
    base = tmp_path / "drills"
    base.mkdir()
    script = ("import sys; from backup_lib.drill import _work_dir; w = []; "
              "print(_work_dir(sys.argv[1], {}, w), flush=True); import os; os._exit(0)")
    proc = subprocess.run([sys.executable, "-c", script, str(base)], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))})
    left = proc.stdout.strip()
    (Path(left) / "tree" / ".env").write_text("SECRET=x\n")
    res = drill(proj, path, command="true", work_dir=str(base))
    assert res.ok and not os.path.exists(left)
    assert any(w.startswith(f"removed {left}: left by a run that is gone") for w in res.warnings)
    assert os.listdir(base) == []


def test_source_env_and_drill_env(proj, tmp_path):
    path = backup(proj, tmp_path)
    out = tmp_path / "seen.txt"
    res = drill(proj, path, command=f'printf "%s\\n" "$SECRET" "$EXTRA" "${{HOME-gone}}" > {out}', source_env=True,
                env={"EXTRA": 42, "HOME": None})
    assert res.ok, res.error
    assert out.read_text().splitlines() == ["from-dotenv", "42", "gone"]


def test_environment_is_a_plain_function():
    env = command_environment({"PATH": "/bin", "INVOKE_DB_PATH": "x", "A": "1"}, tree="/t", archive="/a.tar",
                              source_env=True, dotenv={"A": "2", "B": "3"}, extra={"B": None, "C": "4"})
    assert env == {"PATH": "/bin", "A": "2", "C": "4", "BACKUP_DRILL": "1", "BACKUP_DRILL_ROOT": "/t",
                   "BACKUP_DRILL_ARCHIVE": "/a.tar", "PWD": "/t"}
    assert "A" not in command_environment({}, tree="/t", archive="/a", source_env=False, dotenv={"A": "2"})


@pytest.mark.parametrize("command, code, text", [
    ("echo some output; echo on stderr >&2; exit 3", EXIT_COMMAND_FAILED, "exit 3"),
    ("no-such-smoke-command --flag", EXIT_COMMAND_FAILED, "exit 127 (command not found)"),
])
def test_a_failing_or_missing_command(proj, tmp_path, command, code, text):
    res = drill(proj, backup(proj, tmp_path), command=command)
    assert res.exit_code == code and text in res.error
    step = res.steps[-1]
    assert step.name == "command" and not step.ok and text in step.detail
    if "exit 3" in command:
        assert step.output.splitlines() == ["some output", "on stderr"]
    else:
        assert "not found" in step.output


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_command_past_the_timeout_is_killed_with_what_it_started(proj, tmp_path):
    pidfile = tmp_path / "child.pid"
    res = drill(proj, backup(proj, tmp_path), command=f"sleep 300 & echo $! > {pidfile}; echo started; wait", timeout=1)
    assert res.exit_code == EXIT_TIMED_OUT and "timed out after 1s" in res.error
    assert res.steps[-1].output == "started"
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_background_processes_do_not_outlive_a_command_that_passed(proj, tmp_path):
    pidfile = tmp_path / "child.pid"
    res = drill(proj, backup(proj, tmp_path), command=f"sleep 300 & echo $! > {pidfile}")
    assert res.ok, res.error
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_keep_leaves_the_folder_and_the_log(proj, tmp_path):
    res = drill(proj, backup(proj, tmp_path), command="echo hello", keep=True)
    try:
        assert res.ok and res.kept
        assert (open(os.path.join(res.work_dir, "tree", "app.py")).read() == "print('shop')\n")
        assert open(os.path.join(res.work_dir, "command.log")).read() == "hello\n"
        assert res.as_dict()["work_dir"] == res.work_dir and res.as_dict()["kept"] is True
    finally:
        import shutil

        shutil.rmtree(res.work_dir)


def test_a_backup_missing_from_the_chain(proj, tmp_path):
    full = backup(proj, tmp_path)
    (proj / "app.py").write_text("print('changed')\n")
    incr = backup(proj, tmp_path, incremental="true")
    assert incr.endswith("_incr.tar.gz")
    chain, problem = chain_problem(incr, read_metadata)
    assert chain == [incr, full] and problem is None
    os.unlink(full)
    chain, problem = chain_problem(incr, read_metadata)
    assert problem and os.path.basename(full) in problem and "missing" in problem
    res = drill(proj, incr, command="true")
    assert res.exit_code == EXIT_RESTORE_FAILED and os.path.basename(full) in res.error
    assert [(s.name, s.ok) for s in res.steps] == [("chain", False)]
    assert not os.path.exists(res.work_dir)


def test_an_incremental_backup_drills_with_its_chain(proj, tmp_path):
    backup(proj, tmp_path)
    (proj / "app.py").write_text("print('changed')\n")
    os.unlink(proj / "static" / "site.css")
    incr = backup(proj, tmp_path, incremental="true")
    res = drill(proj, incr, command="cat app.py > seen; test ! -e static/site.css", keep=True)
    try:
        assert res.ok, res.error
        assert [(s.name, s.ok) for s in res.steps][:2] == [("chain", True), ("restore", True)]
        assert "2 archives" in res.steps[0].detail
        assert (Path(res.work_dir) / "tree" / "seen").read_text() == "print('changed')\n"
    finally:
        import shutil

        shutil.rmtree(res.work_dir)


def test_an_encrypted_incremental_project_backup_drills_with_the_identity(proj, tmp_path):
    from backup_lib.archive.crypto import keygen

    key = str(tmp_path / "id.key")
    recipient = keygen(key)
    backup(proj, tmp_path, encrypt_to=[recipient])
    (proj / "app.py").write_text("print('secret change')\n")
    incr = backup(proj, tmp_path, incremental="true", encrypt_to=[recipient], identity_file=key)
    assert incr.endswith("_incr.tar.gz.age")
    res = drill(proj, incr, identity_file=key, command="grep -q 'secret change' app.py")
    assert res.ok, res.error
    res = drill(proj, incr, command="true")
    assert res.exit_code == EXIT_RESTORE_FAILED and "--identity" in res.error


def test_an_archive_that_fails_verification_restores_nothing(proj, tmp_path):
    path = backup(proj, tmp_path)
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    res = drill(proj, path, command="touch ran")
    assert res.exit_code == EXIT_RESTORE_FAILED and res.error.startswith("restore failed: ")
    assert [(s.name, s.ok) for s in res.steps] == [("restore", False)]


def test_a_hostile_archive_is_refused_before_the_command(proj, tmp_path):
    bdir = proj / "backups" / "project"
    bdir.mkdir(parents=True)
    evil = forge(bdir / "shop_project_20260101_000000.tar", [file("../escape.txt", b"x"), file("ok.txt", b"y")])
    marker = tmp_path / "ran"
    res = drill(proj, evil.path, command=f"touch {marker}")
    assert res.exit_code == EXIT_RESTORE_FAILED and not marker.exists()
    assert not (proj / "backups" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_the_temporary_folder_is_never_inside_the_project_or_a_backup_dir(proj, tmp_path, monkeypatch):
    path = backup(proj, tmp_path)
    for inside in (proj, proj / "backups" / "project", proj / "static"):
        with pytest.raises(UsageError, match="inside"):
            drill(proj, path, command="true", work_dir=str(inside))
    monkeypatch.setenv("TMPDIR", str(proj / "static"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    with pytest.raises(UsageError, match="TMPDIR"):
        drill(proj, path, command="true")
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv("TMPDIR")
    elsewhere = tmp_path / "drills"
    elsewhere.mkdir()
    res = drill(proj, path, command="true", work_dir=str(elsewhere), keep=True)
    assert res.ok and os.path.dirname(res.work_dir) == str(elsewhere)
    assert check_work_base(str(elsewhere), {"the project": str(proj)}) == str(elsewhere)


def test_links_leading_out_of_the_tree_make_a_passing_drill_incomplete(proj, tmp_path):
    bdir = proj / "backups" / "project"
    bdir.mkdir(parents=True)
    path = forge(bdir / "shop_project_20260101_000000.tar", [file("app.py", b"x"), symlink("out", "../../etc/passwd")]).path
    res = drill(proj, path, command="test -f app.py && test ! -e out")
    assert res.exit_code == 3 and "symlinks" in res.error
    assert [(s.name, s.ok) for s in res.steps] == [("restore", True), ("command", True)]
    assert any("points outside" in w for w in res.warnings)


# ---------------------------------------------------------------- database


@pytest.fixture
def dbproj(tmp_path):
    root = tmp_path / "crm"
    write_tree(root, {"app.py": "x\n"})
    conn = sqlite3.connect(root / "app.db")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("CREATE TABLE empty (id INTEGER)")
    conn.executemany("INSERT INTO users (name) VALUES (?)", [("ann",), ("bob",)])
    conn.commit()
    conn.close()
    return root


def test_the_newest_database_backup_is_not_a_safety_backup(dbproj):
    from backup_lib.database import db_restore
    from backup_lib.drill import newest_backup

    first = db_backup(str(dbproj), db_path="app.db").backup_path
    restored = db_restore(first, root=str(dbproj), db_path="app.db")
    assert restored.safety_backup and restored.safety_backup != first
    assert newest_backup(str(dbproj / "backups" / "db"), "db", "crm") == first


def db_drill(root, path, **kw):
    return drill_database(path, root=str(root), backup_dirs=[str(root / "backups" / "db")], **kw)


def test_database_drill_checks_and_queries(dbproj):
    path = db_backup(str(dbproj), db_path="app.db").backup_path
    res = db_drill(dbproj, path, checks=["SELECT 1 FROM users LIMIT 1", "SELECT name FROM users WHERE name = 'bob'"])
    assert res.ok, res.error
    assert [s.name for s in res.steps] == ["restore", "integrity_check", "row_counts", "sql_dump", "check 1", "check 2"]
    assert "2 tables, 2 rows" in res.steps[2].detail
    assert not os.path.exists(res.work_dir)


@pytest.mark.parametrize("sql, code, text", [
    ("SELECT 1 FROM empty LIMIT 1", EXIT_COMMAND_FAILED, "returns no rows"),
    ("SELEC nonsense", EXIT_COMMAND_FAILED, "SQL error"),
    ("SELECT * FROM no_such_table", EXIT_COMMAND_FAILED, "no such table"),
    ("DELETE FROM users", EXIT_COMMAND_FAILED, "readonly"),
])
def test_database_checks_that_fail(dbproj, sql, code, text):
    path = db_backup(str(dbproj), db_path="app.db").backup_path
    res = db_drill(dbproj, path, checks=["SELECT 1", sql, "SELECT 2"])
    assert res.exit_code == code and text in res.error, res.error
    assert [s.name for s in res.steps][-2:] == ["check 1", "check 2"] and not res.steps[-1].ok


def test_database_checks_past_the_timeout(dbproj):
    path = db_backup(str(dbproj), db_path="app.db").backup_path
    forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT 1 FROM n WHERE i < 0"
    res = db_drill(dbproj, path, checks=[forever], timeout=1)
    assert res.exit_code == EXIT_TIMED_OUT and "timed out" in res.error


def _db_archive(path, db_bytes: bytes, tables: dict, **extra):
    return forge(path, [file("app.db", db_bytes)], extra_metadata={
        "backup_type": "database", "database_file": "app.db", "sql_dump": None, "size": len(db_bytes),
        "sha256": hashlib.sha256(db_bytes).hexdigest(), "tables": tables, **extra})


def test_a_database_backup_whose_rows_differ_from_its_metadata(dbproj, tmp_path):
    db_bytes = (dbproj / "app.db").read_bytes()
    bdir = dbproj / "backups" / "db"
    bdir.mkdir(parents=True)
    lying = _db_archive(bdir / "crm_db_20260101_000000.tar", db_bytes, {"users": 5, "empty": 0})
    res = db_drill(dbproj, lying.path)
    assert res.exit_code == EXIT_RESTORE_FAILED and "users 2 (recorded 5)" in res.error
    broken = _db_archive(bdir / "crm_db_20260102_000000.tar", b"SQLite format 3\0" + bytes(2000), {"users": 2, "empty": 0})
    res = db_drill(dbproj, broken.path)
    assert res.exit_code == EXIT_RESTORE_FAILED and res.steps[-1].name in ("integrity_check", "row_counts")
    project = forge(bdir / "crm_db_20260103_000000.tar", [file("a", b"x")])
    res = db_drill(dbproj, project.path)
    assert res.exit_code == EXIT_RESTORE_FAILED and "not a database backup" in res.error


def test_encrypted_database_backup_drills_with_the_identity(dbproj, tmp_path):
    from backup_lib.archive.crypto import keygen

    key = str(tmp_path / "id.key")
    recipient = keygen(key)
    path = db_backup(str(dbproj), db_path="app.db", encrypt_to=[recipient]).backup_path
    assert path.endswith(".age")
    res = db_drill(dbproj, path, identity_file=key, checks=["SELECT 1 FROM users"])
    assert res.ok, res.error
    res = db_drill(dbproj, path)
    assert res.exit_code == EXIT_RESTORE_FAILED and "--identity" in res.error


# ------------------------------------------------------------------- tasks


@pytest.fixture(autouse=True)
def no_runtime_config(monkeypatch):
    monkeypatch.delenv("INVOKE_RUNTIME_CONFIG", raising=False)
    yield
    os.environ.pop("INVOKE_RUNTIME_CONFIG", None)


def yaml(root, text):
    (root / "invoke.yaml").write_text(text)
    os.environ["INVOKE_RUNTIME_CONFIG"] = str(root / "invoke.yaml")


def history(root):
    return read_history(str(root / "backups" / "history.jsonl"))


def test_drill_task_lines_json_history_and_status(proj, tmp_path):
    yaml(proj, "drill:\n  command: test -f app.py && test \"$BACKUP_DRILL\" = 1\n  timeout: 30s\n")
    code, _, err = run_cli(["backup.create", "-p", str(proj)])
    assert code == 0, err
    code, out, err = run_cli(["backup.drill", "-p", str(proj)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Drill of ") and lines[-1].startswith("drill passed in ")
    assert [ln.split()[:2] for ln in lines[1:-1]] == [["ok", "restore"], ["ok", "command"]]
    code, out, err = run_cli(["backup.drill", "-p", str(proj), "-j"])
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["exit_code"] == 0 and [s["name"] for s in data["steps"]] == ["restore", "command"]
    recs = [r for r in history(proj) if r["task"] == "backup.drill"]
    assert len(recs) == 2 and recs[-1]["outcome"] == "success" and recs[-1]["archive"].startswith("shop_project_")
    code, out, err = run_cli(["backup.status", "-p", str(proj), "--json"])
    assert json.loads(out)["kinds"]["project"]["last_drill"]["task"] == "backup.drill"


@pytest.mark.parametrize("args, code, text", [
    (["--command", "nope-not-a-command"], EXIT_COMMAND_FAILED, "command not found"),
    (["--command", "exit 1"], EXIT_COMMAND_FAILED, "failed with exit 1"),
    (["--command", "sleep 30", "--timeout", "1"], EXIT_TIMED_OUT, "timed out after 1s"),
    (["--timeout", "soon"], 2, "--timeout"),
    (["-b", "no-such-backup.tar.gz"], 1, "does not exist"),
])
def test_drill_task_failures_are_one_line_and_their_code(proj, args, code, text):
    assert run_cli(["backup.create", "-p", str(proj)])[0] == 0
    got, out, err = run_cli(["backup.drill", "-p", str(proj), *args])
    assert got == code, err
    assert err.count("\n") == 1 and err.startswith("error: ") and text in err, err
    if code in (EXIT_COMMAND_FAILED, EXIT_TIMED_OUT):
        rec = history(proj)[-1]
        assert rec["task"] == "backup.drill" and rec["exit_code"] == code and rec["outcome"] == "failure"


def test_drill_task_without_a_command_restores_only_and_says_so(proj):
    assert run_cli(["backup.create", "-p", str(proj)])[0] == 0
    code, out, err = run_cli(["backup.drill", "-p", str(proj), "--keep"])
    assert code == 0 and "no drill.command configured" in err
    kept = [ln for ln in out.splitlines() if ln.strip().startswith("kept ")]
    assert kept
    import shutil

    shutil.rmtree(kept[0].split()[1])


def test_drill_with_no_backups(proj):
    code, _, err = run_cli(["backup.drill", "-p", str(proj), "--command", "true"])
    assert code == 1 and "no project backups to drill" in err


def test_db_drill_task(dbproj):
    yaml(dbproj, "db:\n  path: app.db\ndrill:\n  db_checks:\n    - SELECT 1 FROM users LIMIT 1\n    - SELECT 1 FROM empty\n")
    code, _, err = run_cli(["db.backup", "-p", str(dbproj)])
    assert code == 0, err
    code, out, err = run_cli(["db.drill", "-p", str(dbproj), "--json"])
    data = json.loads(out)
    assert code == EXIT_COMMAND_FAILED and data["exit_code"] == EXIT_COMMAND_FAILED and "check 2 failed" in err
    assert [s["ok"] for s in data["steps"]] == [True, True, True, True, True, False]
    yaml(dbproj, "db:\n  path: app.db\ndrill:\n  db_checks: ['SELECT 1 FROM users LIMIT 1']\n")
    code, out, err = run_cli(["db.drill", "-p", str(dbproj)])
    assert code == 0 and "drill passed" in out, err
    recs = [r for r in history(dbproj) if r["task"] == "db.drill"]
    assert [r["outcome"] for r in recs] == ["failure", "success"] and recs[-1]["kind"] == "db"
