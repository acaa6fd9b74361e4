"""The tasks as users run them: flags, config, output, exit codes."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, make_project, run_cli, run_subprocess


@pytest.fixture
def proj(tmp_path):
    return make_project(tmp_path / "webapp")


def cli(*args):
    return run_cli(list(args))


def no_traceback(err):
    assert "Traceback" not in err


def test_create_json_and_list_info(proj):
    code, out, err = cli("backup.create", "--project-root", str(proj), "--json")
    assert code == 0, err
    meta = json.loads(out)
    assert meta["backup_path"].endswith(".tar.gz") and os.path.exists(meta["backup_path"])
    assert meta["total_files"] > 0 and meta["backup_type"] == "project_full"
    code, out, _ = cli("backup.list", "--project-root", str(proj), "--json")
    rows = json.loads(out)
    assert rows[0]["backup_path"] == meta["backup_path"] and rows[0]["total_files"] == meta["total_files"]
    code, out, _ = cli("backup.list", "--project-root", str(proj))
    assert "webapp_project_" in out and "gzip" in out
    code, out, _ = cli("backup.info", "--project-root", str(proj), "--backup-path", os.path.basename(meta["backup_path"]), "--json")
    assert code == 0 and json.loads(out)["project_hash"] == meta["project_hash"]
    code, out, _ = cli("backup.info", "--backup-path", meta["backup_path"])
    assert "project_hash: " + meta["project_hash"] in out
    assert "application_version: -" in out and "None" not in out


def test_dry_run_lists_files_and_writes_nothing(proj):
    code, out, err = cli("backup.create", "--project-root", str(proj), "--dry-run", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"files", "total_files", "total_size"}
    assert "app/models.py" in data["files"] and ".env" not in data["files"]
    assert data["total_files"] == len(data["files"])
    assert not (proj / "backups").exists()
    code, out, err = cli("backup.create", "--project-root", str(proj), "--dry-run", "--include", ".env", "--exclude", "static/")
    assert ".env" in out.split() and "static/app.js" not in out and "would be backed up" in err


def test_no_compress_and_compression_flag(proj):
    _, out, _ = cli("backup.create", "--project-root", str(proj), "--no-compress", "--json")
    assert json.loads(out)["backup_path"].endswith(".tar")
    _, out, _ = cli("backup.create", "--project-root", str(proj), "--compression", "zst", "--json")
    assert json.loads(out)["compression"] == "zstd"
    code, _, err = cli("backup.create", "--project-root", str(proj), "--compression", "lz4")
    assert code == 2 and "--compression" in err


def test_env_config_overrides(proj, monkeypatch):
    monkeypatch.setenv("INVOKE_BACKUP_COMPRESSION", "zst")
    monkeypatch.setenv("INVOKE_BACKUP_NAME", "nightly")
    _, out, err = cli("backup.create", "--project-root", str(proj), "--json")
    path = json.loads(out)["backup_path"]
    assert os.path.basename(path).startswith("nightly_project_") and path.endswith(".tar.zst"), err


def test_invoke_yaml_config(proj, tmp_path):
    (tmp_path / "tasks.py").write_text(open(REPO / "tasks.py").read())
    bdir = tmp_path / "elsewhere"
    (tmp_path / "invoke.yaml").write_text(
        f"backup:\n  project_root: {proj}\n  backup_dir: {bdir}\n  include: ['.env']\n  compression: none\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "invoke", "backup.create", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["backup_path"].startswith(str(bdir)) and meta["backup_path"].endswith(".tar")
    import tarfile

    with tarfile.open(meta["backup_path"]) as tf:
        assert ".env" in tf.getnames()


def test_restore_default_target_and_refusals(proj, tmp_path, monkeypatch):
    _, out, _ = cli("backup.create", "--project-root", str(proj), "--json")
    path = json.loads(out)["backup_path"]
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("backup.restore", "--backup-path", path)
    assert code == 0, err
    restored = tmp_path / "restored_project"
    assert (restored / "app" / "models.py").read_text() == (proj / "app" / "models.py").read_text()
    code, _, err = cli("backup.restore", "--backup-path", path)
    assert code == 1 and "not empty" in err and "--force" in err
    (restored / "app" / "models.py").write_text("local edit")
    (restored / "local.txt").write_text("mine")
    code, _, err = cli("backup.restore", "--backup-path", path, "--force")
    assert code == 0, err
    assert (restored / "app" / "models.py").read_text() == (proj / "app" / "models.py").read_text()
    assert (restored / "local.txt").read_text() == "mine"


def test_cleanup_flags(proj):
    cli("backup.create", "--project-root", str(proj))
    code, _, err = cli("backup.cleanup", "--project-root", str(proj), "--retention-days", "-1")
    assert code == 2 and "retention-days" in err
    code, _, err = cli("backup.cleanup", "--project-root", str(proj), "--max-backups", "0")
    assert code == 2
    code, out, _ = cli("backup.cleanup", "--project-root", str(proj), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["would_delete"] == []
    code, out, _ = cli("backup.cleanup", "--project-root", str(proj))
    assert code == 0 and "keep" in out


@pytest.mark.parametrize("args,code,needle", [
    (["backup.create", "--project-root", "/nonexistent/project"], 1, "does not exist"),
    (["backup.info", "--backup-path", "/nonexistent.tar.gz"], 1, "does not exist"),
    (["backup.restore", "--backup-path", "/nonexistent.tar.gz"], 1, "does not exist"),
    (["backup.info"], 2, "--backup-path"),
])
def test_errors_are_one_line(args, code, needle):
    got, out, err = cli(*args)
    assert got == code and needle in err
    no_traceback(err)
    assert len(err.strip().splitlines()) == 1


def test_corrupt_and_foreign_archives_exit_4(proj, tmp_path):
    _, out, _ = cli("backup.create", "--project-root", str(proj), "--json")
    path = json.loads(out)["backup_path"]
    bad = tmp_path / "bad.tar.gz"
    data = bytearray(open(path, "rb").read())
    bad.write_bytes(bytes(data[: len(data) // 2]))
    code, _, err = cli("backup.info", "--backup-path", str(bad))
    assert code == 4, err
    no_traceback(err)
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello")
    code, _, err = cli("backup.restore", "--backup-path", str(foreign), "--target-path", str(tmp_path / "t"))
    assert code == 4 and not (tmp_path / "t").exists()


def test_backup_dir_must_not_be_the_root(proj):
    code, _, err = cli("backup.create", "--project-root", str(proj), "--backup-dir", str(proj))
    assert code == 2 and "project root itself" in err


def test_backup_dir_not_writable(proj, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    code, _, err = cli("backup.create", "--project-root", str(proj), "--backup-dir", str(blocker / "sub"))
    assert code == 1 and "backup dir" in err
    no_traceback(err)


def test_disk_full_removes_partial_and_keeps_earlier(proj, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        code, out, err = cli("backup.create", "--project-root", str(proj), "--backup-dir", str(mnt), "--json")
        assert code == 0, err
        first = json.loads(out)["backup_path"]
        (proj / "big.bin").write_bytes(os.urandom(600_000))
        code, _, err = cli("backup.create", "--project-root", str(proj), "--backup-dir", str(mnt))
        assert code == 1 and "disk full" in err
        no_traceback(err)
        left = sorted(os.listdir(mnt))
        assert not [n for n in left if n.endswith(".partial")]
        assert os.path.exists(first)
        code, out, _ = cli("backup.verify", "--backup-dir", str(mnt), "--project-root", str(proj))
        assert code == 0
    finally:
        subprocess.run(["umount", str(mnt)])


NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to make a file unreadable")
def test_unreadable_file_gives_exit_3(tmp_path):
    """Root without CAP_DAC_OVERRIDE/READ_SEARCH honours permission bits."""
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    for name in ("ok.txt", "secret.txt", "sub/x"):
        (root / name).write_text(name)
    os.chmod(root / "secret.txt", 0o000)
    os.chmod(root / "sub", 0o000)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [*NO_DAC, sys.executable, "-m", "invoke", "-r", str(REPO), "backup.create", "--project-root", str(root), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    os.chmod(root / "sub", 0o755)
    assert proc.returncode == 3, proc.stderr
    meta = json.loads(proc.stdout)
    assert {s["path"] for s in meta["skipped_files"]} == {"secret.txt", "sub"}
    assert "secret.txt" in proc.stderr and "incomplete" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.path.exists(meta["backup_path"])


def test_help_documents_every_flag():
    proc = run_subprocess(["--help", "backup.create"], cwd=REPO)
    for flag in ("--no-compress", "--exclude", "--include", "--no-default-excludes", "--dry-run", "--json", "--project-root", "--backup-dir"):
        assert flag in proc.stdout


def test_public_surface_is_lazy_and_complete():
    code = ("import sys, backup_lib; assert 'backup_lib.archive' not in sys.modules; "
            "[getattr(backup_lib, n) for n in backup_lib.__all__]; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_backups_never_hold_backups(proj, tmp_path, monkeypatch):
    """Both default backup folders and every configured one are left out,
    wherever --backup-dir points and whatever --no-default-excludes says."""
    from conftest import write_tree

    write_tree(proj, {
        "backups/project/webapp_project_20250101_000000.tar.gz": "old",
        "backups/db/webapp_db_20250101_000000.tar.gz": "old",
        "store/webapp_project_20250102_000000.tar.gz": "old",
        "dbstore/webapp_db_20250102_000000.tar.gz": "old",
    })
    monkeypatch.setenv("INVOKE_BACKUP_BACKUP_DIR", "store")
    monkeypatch.setenv("INVOKE_DB_BACKUP_DIR", "dbstore")
    elsewhere = tmp_path / "elsewhere"
    for extra in ([], ["--no-default-excludes"], ["--include", "backups/"]):
        code, out, err = cli("backup.create", "--project-root", str(proj), "--backup-dir", str(elsewhere), "--dry-run", "--json", *extra)
        assert code == 0, err
        files = json.loads(out)["files"]
        assert "app/models.py" in files
        assert not [f for f in files if f.startswith(("backups/", "store/", "dbstore/"))], (extra, files)
    code, out, err = cli("backup.create", "--project-root", str(proj), "--backup-dir", "inside", "--json")
    assert code == 0, err
    import tarfile

    with tarfile.open(json.loads(out)["backup_path"]) as tf:
        names = tf.getnames()
    assert "app/models.py" in names and not [n for n in names if n.startswith(("backups/", "store/", "dbstore/", "inside/"))]


def test_dry_run_and_create_report_the_same_total_size_with_hard_links(proj):
    (proj / "data.bin").write_bytes(os.urandom(50_000))
    os.link(proj / "data.bin", proj / "data-link.bin")
    os.link(proj / "data.bin", proj / "static" / "copy.bin")
    code, out, err = cli("backup.create", "--project-root", str(proj), "--dry-run", "--json")
    assert code == 0, err
    planned = json.loads(out)
    code, out, err = cli("backup.create", "--project-root", str(proj), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert planned["total_size"] == made["total_size"] and planned["total_files"] == made["total_files"]
    assert made["total_size"] < 2 * 50_000


# ------------------------------------------------------------ flags and exit codes

TASKS = ["backup.create", "backup.list", "backup.info", "backup.restore", "backup.verify", "backup.cleanup",
         "db.backup", "db.list", "db.info", "db.verify", "db.restore", "db.cleanup"]


def task_flags(name):
    """{long flag: short flag or None} from `invoke --help TASK`."""
    import re

    proc = run_subprocess(["--help", name], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    flags = {}
    for line in proc.stdout.split("Options:")[1].splitlines():
        m = re.match(r"\s+(?:-(\w)(?: \w+)?, )?--([\w-]+)", line)
        if m:
            flags[m.group(2)] = m.group(1)
    return flags


def test_short_flags_mean_one_thing_everywhere():
    by_task = {name: task_flags(name) for name in TASKS}
    longs, shorts = {}, {}
    for name, flags in by_task.items():
        assert "json" in flags and "project-root" in flags and "backup-dir" in flags, name
        for long, short in flags.items():
            longs.setdefault(long, set()).add(short)
            if short:
                shorts.setdefault(short, set()).add(long)
    assert {long: s for long, s in longs.items() if len(s) > 1} == {}, "a long flag with different short forms"
    assert {short: s for short, s in shorts.items() if len(s) > 1} == {}, "a short flag for two long flags"
    shared = {long for long in longs if sum(long in flags for flags in by_task.values()) > 1}
    assert {long for long in shared if longs[long] == {None}} == set(), "a shared flag without a short form"
    assert by_task["backup.verify"]["backup-dir"] == by_task["backup.create"]["backup-dir"] == "B"
    assert by_task["db.restore"]["force"] == by_task["backup.restore"]["force"] == "F"
    assert by_task["db.restore"]["from-sql"] is None and by_task["db.backup"]["db-path"] == "s"


def test_readme_short_flag_table_is_the_one_in_tasks():
    import re

    sys.path.insert(0, str(REPO))
    import tasks

    text = (REPO / "README.md").read_text()
    table = dict((long, short) for short, long in re.findall(r"^\| `-(\w)` \| `--([\w-]+)` \|", text, re.M))
    assert table == {long: short for long, short in tasks.SHORT_FLAGS.items()}


def every_task_flags() -> dict:
    """{task: {long flag: short flag or None}} for every task, from the
    parser contexts `invoke --help TASK` prints (as task_flags, in-process)."""
    import re

    sys.path.insert(0, str(REPO))
    import tasks

    out = {}
    for ctx in tasks.ns.to_contexts():
        flags = {}
        for usage, _help in ctx.help_tuples():
            m = re.match(r"(?:-(\w)(?: \w+)?, )?--([\w-]+)", usage)
            flags[m.group(2)] = m.group(1)
        out[ctx.name] = flags
    return out


def test_readme_short_flag_table_names_the_tasks_that_have_each_flag():
    """Each row's tasks column, expanded ("all but X", "`verify` (both
    `backup.*` and `db.*`)"), is exactly the tasks whose --help shows that
    short flag."""
    import re

    by_task = every_task_flags()
    assert task_flags("db.restore") == by_task["db.restore"]  # the same as --help prints
    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `-(\w)` \| `--([\w-]+)` \| (.*) \|$", text, re.M)
    assert rows
    for short, long, cell in rows:
        if cell.startswith("all"):
            named = set(by_task) - set(re.findall(r"`([\w.-]+)`", cell))
        else:
            named = set()
            for group in re.findall(r"((?:`[\w-]+`(?:, )?)+) \(both `backup\.\*` and `db\.\*`\)", cell):
                named |= {f"{side}.{t}" for t in re.findall(r"`([\w-]+)`", group) for side in ("backup", "db")}
            named |= set(re.findall(r"`((?:backup|db)\.[\w-]+)`", cell))
        have = {task for task, flags in by_task.items() if flags.get(long) == short}
        assert named == have, (f"-{short} --{long}", "README only:", sorted(named - have), "--help only:", sorted(have - named))
    # and every short flag a task has is in the table
    shorts = {(long, short) for flags in by_task.values() for long, short in flags.items() if short}
    assert shorts == {(long, short) for short, long, _ in rows}


def test_readme_tasks_table_lists_each_tasks_flags():
    """The flags column of "Tasks and flags" against --help (the common
    --project-root, --backup-dir, --json left out; "as `backup.cleanup`" and
    "as above" rows take that task's flags)."""
    import re

    by_task = every_task_flags()
    text = (REPO / "README.md").read_text()
    section = text[text.index("| task | flags | what it does |"):text.index("### Short flags")]
    common = {"project-root", "backup-dir", "json"}
    seen = set()
    for line in section.splitlines()[2:]:
        if not line.startswith("| `"):
            continue
        task_cell, flag_cell = line.split(" | ")[:2]
        names = re.findall(r"`([\w-]+\.[\w-]+)`", task_cell)
        like = re.findall(r"`([\w-]+\.[\w-]+)`", flag_cell) if flag_cell.startswith("as ") else []
        for i, name in enumerate(names):
            seen.add(name)
            if flag_cell == "as above":
                source = "backup." + name.split(".", 1)[1]
            elif like:
                source = like[i] if len(like) == len(names) else like[0]
            else:
                source = None
            listed = set(by_task[source]) - common if source else set(re.findall(r"`--([\w-]+)", flag_cell)) - common
            assert listed == set(by_task[name]) - common, (name, sorted(listed ^ (set(by_task[name]) - common)))
    assert seen == set(by_task), sorted(set(by_task) - seen)


def test_old_short_flags_fail_loudly_instead_of_changing_meaning(proj, tmp_path):
    _, out, _ = cli("backup.create", "--project-root", str(proj), "--json")
    bdir = os.path.dirname(json.loads(out)["backup_path"])
    # -b was --backup-dir in create/list/cleanup and --backup-path elsewhere: verify -b DIR failed with exit 4.
    proc = run_subprocess(["backup.verify", "-b", bdir, "-p", str(proj)], cwd=tmp_path)
    assert proc.returncode == 2 and "is a folder" in proc.stderr and "--backup-dir" in proc.stderr, proc.stderr
    proc = run_subprocess(["backup.verify", "-B", bdir, "-p", str(proj)], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("ok "), proc.stderr
    for args in (["db.restore", "-f"], ["backup.restore", "-f"], ["backup.list", "-d"], ["backup.create", "-n"],
                 ["backup.info", "-a", bdir], ["backup.list", "-b", bdir], ["db.backup", "-d", "x.db"]):
        proc = run_subprocess([*args, "-p", str(proj)], cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: "), (args, proc.stderr)


def test_old_f_flag_last_after_a_task_names_what_it_became(tmp_path):
    # -f is Invoke's --config, which takes a value: last on the line, Invoke's own message was
    # "Flag <Argument: config (f)> needed value and was not given one!".
    for args, meant in ((["backup.restore", "-b", "x", "-t", str(tmp_path / "y"), "-f"], ["--force"]),
                        (["db.restore", "-b", "x", "-f"], ["--from-sql", "--force"]),
                        (["db.restore", "-b", "x", "-f", "more"], ["--from-sql", "--force"])):
        proc = run_subprocess(args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and "Argument" not in proc.stderr, proc.stderr
        assert "-f/--config is not a flag of the task but of invoke itself" in proc.stderr, proc.stderr
        assert all(m in proc.stderr for m in meant), proc.stderr
    proc = run_subprocess(["backup.list", "-c"], cwd=tmp_path)  # Invoke's --collection, no value
    assert proc.returncode == 2 and "-c/--collection is not a flag of the task" in proc.stderr, proc.stderr
    assert "probably" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    # the task's own flag last, without its value: named, not Invoke's "Flag <Argument: backup_path (b)>"
    proc = run_subprocess(["backup.restore", "-b"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == (
        "error: -b/--backup-path needs a value (invoke --help backup.restore lists the task's flags)\n"), proc.stderr


def test_unknown_flag_or_task_is_exit_2(tmp_path):
    for args in (["backup.create", "--no-such-flag"], ["backup.nosuchtask"]):
        proc = run_subprocess(args, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["backup.cleanup", "--retention-days", "1000000"], "from 0 to 36500"),
    (["db.cleanup", "--max-backups", "many"], "--max-backups many"),
    (["backup.create", "--no-compress", "--compression", "zst"], "contradict"),
    (["db.backup", "--no-compress", "--compression", "gz"], "contradict"),
    (["backup.create", "--incremental", "--full"], "--incremental and --full contradict each other"),
    (["backup.create", "--compression", ""], "--compression ''"),
])
def test_bad_flag_values_are_exit_2(proj, args, needle):
    code, out, err = cli(*args, "--project-root", str(proj))
    assert code == 2 and needle in err, err
    no_traceback(err)
    assert not (proj / "backups").exists()


def test_uncompressed_archive_says_so(proj):
    code, out, err = cli("backup.create", "--project-root", str(proj), "--no-compress")
    assert code == 0, err
    assert "as an uncompressed tar)" in out and "as none" not in out


def test_missing_root_or_backup_dir_in_list_and_cleanup(proj, tmp_path):
    for task in ("backup.list", "backup.cleanup", "db.list", "db.cleanup"):
        code, out, err = cli(task, "--project-root", str(tmp_path / "nope"))
        assert code == 1 and str(tmp_path / "nope") in err and "does not exist" in err, (task, err)
        missing = tmp_path / "no-backups-here"
        code, out, err = cli(task, "--project-root", str(proj), "--backup-dir", str(missing))
        assert code == 0 and f"{missing} does not exist" in out, (task, out, err)
        code, out, err = cli(task, "--project-root", str(proj), "--backup-dir", str(missing), "--json")
        assert code == 0 and json.loads(out) in ([], {"dry_run": False, "deleted": [], "would_delete": [], "kept": [], "not_backups": [], "backups": []})
    assert not (tmp_path / "no-backups-here").exists()


def test_closed_stdout_ends_quietly(proj):
    """`backup.create --dry-run | head -1`: no traceback, no "Exception ignored", exit 141 (SIGPIPE's, as a shell reports it)."""
    for args in (["backup.create", "--dry-run"], ["backup.create", "--dry-run", "--json"], ["backup.list"]):
        full_env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-m", "invoke", "-r", str(REPO), *args, "--project-root", str(proj)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
        proc.stdout.close()  # the reader is gone before the first byte
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait() == 141, err
        assert "Traceback" not in err and "Exception ignored" not in err and "error" not in err, err


def test_closed_stdout_keeps_a_failure_code(proj, tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a backup at all" * 100)
    full_env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "-r", str(REPO), "backup.verify", "--backup-path", str(bad)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait() == 4 and "Exception ignored" not in err and "Traceback" not in err, err


def test_readme_cron_lines_keep_the_exit_code(tmp_path):
    """The README's cron lines call invoke directly: make would turn every failure into 2."""
    import re

    text = (REPO / "README.md").read_text()
    block = re.search(r"```cron\n(.*?)```", text, re.S).group(1)
    lines = [line.split(None, 5)[5] for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all("make" not in line.split() for line in lines)
    verify = next(line for line in lines if "backup.verify" in line)
    app = make_project(tmp_path / "myapp")
    shutil.copy(REPO / "tasks.py", app / "tasks.py")
    shutil.rmtree(app / ".venv")
    os.symlink(REPO / ".venv", app / ".venv")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    backup = next(line for line in lines if "backup.create" in line)
    proc = subprocess.run(["sh", "-c", backup.replace("/srv/myapp", str(app))], capture_output=True, text=True, env=env)
    if proc.returncode:  # no database in this app: db.backup may come first and stop the line
        subprocess.run([str(app / ".venv/bin/invoke"), "backup.create"], cwd=app, check=True, capture_output=True, env=env)
    archive = next((app / "backups" / "project").glob("*.tar.gz"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    proc = subprocess.run(["sh", "-c", verify.replace("/srv/myapp", str(app))], capture_output=True, text=True, env=env)
    assert proc.returncode == 4, proc.stderr
