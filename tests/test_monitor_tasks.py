"""The monitoring as the tasks do it: the run history, notifications and
heartbeats at the task boundary, backup.status and backup.notify-test."""

import json
import os

import pytest

from backup_lib.history import read_history
from conftest import write_tree
from helpers import run_cli


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "shop"
    write_tree(root, {"app.py": "print(1)\n", "templates/a.html": "<p>\n"})
    return root


def history(root):
    return read_history(str(root / "backups" / "history.jsonl"))


def yaml(root, text):
    (root / "invoke.yaml").write_text(text)
    os.environ["INVOKE_RUNTIME_CONFIG"] = str(root / "invoke.yaml")


@pytest.fixture(autouse=True)
def no_runtime_config(monkeypatch):
    monkeypatch.delenv("INVOKE_RUNTIME_CONFIG", raising=False)
    yield
    os.environ.pop("INVOKE_RUNTIME_CONFIG", None)


def test_create_verify_cleanup_are_recorded_and_the_history_stays_out_of_backups(proj):
    code, out, err = run_cli(["backup.create", "-p", str(proj), "--json"])
    assert code == 0, err
    made = json.loads(out)
    code, _, err = run_cli(["backup.verify", "-p", str(proj)])
    assert code == 0, err
    run_cli(["backup.create", "-p", str(proj), "--dry-run"])  # a dry run is not recorded
    run_cli(["backup.list", "-p", str(proj)])  # nor is a listing
    recs = history(proj)
    assert [r["task"] for r in recs] == ["backup.create", "backup.verify"]
    assert recs[0]["outcome"] == "success" and recs[0]["archive"] == os.path.basename(made["backup_path"])
    assert recs[0]["files"] == made["total_files"] and recs[0]["size"] == os.path.getsize(made["backup_path"])
    assert recs[1]["checked"] == 1 and recs[1]["failed"] == 0
    code, out, err = run_cli(["backup.create", "-p", str(proj), "--dry-run", "--json"])
    assert not [f for f in json.loads(out)["files"] if f.startswith("backups/")]


def test_a_failed_run_is_recorded_with_its_code_and_error(proj, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run_cli(["backup.create", "-p", str(proj), "-B", str(blocker / "sub")])
    assert code == 1
    # The history of a custom backup dir is kept inside it: that folder never came to be, so no record (and
    # no folder made for one), and the error stays the one line on stderr.
    assert len(err.strip().splitlines()) == 1 and not (blocker.parent / "sub").exists()
    bdir = proj / "backups" / "project"
    bdir.mkdir(parents=True)
    bad = bdir / "shop_project_20200101_000000.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + os.urandom(200))
    code, _, err = run_cli(["backup.verify", "-p", str(proj)])
    assert code == 4
    rec = history(proj)[-1]
    assert rec["task"] == "backup.verify" and rec["outcome"] == "failure" and rec["exit_code"] == 4
    assert rec["checked"] == 1 and rec["failed"] == 1 and "shop_project_20200101_000000.tar.gz" in rec["error"]


def test_webhook_and_heartbeat_from_the_tasks(proj, http):
    yaml(proj, f"notify:\n  urls: ['json://127.0.0.1:{http.port}/hook']\n  when: always\n"
               f"  heartbeat_url: {http.base}/ping/abc\n")
    code, _, err = run_cli(["backup.create", "-p", str(proj)])
    assert code == 0, err
    paths = [(r.method, r.path) for r in http.requests]
    assert ("POST", "/hook") in paths and ("GET", "/ping/abc") in paths
    body = json.loads(next(r.body for r in http.requests if r.path == "/hook"))
    assert "backup.create" in body["title"] + body["message"] and "success" in (body["title"] + body["message"]).lower()
    http.requests.clear()
    code, _, err = run_cli(["backup.create", "-p", str(proj), "--compression", "lz4"])
    assert code == 2
    assert ("POST", "/ping/abc/fail") in [(r.method, r.path) for r in http.requests]
    assert history(proj)[-1]["exit_code"] == 2


def test_a_dead_notification_endpoint_is_one_warning_and_changes_nothing(proj):
    from conftest import dead_port

    yaml(proj, f"notify:\n  urls: ['json://127.0.0.1:{dead_port()}/hook']\n  when: always\n")
    code, out, err = run_cli(["backup.create", "-p", str(proj)])
    assert code == 0 and "Created" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0], err


def test_notify_test_task(proj, http):
    from conftest import dead_port

    http.status_for["/bad"] = 500
    yaml(proj, f"notify:\n  urls: ['json://127.0.0.1:{http.port}/good', 'json://127.0.0.1:{http.port}/bad', "
               f"'json://127.0.0.1:{dead_port()}/x']\n")
    code, out, err = run_cli(["backup.notify-test", "-p", str(proj), "--json"])
    assert code == 1
    rows = json.loads(out)
    assert [r["ok"] for r in rows] == [True, False, False]
    assert all("secret" not in json.dumps(r) for r in rows)
    yaml(proj, "notify: {}\n")
    code, _, err = run_cli(["backup.notify-test", "-p", str(proj)])
    assert code == 2 and "no notification URLs" in err


def test_status_task_exit_codes_json_and_prometheus(proj, tmp_path):
    code, out, err = run_cli(["backup.status", "-p", str(proj), "--json"])
    assert code == 13 and json.loads(out)["status"] == "missing" and err.strip() == "status: missing"
    run_cli(["backup.create", "-p", str(proj)])
    code, out, err = run_cli(["backup.status", "-p", str(proj)])
    # Never verified: stale by status.verify_max_age until a verify runs.
    assert code == 11 and "verify" in out
    run_cli(["backup.verify", "-p", str(proj)])
    prom = tmp_path / "node" / "backup.prom"
    prom.parent.mkdir()
    code, out, err = run_cli(["backup.status", "-p", str(proj), "--prometheus", str(prom)])
    assert code == 0, (out, err)
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    samples = {s.labels["kind"]: s.value for s in families["backup_files"].samples}
    assert samples == {"project": 2}
    yaml(proj, "status:\n  max_age: soon\n")
    code, _, err = run_cli(["backup.status", "-p", str(proj)])
    assert code == 2 and "max_age" in err


def test_a_usage_error_is_recorded_with_exit_2_but_leaves_status_ok(proj, tmp_path):
    run_cli(["backup.create", "-p", str(proj)])
    code, _, err = run_cli(["backup.verify", "-p", str(proj)])
    assert code == 0, err
    code, _, err = run_cli(["backup.push", "-p", str(proj)])  # no remotes configured
    assert code == 2 and "no remotes configured" in err
    code, _, err = run_cli(["backup.verify", "-p", str(proj), "-I", str(tmp_path / "typo.key")])
    assert code == 2, err
    recs = history(proj)
    assert [(r["task"], r["exit_code"]) for r in recs[-2:]] == [("backup.push", 2), ("backup.verify", 2)]
    code, out, err = run_cli(["backup.status", "-p", str(proj), "--json"])
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["problems"] == [] and report["kinds"]["project"]["last_verify"]["outcome"] == "success"
    assert report["kinds"]["project"]["last_failure"]["exit_code"] == 2
    code, _, err = run_cli(["backup.report", "-p", str(proj), "-O", str(tmp_path / "r.html")])
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "last backup.push failed" not in page and "last project verify failed" not in page
