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
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke.util import yaml  # the parser Invoke, and so tasks.py, uses

from conftest import HAVE_GIT, git, write_tree
from helpers import run_cli

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


# ------------------------------------------------------- the README shows the files


EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n+```[\w-]*\n(.*?)^```", re.S | re.M)


def test_the_readme_shows_every_example_file_verbatim():
    shown = {name: text for name, text in EXAMPLE_BLOCK.findall(README)}
    files = {str(p.relative_to(REPO)) for p in EXAMPLES.rglob("*") if p.is_file()}
    assert set(shown) == files
    for name, text in shown.items():
        assert text == (REPO / name).read_text(), f"the README's copy of {name} differs from the file"


# ------------------------------------------------------------------ GitHub Actions


GH_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def github_job(workflow: dict) -> dict:
    (job,) = workflow["jobs"].values()
    return job


def run_github(workflow: dict, workspace: Path, tmp: Path, variables: dict) -> SimpleNamespace:
    """Run the workflow's one job as a GitHub runner would: its `run:` steps in
    order with /bin/sh -e in the checkout, the job's env with `${{ vars.* }}`
    filled in, later steps skipped after a failure unless `if: always()`;
    `uses:` steps are stood in for (the checkout is ``workspace``, Python is
    this one, upload-artifact collects its path)."""
    job = github_job(workflow)
    context = {"github.run_id": "4242"}

    def expand(value) -> str:
        def one(m):
            if m.group(1).startswith("vars."):  # a repository variable: empty when not set
                return variables.get(m.group(1)[5:], "")
            assert m.group(1) in context, f"the test runner does not know ${{{{ {m.group(1)} }}}}"
            return context[m.group(1)]
        return GH_EXPR.sub(one, str(value))

    temp = tmp / "runner_temp"
    temp.mkdir()
    env = dict(os.environ, CI="true", GITHUB_ACTIONS="true", GITHUB_WORKSPACE=str(workspace), RUNNER_TEMP=str(temp),
               GITHUB_STEP_SUMMARY=str(tmp / "summary.md"), GITHUB_OUTPUT=str(tmp / "output"), GITHUB_ENV=str(tmp / "env"))
    env.update({k: expand(v) for k, v in (job.get("env") or {}).items()})
    out = SimpleNamespace(steps=[], artifact=None, failed=False, install=None)
    for step in job["steps"]:
        condition = step.get("if")
        assert condition in (None, "always()"), f"the test runner does not know if: {condition}"
        if out.failed and condition is None:
            continue
        action = step.get("uses", "").split("@")[0]
        if action == "actions/checkout":
            assert (workspace / "tasks.py").is_file()
        elif action == "actions/setup-python":
            assert str(step["with"]["python-version"]).startswith("3.11")
        elif action == "actions/upload-artifact":
            where = workspace / expand(step["with"]["path"])
            files = sorted(str(p.relative_to(workspace)) for p in where.rglob("*") if p.is_file()) if where.exists() else []
            if step["with"].get("if-no-files-found") == "error" and not files:
                out.failed = True
            out.artifact = SimpleNamespace(name=expand(step["with"]["name"]), files=files)
        elif action:
            pytest.fail(f"the test runner does not know the action {action}")
        elif step.get("id") == "install":
            out.install = step["run"]  # pip: checked statically, the shim stands in for it
        else:
            step_env = dict(env, **{k: expand(v) for k, v in (step.get("env") or {}).items()})
            result = run_sh(step["run"], cwd=workspace, env=step_env)
            out.steps.append(SimpleNamespace(name=step.get("name"), run=step["run"], result=result))
            out.failed = out.failed or result.returncode != 0
    summary = tmp / "summary.md"
    out.summary = summary.read_text() if summary.exists() else ""
    return out


def check_step_results(steps) -> None:
    for step in steps:
        assert step.result.returncode == 0, f"step {step.name!r} failed:\n{step.result.stdout}\n{step.result.stderr}"


