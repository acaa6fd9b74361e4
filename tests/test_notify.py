"""Notifications and heartbeats through real servers on 127.0.0.1.

Mail goes to a real SMTP server (aiosmtpd), webhooks and heartbeats to a
real HTTP server (http.server in a thread); dead ports and refusing
endpoints must cost one warning line and nothing else.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backup_lib.errors import IntegrityError, NotFoundError, UsageError
from backup_lib.history import read_history, recording
from backup_lib.notify import (
    Notifier,
    compose,
    describe_url,
    heartbeat_request,
    notify_config,
    notify_test,
    should_notify,
    split_urls,
)
from backup_lib.project import create_backup
from backup_lib.redact import dotenv_secrets
from conftest import dead_port  # the smtp and http fixtures live there too

REPO = Path(__file__).resolve().parent.parent


def project(tmp_path):
    from conftest import write_tree

    root = tmp_path / "demo"
    write_tree(root, {"app.py": "print('hi')\n", "templates/index.html": "<p>hi</p>\n"})
    return root


def body_text(msg) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content()


# --------------------------------------------------------------------- email


def test_failed_create_sends_one_mail_with_subject_and_body(tmp_path, smtp):
    notifier = Notifier(notify_config({"urls": [smtp.url]}), warn=pytest.fail)
    missing = tmp_path / "no-such-project"
    with pytest.raises(NotFoundError):
        with recording(str(tmp_path / "h.jsonl"), task="backup.create", project="demo", on_finish=[notifier]):
            create_backup(str(missing), backup_dir=str(tmp_path / "b"))
    (msg,) = smtp.messages
    assert msg["Subject"] == "[demo] backup.create FAILED"
    assert msg["To"] == "ops@example.com"
    body = body_text(msg)
    assert "task: backup.create (project)" in body
    assert "outcome: failure (exit 1)" in body
    assert f"error: project root {missing} does not exist or is not a directory" in body
    assert "duration: " in body and "host: " in body
    assert read_history(str(tmp_path / "h.jsonl"))[0]["outcome"] == "failure"  # recorded, then sent


def test_success_mails_only_with_when_always(tmp_path, smtp):
    root = project(tmp_path)
    for when in ("failure", "never", "always"):
        notifier = Notifier(notify_config({"urls": smtp.url, "when": when}), warn=pytest.fail)
        with recording(None, task="backup.create", project="demo", on_finish=[notifier]) as run:
            res = create_backup(str(root), backup_dir=str(tmp_path / "b"), name="demo")
            run.archive(res.backup_path, files=res.metadata["total_files"])
    (msg,) = smtp.messages
    assert msg["Subject"] == "[demo] backup.create succeeded"
    body = body_text(msg)
    assert f"archive: {Path(res.backup_path).name}" in body
    assert "2 files" in body and "outcome: success (exit 0)" in body and "error:" not in body


def test_mail_never_carries_env_secrets(tmp_path, smtp, monkeypatch):
    (tmp_path / ".env").write_text("SECRET_KEY=django-insecure-abcdef\nDATABASE_URL=postgres://app:pgpassw0rd@db/app\n")
    monkeypatch.setenv("MAIL_PASSWORD", "mailpassw0rd")
    secrets = lambda: dotenv_secrets(str(tmp_path / ".env")) + ["mailpassw0rd"]  # noqa: E731
    with pytest.raises(IntegrityError):
        with recording(None, task="db.verify", project="demo", secrets=secrets,
                       on_finish=[Notifier(notify_config({"urls": [smtp.url]}), warn=pytest.fail)]):
            raise IntegrityError("postgres://app:pgpassw0rd@db/app failed with django-insecure-abcdef mailpassw0rd")
    raw = smtp.messages[0].as_string()
    for secret in ("pgpassw0rd", "django-insecure-abcdef", "mailpassw0rd"):
        assert secret not in raw
    assert "postgres://app:****@db/app" in body_text(smtp.messages[0])


# ------------------------------------------------------- webhook, heartbeat


def test_webhook_receives_the_json_body(tmp_path, http):
    notifier = Notifier(notify_config({"urls": [f"json://127.0.0.1:{http.port}/hooks/backup"]}), warn=pytest.fail)
    with pytest.raises(IntegrityError):
        with recording(None, task="backup.verify", project="demo", on_finish=[notifier]) as run:
            run.verified(3, 1)
            raise IntegrityError("myapp_project_20260101_000000.tar.gz: member app.py: SHA-256 mismatch")
    (req,) = http.requests
    assert (req.method, req.path) == ("POST", "/hooks/backup")
    data = json.loads(req.body)
    assert data["title"] == "[demo] backup.verify FAILED"
    assert data["type"] == "failure"
    assert "verified: 3 archives, 1 failed" in data["message"]
    assert "error: myapp_project_20260101_000000.tar.gz: member app.py: SHA-256 mismatch" in data["message"]


def test_heartbeat_success_and_fail_requests_arrive(tmp_path, http):
    cfg = notify_config({"heartbeat_url": f"{http.base}/ping/3f1c-uuid?rid=7", "when": "never"})
    root = project(tmp_path)
    with recording(None, task="backup.create", project="demo", on_finish=[Notifier(cfg, warn=pytest.fail)]):
        create_backup(str(root), backup_dir=str(tmp_path / "b"))
    with pytest.raises(NotFoundError):
        with recording(None, task="db.backup", project="demo", on_finish=[Notifier(cfg, warn=pytest.fail)]):
            raise NotFoundError("no database found under /srv/demo")
    # not a backup-producing task: no ping, so a stopped backup job is still noticed
    with recording(None, task="backup.verify", project="demo", on_finish=[Notifier(cfg, warn=pytest.fail)]):
        pass
    assert [(r.method, r.path) for r in http.requests] == [("GET", "/ping/3f1c-uuid?rid=7"), ("POST", "/ping/3f1c-uuid/fail?rid=7")]
    assert http.requests[1].body.decode() == "db.backup failure: no database found under /srv/demo"
    assert heartbeat_request("https://hc-ping.com/u/", False) == ("POST", "https://hc-ping.com/u/fail")


# ------------------------------------------------------ failures to notify


def test_dead_smtp_and_refusing_http_are_one_warning_and_change_nothing(tmp_path, http, capsys):
    http.status_for["/refuse"] = 500
    cfg = notify_config({
        "urls": [f"mailto://ops:hunter2pw@127.0.0.1:{dead_port()}?from=a@example.com&to=b@example.com",
                 f"json://127.0.0.1:{http.port}/refuse/tok3n-secret-path"],
        "heartbeat_url": f"http://127.0.0.1:{dead_port()}/ping/uuid-secret",
        "when": "always",
    })
    warnings = []
    exc = IntegrityError("archive truncated")
    with pytest.raises(IntegrityError) as info:
        with recording(str(tmp_path / "h.jsonl"), task="backup.create", project="demo",
                       on_finish=[Notifier(cfg, warn=warnings.append)]):
            raise exc
    assert info.value is exc  # the task's own error, unchanged
    assert read_history(str(tmp_path / "h.jsonl"))[0]["exit_code"] == 4
    assert len(warnings) == 1
    (line,) = warnings
    assert line.startswith("notification failed: ")
    assert "mailto://127.0.0.1" in line and "json://127.0.0.1" in line and "heartbeat http://127.0.0.1" in line
    for secret in ("hunter2pw", "tok3n-secret-path", "uuid-secret"):
        assert secret not in line
    assert [r.path for r in http.requests] == ["/refuse/tok3n-secret-path"]  # it was tried
    out, err = capsys.readouterr()
    assert err == "" and out == ""  # Apprise's own log lines do not leak

    # a success is still a success
    warnings.clear()
    with recording(None, task="backup.create", on_finish=[Notifier(cfg, warn=warnings.append)]) as run:
        run.archive(None, size=1, files=1)
    assert len(warnings) == 1


NOTIFYING_TASK = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from backup_lib.errors import BackupError, IntegrityError
    from backup_lib.history import recording
    from backup_lib.notify import Notifier, notify_config

    cfg = notify_config({{"urls": sys.argv[1].split(), "heartbeat_url": sys.argv[2] or None, "when": sys.argv[3]}})
    try:
        with recording(None, task="backup.create", project="demo", on_finish=[Notifier(cfg)]):
            if sys.argv[4] == "fail":
                raise IntegrityError("archive truncated")
    except BackupError as exc:  # what tasks.py's boundary does
        sys.stderr.write(f"error: {{exc}}\\n")
        sys.exit(exc.exit_code)
    print("apprise imported" if "apprise" in sys.modules else "apprise not imported")
    """
)


