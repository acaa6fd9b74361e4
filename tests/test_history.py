"""The run history: records, redaction, concurrent appends, trimming, torn lines."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from invoke import Exit

from backup_lib.errors import IntegrityError, LockedError, NotFoundError, UsageError
from backup_lib.history import (
    MAX_LINE,
    append_record,
    current_run,
    encode_record,
    history_path,
    read_history,
    recording,
    trim_history,
)
from backup_lib.redact import dotenv_secrets, environment_secrets, redact

REPO = Path(__file__).resolve().parent.parent


def lines(path):
    return Path(path).read_bytes().decode().splitlines()


# ------------------------------------------------------------ where it lives


def test_history_path_default_layout_is_beside_project_and_db(tmp_path):
    root = tmp_path / "app"
    assert history_path(str(root / "backups" / "project")) == str(root / "backups" / "history.jsonl")


def test_history_path_custom_backup_dir_keeps_it_inside(tmp_path):
    # /mnt/nas/myapp: never the shared parent, always with the backups
    assert history_path(str(tmp_path / "nas" / "myapp")) == str(tmp_path / "nas" / "myapp" / "history.jsonl")
    # any folder named project keeps the project/ + db/ layout
    assert history_path(str(tmp_path / "vol" / "project")) == str(tmp_path / "vol" / "history.jsonl")


def test_history_path_configured_is_relative_to_the_root(tmp_path):
    assert history_path(str(tmp_path / "b"), "var/runs.jsonl", root=str(tmp_path)) == str(tmp_path / "var" / "runs.jsonl")
    assert history_path(str(tmp_path / "b"), "/srv/h.jsonl", root=str(tmp_path)) == "/srv/h.jsonl"


# --------------------------------------------------------------- recording


def test_success_records_every_field(tmp_path):
    path = tmp_path / "backups" / "history.jsonl"
    archive = tmp_path / "demo_project_20260101_010203.tar.gz"
    archive.write_bytes(b"x" * 1234)
    with recording(str(path), task="backup.create", kind="project", project="demo") as run:
        assert current_run() is run
        run.archive(str(archive), files=7)
    (rec,) = read_history(str(path))
    assert rec["task"] == "backup.create" and rec["kind"] == "project" and rec["project"] == "demo"
    assert rec["outcome"] == "success" and rec["exit_code"] == 0
    assert rec["archive"] == "demo_project_20260101_010203.tar.gz"  # a name, never the full path
    assert rec["size"] == 1234 and rec["files"] == 7
    assert rec["start"] <= rec["end"] and rec["duration"] >= 0
    assert "error" not in rec
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_current_run_outside_a_recording_is_a_harmless_throwaway():
    current_run().archive(None, size=1, files=1)  # nothing to record into, no error


@pytest.mark.parametrize(
    "exc, code, outcome",
    [
        (NotFoundError("project root /nope does not exist"), 1, "failure"),
        (UsageError("--max-backups must be at least 1"), 2, "failure"),
        (IntegrityError("archive truncated"), 4, "failure"),
        (LockedError("backup dir busy"), 5, "failure"),
        (Exit("incomplete: 2 files could not be read", code=3), 3, "incomplete"),
        (Exit("error: 1 of 3 backups failed verification", code=4), 4, "failure"),
        (KeyboardInterrupt(), 130, "failure"),
        (ZeroDivisionError("division by zero"), 1, "failure"),
    ],
)
def test_an_exception_is_recorded_with_its_exit_code_and_reraised(tmp_path, exc, code, outcome):
    path = tmp_path / "h.jsonl"
    with pytest.raises(type(exc)) as info:
        with recording(str(path), task="backup.verify"):
            raise exc
    assert info.value is exc  # unchanged
    (rec,) = read_history(str(path))
    assert rec["exit_code"] == code and rec["outcome"] == outcome
    assert rec["kind"] == "project"
    assert "\n" not in rec["error"] and not rec["error"].startswith(("error: ", "incomplete: "))
    if isinstance(exc, ZeroDivisionError):
        assert rec["error"] == "unexpected ZeroDivisionError: division by zero"


def test_fail_records_without_raising_and_verify_counts(tmp_path):
    path = tmp_path / "h.jsonl"
    with recording(str(path), task="db.verify") as run:
        run.verified(3, 1)
        run.fail(4, "1 of 3 backups failed verification")
    (rec,) = read_history(str(path))
    assert (rec["kind"], rec["outcome"], rec["exit_code"], rec["checked"], rec["failed"]) == ("db", "failure", 4, 3, 1)


def test_error_line_never_carries_a_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "s3cr3t-django-key")
    monkeypatch.setenv("DATABASE_URL", "postgres://app:dbpassw0rd@db.internal/app")
    monkeypatch.setenv("BACKUP_NOTIFY_URLS", "mailto://ops:mailpassw0rd@mail.example.com")
    dotenv = tmp_path / ".env"
    dotenv.write_text("STRIPE_API_KEY=sk_live_abcdef123456\nDEBUG=true\nDATABASE_URL=sqlite:///app.db\n")
    path = tmp_path / "h.jsonl"
    message = ("cannot open postgres://app:dbpassw0rd@db.internal/app with key s3cr3t-django-key, "
               "sk_live_abcdef123456 and https://hook.example.com/x?token=tok123456&a=1 "
               "mailpassw0rd in sqlite:///app.db")
    with pytest.raises(NotFoundError):
        with recording(str(path), task="db.backup",
                       secrets=lambda: environment_secrets() + dotenv_secrets(str(dotenv))):
            raise NotFoundError(message)
    text = path.read_text()
    for secret in ("dbpassw0rd", "s3cr3t-django-key", "sk_live_abcdef123456", "tok123456", "mailpassw0rd"):
        assert secret not in text
    (rec,) = read_history(str(path))
    assert "postgres://app:****@db.internal/app" in rec["error"]
    assert "sqlite:///app.db" in rec["error"]  # not a secret: kept, the line stays useful


def test_redact_masks_url_passwords_and_secret_query_values():
    assert redact("see smtp://u:p%40ss@mail:25 now") == "see smtp://u:****@mail:25 now"
    assert redact("https://x.org/a?api_key=abc&page=2") == "https://x.org/a?api_key=****&page=2"
    assert redact("plain words", ["words"]) == "plain ****"
    assert environment_secrets({"PATH": "/usr/bin", "PWD": "/srv", "DEBUG_TOKEN": "true", "API_TOKEN": "abcdefgh"}) == ["abcdefgh"]


def test_a_history_that_cannot_be_written_is_one_warning_and_changes_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    warnings = []
    with recording(str(blocker / "history.jsonl"), task="backup.create", warn=warnings.append) as run:
        run.archive(None, size=1, files=1)
    assert len(warnings) == 1 and "run history not written" in warnings[0]
    warnings.clear()
    with pytest.raises(IntegrityError):
        with recording(str(blocker / "history.jsonl"), task="backup.verify", warn=warnings.append):
            raise IntegrityError("bad")
    assert len(warnings) == 1


def test_a_failing_callback_is_one_warning_and_the_next_still_runs(tmp_path):
    seen, warnings = [], []

    def broken(record):
        raise RuntimeError("boom")

    with recording(str(tmp_path / "h.jsonl"), task="backup.create", on_finish=[broken, seen.append], warn=warnings.append):
        pass
    assert len(warnings) == 1 and "boom" in warnings[0]
    assert seen and seen[0]["outcome"] == "success"


# ------------------------------------------------------------------ the file


def test_a_line_is_bounded_whatever_the_error(tmp_path):
    path = tmp_path / "h.jsonl"
    with pytest.raises(NotFoundError):
        with recording(str(path), task="backup.create"):
            raise NotFoundError("é" * 50_000)
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1 and len(data) <= MAX_LINE
    assert read_history(str(path))[0]["exit_code"] == 1
    assert len(encode_record({"task": "x", "end": "e", "error": "\U0001F600" * 10_000})) <= MAX_LINE


def test_reading_skips_torn_and_garbage_lines_and_an_append_ends_a_torn_line(tmp_path):
    path = tmp_path / "h.jsonl"
    good = {"v": 1, "task": "backup.create", "kind": "project", "end": "2026-01-01T00:00:00+00:00", "outcome": "success", "exit_code": 0}
    path.write_bytes(
        encode_record(good)
        + b"\x00\xff garbage\n"
        + b"[1, 2]\n"
        + b'{"no": "task"}\n'
        + encode_record({**good, "task": "db.backup"})[:40]  # torn: a crash mid-line
    )
    assert [r["task"] for r in read_history(str(path))] == ["backup.create"]
    append_record(str(path), {**good, "task": "backup.verify"})
    assert [r["task"] for r in read_history(str(path))] == ["backup.create", "backup.verify"]
    assert read_history(str(tmp_path / "missing.jsonl")) == []


def test_trimming_keeps_the_newest_whole_lines(tmp_path):
    path = tmp_path / "h.jsonl"
    for i in range(600):
        append_record(str(path), {"task": "backup.create", "end": f"{i:06d}", "files": i, "error": "x" * 200},
                      max_bytes=50_000, trim_to=30_000)
        assert path.stat().st_size <= 50_000 + MAX_LINE
    recs = read_history(str(path))
    files = [r["files"] for r in recs]
    assert files[-1] == 599
    assert files == list(range(files[0], 600))  # a contiguous run of the newest
    assert len(files) < 600
    assert path.stat().st_size <= 50_000
    assert all(line.startswith("{") and line.endswith("}") for line in lines(path))
    assert trim_history(str(path), max_bytes=10**9) is False  # under the limit: untouched
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".trim")]


APPENDER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from backup_lib.history import append_record
    path, ident, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    while not os.path.exists(go):
        time.sleep(0.005)
    for i in range(count):
        # long lines (about 2.5 kB) make a torn or interleaved write visible
        append_record(path, {{"task": "backup.create", "end": "e", "project": ident, "files": i, "error": ident * 600}},
                      max_bytes=int(sys.argv[5]), trim_to=int(sys.argv[6]))
    """
)