def test_the_github_workflow_is_well_formed():
    workflow = load_yaml(EXAMPLES / "github-backup.yml")
    on = workflow[True]  # YAML 1.1 reads the key `on` as true, as GitHub's parser does not
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    job = github_job(workflow)
    assert "BACKUP_TOOLKIT" in job["env"]
    assert job["env"]["INVOKE_BACKUP_ENCRYPT_TO"] == job["env"]["INVOKE_DB_ENCRYPT_TO"]
    install = next(s for s in job["steps"] if s.get("id") == "install")["run"]
    assert "python -m venv .venv" in install and '.venv/bin/pip install --quiet "$BACKUP_TOOLKIT"' in install
    for step in job["steps"]:  # an expression in a script is an injection waiting to happen: env only
        assert "${{" not in step.get("run", "")
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "backups/"


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq (on every GitHub runner) is not installed")
def test_the_github_workflow_backs_up_verifies_checks_status_and_keeps_the_archives(tmp_path):
    root = make_app(tmp_path / "shop")
    shim(root / ".venv" / "bin" / "invoke")
    job = run_github(load_yaml(EXAMPLES / "github-backup.yml"), root, tmp_path, {})
    check_step_results(job.steps)
    assert not job.failed and job.install is not None
    backups = root / "backups"
    (project,) = archives(backups / "project", "shop_project_*.tar.gz")
    (db,) = archives(backups / "db", "shop_db_*.tar.gz")
    assert job.artifact.files == sorted(str(p.relative_to(root)) for p in backups.rglob("*") if p.is_file())
    for path in (project, db, backups / "history.jsonl", backups / "status.json"):
        assert str(path.relative_to(root)) in job.artifact.files
    # The JSON the steps keyed on: the summary table, and the status report.
    made = json.loads((tmp_path / "runner_temp" / "project.json").read_text())
    assert f"| {project.name} | {made['total_files']} | {made['total_size']} |" in job.summary
    assert f"| {db.name} | 2 |" in job.summary
    status = json.loads((backups / "status.json").read_text())
    assert (status["status"], status["exit_code"]) == ("ok", 0) and set(status["kinds"]) == {"project", "db"}
    # Both verifies ran (one invoke, two tasks both called verify) and were recorded.
    runs = [(r["task"], r["outcome"]) for r in history(backups / "history.jsonl")]
    assert runs == [("db.backup", "success"), ("backup.create", "success"), ("db.verify", "success"),
                    ("backup.verify", "success")]
    # The checkout as git sees it; the runner's .venv, the backups and the database are not in it.
    names = tar_names(project)
    assert {"tasks.py", "app/views/v11.py", ".gitignore", "requirements.txt"} <= names
    assert not any(n.startswith((".venv", "backups/", "instance")) for n in names)


def test_a_failed_backup_fails_the_github_job_with_the_tools_code_and_still_uploads(tmp_path):
    root = make_app(tmp_path / "shop")
    (root / "instance" / "app.db").unlink()  # no database where the job runs
    shim(root / ".venv" / "bin" / "invoke")
    job = run_github(load_yaml(EXAMPLES / "github-backup.yml"), root, tmp_path, {})
    assert job.failed
    (backup,) = job.steps  # verify and status were skipped
    assert backup.result.returncode == 1 and "no SQLite database" in backup.result.stderr
    assert job.artifact is not None  # if: always()


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq (on every GitHub runner) is not installed")
def test_the_github_workflow_encrypts_to_the_repository_variable(tmp_path):
    from backup_lib.archive.crypto import keygen

    root = make_app(tmp_path / "shop")
    shim(root / ".venv" / "bin" / "invoke")
    identity = tmp_path / "key.txt"  # kept off the runner: only the recipient goes in
    recipient = keygen(str(identity))
    job = run_github(load_yaml(EXAMPLES / "github-backup.yml"), root, tmp_path, {"BACKUP_AGE_RECIPIENTS": recipient})
    check_step_results(job.steps)
    (project,) = archives(root / "backups" / "project", "shop_project_*.tar.gz.age")
    (db,) = archives(root / "backups" / "db", "shop_db_*.tar.gz.age")
    assert project.name in job.summary and db.name in job.summary
    assert json.loads((root / "backups" / "status.json").read_text())["status"] == "ok"
    # What the job uploaded opens, whole, with the identity kept elsewhere.
    for task, path in (("backup.verify", project), ("db.verify", db)):
        result = run_sh("", cwd=root, env=dict(os.environ),
                        argv=[str(root / ".venv/bin/invoke"), task, "-b", str(path), "--identity", str(identity), "--json"])
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)[0]["checked"] == "contents"