def _task(tmp_path, urls, heartbeat, when, outcome):
    script = tmp_path / "task.py"
    script.write_text(NOTIFYING_TASK.format(repo=str(REPO)))
    return subprocess.run([sys.executable, str(script), " ".join(urls), heartbeat, when, outcome],
                          capture_output=True, text=True, timeout=120)


def test_in_a_real_process_a_dead_endpoint_is_one_stderr_line_and_the_exit_code_stands(tmp_path):
    dead = [f"mailto://127.0.0.1:{dead_port()}?from=a@example.com&to=b@example.com", f"json://127.0.0.1:{dead_port()}/x"]
    proc = _task(tmp_path, dead, f"http://127.0.0.1:{dead_port()}/ping", "failure", "fail")
    assert proc.returncode == 4
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("warning: notification failed: ") and lines[1] == "error: archive truncated"
    proc = _task(tmp_path, dead, "", "always", "ok")
    assert proc.returncode == 0 and len(proc.stderr.splitlines()) == 1


def test_a_run_that_sends_nothing_never_imports_apprise(tmp_path, smtp):
    proc = _task(tmp_path, [smtp.url], "", "failure", "ok")
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "apprise not imported", "")
    assert smtp.messages == []
    proc = _task(tmp_path, [smtp.url], "", "always", "ok")
    assert proc.stdout.strip() == "apprise imported" and len(smtp.messages) == 1