def _run_appenders(tmp_path, procs, count, max_bytes, trim_to):
    path = tmp_path / "h.jsonl"
    go = tmp_path / "go"
    script = tmp_path / "append.py"
    script.write_text(APPENDER.format(repo=str(REPO)))
    children = [
        subprocess.Popen([sys.executable, str(script), str(path), f"p{n}", str(count), str(go), str(max_bytes), str(trim_to)])
        for n in range(procs)
    ]
    time.sleep(0.2)
    go.write_text("")
    for child in children:
        assert child.wait(timeout=120) == 0
    return path


def test_concurrent_appends_from_processes_never_interleave_or_lose_lines(tmp_path):
    path = _run_appenders(tmp_path, procs=4, count=150, max_bytes=10**9, trim_to=10**9)
    raw = lines(path)
    assert len(raw) == 4 * 150
    recs = [json.loads(line) for line in raw]  # every line whole
    for n in range(4):
        mine = [r["files"] for r in recs if r["project"] == f"p{n}"]
        assert mine == list(range(150))
        assert all(r["error"] == f"p{n}" * 600 for r in recs if r["project"] == f"p{n}")


def test_concurrent_appends_while_trimming_lose_only_the_oldest(tmp_path):
    path = _run_appenders(tmp_path, procs=4, count=150, max_bytes=60_000, trim_to=40_000)
    raw = lines(path)
    recs = [json.loads(line) for line in raw]  # no torn line, though files were swapped under the appenders
    assert path.stat().st_size <= 60_000 + 4 * MAX_LINE
    assert recs[-1]["files"] == 149
    for n in range(4):
        mine = [r["files"] for r in recs if r["project"] == f"p{n}"]
        # a trim drops a prefix of the file: each writer's surviving lines are
        # its newest ones, none missing in between (a writer that finished
        # early may have none left)
        assert mine == list(range(150 - len(mine), 150))