# ---------------------------------------------------------------------- GitLab CI


def test_the_gitlab_job_backs_up_verifies_checks_status_and_keeps_the_archives(tmp_path):
    config = load_yaml(EXAMPLES / "gitlab-ci.yml")
    job = config["backup"]
    assert job["image"].startswith("python:3.11")
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in job["rules"]
    assert job["before_script"] == ["python -m venv .venv", '.venv/bin/pip install --quiet "$BACKUP_TOOLKIT"']
    assert "BACKUP_TOOLKIT" in job["variables"]
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["paths"] == ["backups/"]

    root = make_app(tmp_path / "shop")
    shim(root / ".venv" / "bin" / "invoke")  # what before_script installs
    env = dict(os.environ, CI="true", GITLAB_CI="true", CI_PROJECT_DIR=str(root), CI_PIPELINE_SOURCE="schedule",
               **{k: str(v) for k, v in job["variables"].items()})
    result = run_sh("\n".join(job["script"]) + "\n", cwd=root, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    backups = root / "backups"
    assert len(archives(backups / "project", "shop_project_*.tar.gz")) == 1
    assert len(archives(backups / "db", "shop_db_*.tar.gz")) == 1
    assert "shop: ok" in result.stdout  # backup.status's table, in the job log
    status = json.loads((backups / "status.json").read_text())
    assert (status["status"], status["exit_code"]) == ("ok", 0)
    assert [r["task"] for r in history(backups / "history.jsonl")] == ["db.backup", "backup.create", "db.verify",
                                                                       "backup.verify"]


# ---------------------------------------------------------------------- container


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, args = (pending + line).strip().partition(" ")
        out.append((instruction.upper(), " ".join(args.split())))
        pending = ""
    return out


def env_pairs(args: str) -> dict:
    return dict(pair.split("=", 1) for pair in args.split())


class Image:
    """What the Dockerfile and compose.yaml promise, read statically."""

    def __init__(self):
        self.steps = dockerfile(EXAMPLES / "container" / "Dockerfile")
        self.compose = load_yaml(EXAMPLES / "container" / "compose.yaml")
        self.env = {}
        for op, args in self.steps:
            if op == "ENV":
                self.env.update(env_pairs(args))
        self.volumes = [v for op, args in self.steps if op == "VOLUME" for v in json.loads(args)]
        self.workdir = next(args for op, args in self.steps if op == "WORKDIR")
        self.user = [args for op, args in self.steps if op == "USER"][-1]


def test_the_container_recipe_is_well_formed():
    image = Image()
    ops = [op for op, _ in image.steps]
    assert image.steps[0][0] == "FROM" and image.steps[0][1].startswith("python:3.11")
    # The toolkit is installed in the app's image, from the build argument.
    assert ("ARG", 'BACKUP_TOOLKIT="backup-toolkit @ https://example.com/dist/backup_toolkit-0.1.0-py3-none-any.whl"') in image.steps
    assert ("RUN", 'pip install --no-cache-dir "$BACKUP_TOOLKIT"') in image.steps
    # The app (with tasks.py and backup.sh) is copied to the WORKDIR the command runs in.
    assert ops.index("WORKDIR") < image.steps.index(("COPY", ". ."))
    assert image.workdir == "/app"
    # The database and the backups on volumes of their own, owned by the unprivileged user.
    assert image.volumes == ["/data", "/backups"]
    assert image.env["DATABASE_URL"] == "sqlite:////data/app.db"
    assert image.env["INVOKE_BACKUP_BACKUP_DIR"] == "/backups/project" and image.env["INVOKE_DB_BACKUP_DIR"] == "/backups/db"
    assert image.user not in ("root", "0")
    assert any(op == "RUN" and f"chown {image.user}:{image.user} /data /backups" in args for op, args in image.steps)
    assert ops.index("VOLUME") < ops.index("USER")
    services, volumes = image.compose["services"], image.compose["volumes"]
    assert set(volumes) == {"data", "backups"}
    web, backup = services["web"], services["backup"]
    assert backup["image"] == web["image"] and web["build"] == "."
    assert backup["pull_policy"] == "never" and backup["profiles"] == ["backup"]
    assert sorted(backup["volumes"]) == ["backups:/backups", "data:/data"]
    assert web["volumes"] == ["data:/data"]  # the app itself cannot touch the backups
    assert backup["command"] == ["sh", "backup.sh"]


def test_the_container_backup_command_backs_up_to_the_volume_and_reports_a_shrunk_tree(tmp_path):
    image = Image()
    mounts = {"/data": tmp_path / "volumes" / "data", "/backups": tmp_path / "volumes" / "backups"}
    for folder in mounts.values():
        folder.mkdir(parents=True)

    def mounted(value: str) -> str:  # a path of the image, as this machine has it
        return re.sub(r"(?<![\w.-])(/data|/backups)(?=/|$)", lambda m: str(mounts[m.group(1)]), value)

    root = make_app(tmp_path / "app", db=mounts["/data"] / "app.db", checkout=False)  # WORKDIR /app, copied in
    for name in ("Dockerfile", "compose.yaml", "backup.sh"):
        shutil.copy(EXAMPLES / "container" / name, root / name)
    shim(tmp_path / "bin" / "invoke")  # pip install puts invoke on the image's PATH
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
               **{k: mounted(v) for k, v in image.env.items()})
    command = image.compose["services"]["backup"]["command"]
    live = sqlite3.connect(mounts["/data"] / "app.db")  # the app, in its own container, has it open
    try:
        live.execute("INSERT INTO users (name) VALUES ('tonight')")
        live.commit()
        night = run_sh("", cwd=root, env=env, argv=command)
    finally:
        live.close()
    assert night.returncode == 0, night.stdout + night.stderr
    backups = mounts["/backups"]
    (project,) = archives(backups / "project", "myapp_project_*.tar.gz")
    assert len(archives(backups / "db", "myapp_db_*.tar.gz")) == 1
    assert {"backup.sh", "tasks.py", "app/views/v0.py"} <= tar_names(project)
    assert "myapp: ok" in night.stdout
    runs = history(backups / "history.jsonl")  # beside the backup folders, on the volume
    assert [r["task"] for r in runs] == ["db.backup", "backup.create", "db.verify", "backup.verify", "db.cleanup",
                                         "backup.cleanup"]
    assert {r["outcome"] for r in runs} == {"success"}
    # The next night, a .gitignore accident leaves most of the app out: the
    # run fails with backup.status's own code, which cron passes on.
    with open(root / ".gitignore", "a") as fh:
        fh.write("app/\n")
    night = run_sh("", cwd=root, env=env, argv=command)
    assert night.returncode == 10, night.stdout + night.stderr
    assert "myapp: shrunk (exit 10)" in night.stdout and "status: shrunk" in night.stderr


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