# ---------------------------------------------------------------- notify-test


def test_notify_test_reports_each_url(tmp_path, smtp, http):
    outcomes = notify_test([smtp.url, f"json://127.0.0.1:{http.port}/t",
                            f"mailto://u:pw-secret@127.0.0.1:{dead_port()}?from=a@example.com&to=b@example.com",
                            "nosuchscheme://whatever"], project="demo")
    assert [o.ok for o in outcomes] == [True, True, False, False]
    assert outcomes[0].url == f"mailto://127.0.0.1:{smtp.port}/…"
    assert outcomes[3].error == "not a valid or supported Apprise URL"
    assert outcomes[2].error and "pw-secret" not in json.dumps([o.as_dict() for o in outcomes])
    assert smtp.messages[0]["Subject"] == "[demo] test notification"
    assert json.loads(http.requests[0].body)["title"] == "[demo] test notification"
    with pytest.raises(UsageError):
        notify_test([])


# ----------------------------------------------------------------- config


def test_config_urls_env_and_validation():
    env = {"NOTIFY": "mailto://u:p@mail.example.com?to=a@x.org,b@x.org, json://h.example.com/x\nntfys://topic"}
    cfg = notify_config({"urls": "slack://T/B/C", "urls_env": "NOTIFY"}, environ=env)
    assert cfg.urls == ("slack://T/B/C", "mailto://u:p@mail.example.com?to=a@x.org,b@x.org", "json://h.example.com/x", "ntfys://topic")
    assert cfg.when == "failure" and cfg.heartbeat_url is None and cfg.active
    assert split_urls("a://x, b://y  c://z") == ["a://x", "b://y", "c://z"]
    missing = notify_config({"urls_env": "NOT_SET"}, environ={})
    assert missing.urls == () and missing.missing_env == ("NOT_SET",)
    assert not notify_config({}, environ={}).active
    for section, words in [
        ({"when": True}, "YAML reads on/off"),  # `when: on` in YAML
        ({"when": "sometimes"}, "failure, always or never"),
        ({"heartbeat_url": "ftp://x.org/p"}, "http:// or https://"),
        ({"urls_env": "not a name"}, "environment variable"),
        ({"urls": [1]}, "Apprise URLs"),
        ({"timeout": 0}, "timeout"),
        ({"url": "x"}, "unknown key"),
    ]:
        with pytest.raises(UsageError) as info:
            notify_config(section, environ={})
        assert words in str(info.value) and info.value.exit_code == 2