# ----------------------------------------------------------- the machine contract


CONTRACT_TABLE = re.compile(r"<!-- json-contract -->\n+\|.*\n\|[-| ]+\n((?:\|.*\n)+)")


def contract() -> dict[str, list[str]]:
    """{task: [field path, …]} from the README's table of stable --json fields."""
    (rows,) = CONTRACT_TABLE.findall(README)
    out = {}
    for row in rows.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        fields = []
        for token in re.findall(r"`([^`]+)`", cells[2]):
            head, brace, rest = token.partition("{")
            fields += [head + name.strip() for name in rest.rstrip("}").split(",")] if brace else [token]
        for task in re.findall(r"`([^`]+)`", cells[0]):
            out[task] = fields
    return out


def lookup(node, parts: list[str]) -> str:
    """Whether a field path is "present", "missing", or "vacuous" (under a
    null, an empty list or an empty mapping) in a JSON document."""
    if not parts:
        return "present"
    if node is None:
        return "vacuous"
    head, rest = parts[0], parts[1:]
    if head == "[]" or head.startswith("<"):
        items = node if head == "[]" and isinstance(node, list) else \
            list(node.values()) if head.startswith("<") and isinstance(node, dict) else None
        if items is None:
            return "missing"
        found = {lookup(item, rest) for item in items}
        return "missing" if "missing" in found else "present" if "present" in found else "vacuous"
    if not isinstance(node, dict) or head not in node:
        return "missing"
    return lookup(node[head], rest)


def field_parts(path: str) -> list[str]:
    return re.findall(r"\[\]|[^.\[\]]+", path)


def test_lookup_of_field_paths():
    doc = {"a": [{"b": 1}, {"b": 2}], "k": {"x": {"n": None}, "y": {"n": {"m": 1}}}, "e": []}
    assert lookup(doc, field_parts("a[].b")) == "present"
    assert lookup(doc, field_parts("a[].c")) == "missing"
    assert lookup(doc, field_parts("e[].c")) == "vacuous"
    assert lookup(doc, field_parts("k.<kind>.n.m")) == "present"
    assert lookup(doc, field_parts("k.<kind>.z")) == "missing"
    assert lookup([{"ok": True}], field_parts("[].ok")) == "present"
    assert lookup({"ok": True}, field_parts("[].ok")) == "missing"


@pytest.fixture
def samples(tmp_path, monkeypatch):
    """The real --json output of each task in the contract, with every list
    and optional object the contract reaches into filled at least once."""
    root = make_app(tmp_path / "shop")
    nas = tmp_path / "nas"
    nas.mkdir()
    conf = tmp_path / "remotes.yaml"
    conf.write_text(f"remotes:\n  nas: {{url: '{nas}'}}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    out: dict[str, list] = {}

    def run(task, *args, code=0):
        got, stdout, stderr = run_cli([task, "-p", str(root), "--json", *args])
        assert got == code, stderr
        out.setdefault(task, []).append(json.loads(stdout))

    for change in ("first", "second"):
        (root / "app" / "views" / "v0.py").write_text(f"# {change}\n")
        run("backup.create")
        run("db.backup")
    run("backup.status", code=11)  # no verify yet: problems
    bad = root / "backups" / "project" / "shop_project_20200101_000000.tar.gz"
    bad.write_bytes(b"not an archive at all\n" * 10)
    run("backup.verify", code=4)  # errors[] filled; recorded as the last failure
    bad.unlink()
    run("backup.verify")
    run("db.verify")
    run("backup.status")  # verified since: ok, with the failed verify as the last failure
    run("backup.list")
    run("db.list")
    run("backup.restore", "-b", out["backup.create"][0]["backup_path"], "-t", str(tmp_path / "restored"))
    run("backup.push")
    run("db.push")
    run("backup.cleanup", "-m", "1")
    run("db.cleanup", "-m", "1")
    return out


def test_every_stable_json_field_is_in_the_tasks_real_output(samples):
    table = contract()
    assert {"backup.create", "db.backup", "backup.verify", "backup.list", "backup.status", "backup.restore",
            "backup.cleanup", "backup.push"} <= set(table)
    assert set(table) <= set(samples), "a task in the README's contract without a sample here"
    for task, fields in table.items():
        assert fields, task
        for field in fields:
            found = [lookup(doc, field_parts(field)) for doc in samples[task]]
            assert "missing" not in found, f"{task} --json lacks {field}"
            assert "present" in found, f"no sample of {task} --json reaches {field}"


def test_a_failure_with_json_is_a_code_an_error_line_and_no_partial_output(tmp_path):
    code, out, err = run_cli(["backup.verify", "-p", str(tmp_path / "gone"), "--json"])
    assert code == 1 and out == "" and err.startswith("error: ") and len(err.splitlines()) == 1


def test_the_exit_code_table_names_every_code_the_tool_returns():
    import tasks
    from backup_lib import drill, errors, status

    section = README.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for first in re.findall(r"^\| (\d+(?:–\d+)?) \|", section, re.M):
        low, _, high = first.partition("–")
        documented |= set(range(int(low), int(high or low) + 1))
    codes = {getattr(errors, name) for name in errors.__all__ if name.startswith("EXIT_")}
    drills = {drill.EXIT_RESTORE_FAILED, drill.EXIT_COMMAND_FAILED, drill.EXIT_TIMED_OUT}
    assert documented == codes | set(status.EXIT_CODES.values()) | drills | {130, tasks.EXIT_PIPE}