def test_missing_env_is_a_warning_when_a_message_was_due():
    warnings = []
    notifier = Notifier(notify_config({"urls_env": "BACKUP_NOTIFY_URLS"}, environ={}), warn=warnings.append)
    notifier({"task": "backup.create", "outcome": "failure", "exit_code": 1, "error": "x"})
    assert warnings == ["notification failed: BACKUP_NOTIFY_URLS is not set"]
    warnings.clear()
    notifier({"task": "backup.create", "outcome": "success", "exit_code": 0})
    assert warnings == []


def test_message_and_url_description_are_pure():
    assert should_notify("failure", "incomplete") and not should_notify("failure", "success") and should_notify("always", "success")
    title, body, kind = compose({"project": "demo", "task": "backup.create", "kind": "project", "outcome": "incomplete",
                                 "exit_code": 3, "archive": "a.tar.gz", "size": 2_500_000, "files": 12, "duration": 1.25,
                                 "error": "2 files could not be read", "host": "web1", "end": "2026-01-01T00:00:00+00:00"})
    assert title == "[demo] backup.create was incomplete" and kind == "warning"
    assert body.splitlines() == ["project: demo", "task: backup.create (project)", "outcome: incomplete (exit 3)",
                                 "archive: a.tar.gz", "size: 2.5 MB, 12 files", "duration: 1.2 s",
                                 "error: 2 files could not be read", "host: web1", "time: 2026-01-01T00:00:00+00:00"]
    assert describe_url("mailtos://user:pw@smtp.gmail.com:587?to=x@y.org") == "mailtos://smtp.gmail.com:587/…"
    assert describe_url("slack://TokenA/TokenB/TokenC") == "slack://…"
    assert describe_url("https://hc-ping.com/5f1e-uuid") == "https://hc-ping.com/…"


def test_monitored_records_a_bad_notify_section_as_a_usage_error(tmp_path):
    from backup_lib.monitor import monitored

    hist = tmp_path / "h.jsonl"
    ran = []
    with pytest.raises(UsageError) as info:
        with monitored("backup.create", history_file=str(hist), project="demo", notify_section={"when": True}):
            ran.append(1)
    assert ran == [] and info.value.exit_code == 2
    (rec,) = read_history(str(hist))
    assert rec["exit_code"] == 2 and "notify.when" in rec["error"]


def test_monitored_masks_dotenv_and_url_secrets_in_history_and_message(tmp_path, http):
    from backup_lib.monitor import monitored

    (tmp_path / ".env").write_text("SECRET_KEY=django-insecure-zyxwvu\n")
    url = f"json://hookuser:hookpassw0rd@127.0.0.1:{http.port}/h"
    hist = tmp_path / "h.jsonl"
    with pytest.raises(NotFoundError):
        with monitored("db.backup", history_file=str(hist), project="demo", root=str(tmp_path), environ={},
                       notify_section={"urls": [url]}, warn=pytest.fail):
            raise NotFoundError(f"saw django-insecure-zyxwvu and hookpassw0rd in {url}")
    text = hist.read_text() + http.requests[0].body.decode()
    assert "django-insecure-zyxwvu" not in text and "hookpassw0rd" not in text
    assert read_history(str(hist))[0]["task"] == "db.backup"
