"""backup.status: fresh, stale, missing, shrunk, failed; the table; Prometheus."""

import datetime as dt
import os
import shutil

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backup_lib.errors import UsageError
from backup_lib.history import append_record, read_history, recording
from backup_lib.project import create_backup, list_backups
from backup_lib.status import (
    EXIT_CODES,
    Thresholds,
    evaluate,
    expected_kinds,
    format_duration,
    parse_duration,
    render_prometheus,
    render_status,
    thresholds_from_config,
    write_prometheus,
)

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
H = 3600


def ago(seconds: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).isoformat()


def row(name, age, files=100, total_size=10_000, size=4_000, **kw):
    return {"name": name, "backup_timestamp": ago(age), "size": size, "total_files": files, "total_size": total_size, **kw}


def run(task, age, outcome="success", kind=None, **kw):
    code = {"success": 0, "incomplete": 3, "failure": 1}[outcome]
    rec = {"v": 1, "task": task, "kind": kind or ("db" if task.startswith("db.") else "project"),
           "start": ago(age + 5), "end": ago(age), "duration": 5.0, "outcome": outcome, "exit_code": kw.pop("exit_code", code)}
    rec.update(kw)
    return rec


def healthy():
    backups = {
        "project": [row("p2", 2 * H), row("p1", 26 * H)],
        "db": [row("d2", 1 * H, files=2), row("d1", 25 * H, files=2)],
    }
    history = [
        run("backup.create", 26 * H), run("db.backup", 25 * H),
        run("backup.verify", 20 * H, checked=2, failed=0), run("db.verify", 20 * H),
        run("backup.create", 2 * H, archive="p2", size=4000, files=100), run("db.backup", 1 * H),
    ]
    return backups, history


def codes(report):
    return sorted(p["code"] for p in report["problems"])


def test_fresh_is_ok_with_every_fact():
    backups, history = healthy()
    rep = evaluate(backups, history, now=NOW, project="demo")
    assert (rep["status"], rep["exit_code"], rep["problems"]) == ("ok", 0, [])
    p = rep["kinds"]["project"]
    assert p["newest"]["name"] == "p2" and p["newest"]["age_seconds"] == 2 * H
    assert p["newest"]["files"] == 100 and p["newest"]["size"] == 4000 and p["count"] == 2
    assert p["previous"]["name"] == "p1"
    assert p["last_verify"]["outcome"] == "success" and p["last_verify"]["checked"] == 2
    assert p["last_failure"] is None and p["last_drill"] is None
    assert p["last_success_run"]["duration"] == 5.0
    assert rep["kinds"]["db"]["last_verify"]["task"] == "db.verify"


def test_stale_by_kind_with_per_kind_max_age():
    backups, history = healthy()
    backups["db"][0] = row("d2", 3 * H, files=2)
    th = thresholds_from_config({"max_age": {"project": "26h", "db": "2h"}})
    rep = evaluate(backups, history, now=NOW, thresholds=th)
    assert (rep["status"], rep["exit_code"]) == ("stale", 11)
    assert [(p["kind"], p["code"]) for p in rep["problems"]] == [("db", "stale")]
    assert "3h old" in rep["problems"][0]["message"]
    # one value for every kind; the default is 26h
    assert evaluate(backups, history, now=NOW)["status"] == "ok"
    backups["project"] = [row("p2", 27 * H), row("p1", 51 * H)]
    assert codes(evaluate(backups, history, now=NOW)) == ["stale"]


def test_missing_kind_and_precedence_over_everything():
    backups, history = healthy()
    backups["db"] = []
    backups["project"] = [row("p2", 40 * H, files=10), row("p1", 60 * H)]  # stale and shrunk too
    history.append(run("backup.verify", 1 * H, "failure", exit_code=4, error="archive truncated"))
    rep = evaluate(backups, history, now=NOW)
    assert codes(rep) == ["missing", "shrunk", "stale", "verify_failed"]
    assert (rep["status"], rep["exit_code"]) == ("missing", 13)
    assert rep["kinds"]["project"]["status"] == "failed" and rep["kinds"]["db"]["status"] == "missing"


def test_a_kind_not_expected_and_without_backups_is_not_missing():
    backups, history = healthy()
    del backups["db"]
    rep = evaluate(backups, history, now=NOW, kinds=["project"])
    assert rep["status"] == "ok" and list(rep["kinds"]) == ["project"]
    assert expected_kinds({}, has_database=False) == ["project"]
    assert expected_kinds({}, has_database=True) == ["project", "db"]
    assert expected_kinds({"kinds": ["project", "db", "remote"]}, has_database=False) == ["project", "db", "remote"]


@pytest.mark.parametrize("files, total, shrunk", [(49, 10_000, True), (100, 4_999, True), (50, 5_000, False), (100, 10_000, False)])
def test_shrunk_by_file_count_or_size(files, total, shrunk):
    backups, history = healthy()
    backups["project"][0] = row("p2", 2 * H, files=files, total_size=total)
    rep = evaluate(backups, history, now=NOW)
    assert codes(rep) == (["shrunk"] if shrunk else [])
    assert rep["exit_code"] == (10 if shrunk else 0)
    assert rep["status"] == ("shrunk" if shrunk else "ok")
    off = evaluate(backups, history, now=NOW, thresholds=thresholds_from_config({"shrink_warning": 0}))
    assert off["status"] == "ok"


def test_failed_verify_and_a_later_success_clears_it():
    backups, history = healthy()
    history.append(run("db.verify", 3 * H, "failure", exit_code=4, error="row counts differ", checked=2, failed=1))
    rep = evaluate(backups, history, now=NOW)
    assert (rep["status"], rep["exit_code"]) == ("failed", 12)
    (problem,) = rep["problems"]
    assert problem["kind"] == "db" and problem["code"] == "verify_failed" and "row counts differ" in problem["message"]
    assert rep["kinds"]["db"]["last_failure"]["task"] == "db.verify"
    history.append(run("db.verify", 1 * H))
    rep = evaluate(backups, history, now=NOW)
    assert rep["status"] == "ok" and rep["kinds"]["db"]["last_failure"]["error"] == "row counts differ"


def test_failed_or_incomplete_scheduled_run_but_not_a_failed_restore():
    backups, history = healthy()
    history.append(run("backup.restore", 0.5 * H, "failure", error="target not empty"))
    rep = evaluate(backups, history, now=NOW)
    assert rep["status"] == "ok"  # shown, not alarming
    assert rep["kinds"]["project"]["last_failure"]["task"] == "backup.restore"
    history.append(run("backup.create", 0.2 * H, "incomplete", error="2 files could not be read"))
    rep = evaluate(backups, history, now=NOW)
    assert codes(rep) == ["run_failed"] and rep["exit_code"] == 12
    assert "was incomplete" in rep["problems"][0]["message"]
    history.append(run("db.backup", 0.1 * H, "failure", error="database is locked"))
    assert [p["kind"] for p in evaluate(backups, history, now=NOW)["problems"]] == ["project", "db"]


def test_a_usage_error_exit_2_is_recorded_but_is_no_backup_failure():
    backups, history = healthy()
    # a push with no remotes configured, a verify with a missing identity file: nothing was attempted
    history.append(run("backup.push", 0.5 * H, "failure", exit_code=2, error="no remotes configured"))
    history.append(run("backup.verify", 0.4 * H, "failure", exit_code=2, error="identity file /tmp/typo.key is missing"))
    history.append(run("db.drill", 0.3 * H, "failure", exit_code=2, error="--timeout: not a duration"))
    rep = evaluate(backups, history, now=NOW)
    assert (rep["status"], rep["exit_code"], rep["problems"]) == ("ok", 0, [])
    project = rep["kinds"]["project"]
    # shown as the last failure (like a failed restore), not as the last verify or the last push
    assert project["last_failure"]["task"] == "backup.verify" and project["last_failure"]["exit_code"] == 2
    assert project["last_verify"]["outcome"] == "success" and "backup.push" not in project["last_runs"]
    # a real failure before the usage error still counts: exit 2 does not hide it
    history.append(run("backup.push", 0.2 * H, "failure", exit_code=1, error="bucket is missing"))
    history.append(run("backup.push", 0.1 * H, "failure", exit_code=2, error="no remote named 'nsa'"))
    history.append(run("backup.verify", 0.15 * H, "failure", exit_code=4, error="bad seal"))
    history.append(run("backup.verify", 0.05 * H, "failure", exit_code=2, error="identity file missing"))
    rep = evaluate(backups, history, now=NOW)
    assert codes(rep) == ["run_failed", "verify_failed"]
    assert "bucket is missing" in " ".join(p["message"] for p in rep["problems"])


def test_verify_too_old_or_never_is_stale_unless_turned_off():
    backups, history = healthy()
    history = [r for r in history if not r["task"].endswith("verify")]
    rep = evaluate(backups, history, now=NOW)
    assert codes(rep) == ["verify_stale", "verify_stale"] and rep["exit_code"] == 11
    history.append(run("backup.verify", 9 * 24 * H))
    history.append(run("db.verify", 2 * 24 * H))
    rep = evaluate(backups, history, now=NOW)
    assert [(p["kind"], p["code"]) for p in rep["problems"]] == [("project", "verify_stale")]
    assert "9d ago" in rep["problems"][0]["message"]
    th = thresholds_from_config({"verify_max_age": "off"})
    assert evaluate(backups, history, now=NOW, thresholds=th)["status"] == "ok"
    th = thresholds_from_config({"verify_max_age": {"project": "10d"}})
    assert evaluate(backups, history, now=NOW, thresholds=th)["status"] == "ok"


def test_drills_safety_backups_and_unreadable_backups():
    backups, history = healthy()
    history.append(run("backup.drill", 5 * H))
    history.append(run("db.drill", 7 * H))
    history.append(run("db.drill", 2 * H, outcome="failure"))  # a failed drill is not the last successful one
    # a safety backup taken by db.restore is not the job's output: no freshness from it
    backups["db"] = [row("safety", 0.1 * H, files=2, safety_backup=True), row("d1", 30 * H, files=2)]
    rep = evaluate(backups, history, now=NOW)
    assert rep["kinds"]["project"]["last_drill"]["age_seconds"] == 5 * H
    assert rep["kinds"]["db"]["last_drill"]["age_seconds"] == 7 * H
    assert rep["kinds"]["db"]["newest"]["name"] == "d1" and rep["kinds"]["db"]["count"] == 1
    assert sorted(codes(rep)) == ["run_failed", "stale"]  # db.drill is a scheduled task: its last run failed
    history.append(run("db.drill", 1 * H))
    rep = evaluate(backups, history, now=NOW)
    assert codes(rep) == ["stale"] and rep["kinds"]["db"]["last_drill"]["age_seconds"] == H
    backups["project"].insert(0, {"name": "demo_project_20260615_110000.tar.gz", "size": 10, "error": "not a backup"})
    rep = evaluate(backups, history, now=NOW)
    assert "unreadable" in codes(rep) and rep["kinds"]["project"]["newest"]["age_seconds"] == H  # time from the name
    assert rep["kinds"]["project"]["previous"] is None  # no shrink test against an unreadable archive


def test_torn_and_foreign_history_records_are_ignored():
    backups, history = healthy()
    history += [{"task": "backup.create"}, {"task": "db.backup", "end": "yesterday", "outcome": "failure"}, "junk", None]
    assert evaluate(backups, history, now=NOW)["status"] == "ok"


def test_durations_and_thresholds_validation():
    assert parse_duration("26h") == 26 * H and parse_duration("7d") == 7 * 24 * H
    assert parse_duration("90m") == 90 * 60 and parse_duration("1d12h") == 36 * H and parse_duration("2w") == 14 * 24 * H
    assert parse_duration(3600) == 3600 and parse_duration("off") is None and parse_duration(None) is None
    for bad in ("26", "h", "1y", "3mo", "-1h", "0h", True, "1e400h"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    for section in ({"max_age": "soon"}, {"shrink_warning": 2}, {"shrink_warning": "half"}, {"max_age": ["1h"]},
                    {"verify_max_age": {"db": "x"}}, {"max_agee": "1h"}):
        with pytest.raises(UsageError) as info:
            thresholds_from_config(section)
        assert info.value.exit_code == 2
    th = thresholds_from_config({"max_age": {"db": "2h", "default": "3d"}})
    assert th.max_age_for("db") == 2 * H and th.max_age_for("project") == 3 * 24 * H
    assert th == thresholds_from_config({"max_age": {"db": "2h", "default": "3d"}})
    assert Thresholds().max_age_for("project") == 26 * H and Thresholds().verify_max_age_for("db") == 8 * 24 * H
    assert [format_duration(s) for s in (42, 3600, 93600, 303)] == ["42s", "1h", "1d 2h", "5m 3s"]


def test_exit_codes_stay_clear_of_the_toolkits_own():
    assert EXIT_CODES == {"ok": 0, "shrunk": 10, "stale": 11, "failed": 12, "missing": 13}


def test_human_table():
    backups, history = healthy()
    backups["project"] = [row("p2", 30 * H), row("p1", 54 * H)]
    text = render_status(evaluate(backups, history, now=NOW, project="demo"))
    lines = text.splitlines()
    assert lines[0] == "demo: stale (exit 11)"
    assert lines[1].split() == ["KIND", "STATUS", "NEWEST", "(UTC)", "AGE", "SIZE", "FILES", "LAST", "VERIFY", "LAST", "FAILURE"]
    assert lines[2].split()[:2] == ["project", "stale"] and "1d 6h" in lines[2] and "ok 20h ago" in lines[2]
    assert lines[3].split()[:2] == ["db", "ok"]
    assert lines[-1].startswith("stale") and "newest project backup is 1d 6h old" in lines[-1]


# ---------------------------------------------------------------- Prometheus


def families(data: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(data.decode())}


def sample(fams, name, **labels):
    for fam in fams.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_prometheus_file_is_written_atomically_and_parses_back(tmp_path):
    backups, history = healthy()
    history.append(run("db.verify", 0.5 * H, "failure", exit_code=4, error="bad"))
    rep = evaluate(backups, history, now=NOW, project="demo")
    out = tmp_path / "textfile" / "backup.prom"
    out.parent.mkdir()
    out.write_text("old content\n")
    write_prometheus(rep, str(out))
    assert os.listdir(out.parent) == ["backup.prom"]  # no temp file left behind
    text = out.read_text()
    assert "# HELP backup_last_success_timestamp_seconds" in text and "# TYPE backup_size_bytes gauge" in text
    fams = families(out.read_bytes())
    assert sample(fams, "backup_last_success_timestamp_seconds", project="demo", kind="project") == (NOW - dt.timedelta(hours=2)).timestamp()
    assert sample(fams, "backup_size_bytes", project="demo", kind="project") == 4000
    assert sample(fams, "backup_files", project="demo", kind="db") == 2
    assert sample(fams, "backup_content_bytes", project="demo", kind="project") == 10_000
    assert sample(fams, "backup_duration_seconds", project="demo", kind="db") == 5.0
    assert sample(fams, "backup_count", project="demo", kind="project") == 2
    assert sample(fams, "backup_last_verify_success", project="demo", kind="project") == 1
    assert sample(fams, "backup_last_verify_success", project="demo", kind="db") == 0
    assert sample(fams, "backup_status", project="demo", kind="db") == 12
    assert sample(fams, "backup_status", project="demo", kind="project") == 0
    assert sample(fams, "backup_problem", project="demo", kind="db", problem="verify_failed") == 1
    assert sample(fams, "backup_problem", project="demo", kind="db", problem="stale") == 0
    assert sample(fams, "backup_last_failure_timestamp_seconds", project="demo", kind="db") == (NOW - dt.timedelta(hours=0.5)).timestamp()
    assert sample(fams, "backup_status_timestamp_seconds", project="demo") == NOW.timestamp()


def test_prometheus_leaves_out_what_does_not_exist():
    rep = evaluate({}, [], now=NOW, project="demo", kinds=["project"])
    fams = families(render_prometheus(rep))
    assert sample(fams, "backup_status", kind="project") == 13
    assert sample(fams, "backup_problem", kind="project", problem="missing") == 1
    assert sample(fams, "backup_size_bytes", kind="project") is None  # absent, not a fake 0
    assert sample(fams, "backup_last_verify_success", kind="project") is None


def test_prometheus_into_a_missing_directory_is_a_one_line_error(tmp_path):
    from backup_lib.errors import BackupError

    rep = evaluate({}, [], now=NOW, kinds=["project"])
    with pytest.raises(BackupError) as info:
        write_prometheus(rep, str(tmp_path / "nope" / "backup.prom"))
    assert info.value.exit_code == 1 and "does not exist" in str(info.value)


# ------------------------------------------------- over real backups and runs


def test_status_over_real_backup_sets_and_history(tmp_path):
    from conftest import write_tree

    root = tmp_path / "app"
    write_tree(root, {f"src/m{i}.py": f"x = {i}\n" * 50 for i in range(10)})
    bdir = root / "backups" / "project"
    hist = str(tmp_path / "history.jsonl")
    with recording(hist, task="backup.create", project="app") as r:
        res = create_backup(str(root), backup_dir=str(bdir), name="app")
        r.archive(res.backup_path, files=res.metadata["total_files"])
    # an accident: most of the tree is gone (a .gitignore gone wrong)
    shutil.rmtree(root / "src")
    write_tree(root, {"src/m0.py": "x = 0\n"})
    with recording(hist, task="backup.create", project="app") as r:
        res = create_backup(str(root), backup_dir=str(bdir), name="app")
        r.archive(res.backup_path, files=res.metadata["total_files"])
    with recording(hist, task="backup.verify", project="app") as r:
        r.verified(2, 0)
    rows = [b.summary() for b in list_backups(str(bdir))]
    assert len(rows) == 2
    now = dt.datetime.now(dt.timezone.utc)
    rep = evaluate({"project": rows}, read_history(hist), now=now, project="app", kinds=["project"])
    assert codes(rep) == ["shrunk"] and rep["exit_code"] == 10
    k = rep["kinds"]["project"]
    assert k["newest"]["files"] == 1 and k["previous"]["files"] == 10
    assert k["newest"]["size"] == os.path.getsize(rows[0]["backup_path"])
    assert k["last_success_run"]["files"] == 1
    # the same backups two days later: stale and verify still fresh
    later = now + dt.timedelta(hours=48)
    assert codes(evaluate({"project": rows}, read_history(hist), now=later, kinds=["project"])) == ["shrunk", "stale"]
    # a failed create after that, recorded by the real recorder
    append_record(hist, {**read_history(hist)[-1], "task": "backup.create", "outcome": "failure", "exit_code": 1, "error": "disk full"})
    rep = evaluate({"project": rows}, read_history(hist), now=now, kinds=["project"])
    assert rep["status"] == "failed" and "disk full" in render_status(rep)


def test_gather_status_lists_both_kinds_and_reads_the_history(tmp_path):
    from conftest import write_tree

    from backup_lib.history import history_path
    from backup_lib.monitor import gather_status, monitored

    root = tmp_path / "app"
    write_tree(root, {"a.py": "a\n", "b.py": "b\n"})
    pdir, ddir = root / "backups" / "project", root / "backups" / "db"
    hist = history_path(str(pdir))
    with monitored("backup.create", history_file=hist, project="app", root=str(root)) as r:
        res = create_backup(str(root), backup_dir=str(pdir), name="app")
        r.archive(res.backup_path, files=res.metadata["total_files"])
    rep = gather_status({"project": str(pdir), "db": str(ddir)}, hist, project="app", kinds=["project", "db"],
                        thresholds=thresholds_from_config({"verify_max_age": "off"}))
    assert hist == str(root / "backups" / "history.jsonl")
    assert rep["kinds"]["project"]["newest"]["files"] == 2 and rep["kinds"]["project"]["last_success_run"]["files"] == 2
    assert [(p["kind"], p["code"]) for p in rep["problems"]] == [("db", "missing")] and rep["exit_code"] == 13


def test_remote_kinds_have_their_own_runs_and_their_kinds_thresholds():
    backups, history = healthy()
    backups["project@offsite"] = [row("p0", 27 * H)]  # the last two pushes did not happen
    history += [run("backup.push", 27 * H, remote="offsite"), run("backup.verify", 20 * H, remote="offsite")]
    rep = evaluate(backups, history, now=NOW, kinds=["project", "db", "project@offsite"])
    copy = rep["kinds"]["project@offsite"]
    assert copy["remote"] == "offsite" and rep["kinds"]["project"]["remote"] is None
    assert [p["code"] for p in copy["problems"]] == ["stale"] and rep["kinds"]["project"]["problems"] == []
    assert copy["last_success_run"]["task"] == "backup.push"  # a remote kind's backup run is its push
    # the remote's verify is not the local one's, and the other way round
    assert copy["last_verify"]["age_seconds"] == 20 * H and rep["kinds"]["project"]["last_verify"]["age_seconds"] == 20 * H
    history.append(run("backup.verify", 1 * H, outcome="failure", remote="offsite", error="1 of 1 failed"))
    history.append(run("backup.push", 0.5 * H, outcome="failure", remote="offsite", error="remote offsite: access denied"))
    rep = evaluate(backups, history, now=NOW, kinds=["project", "db", "project@offsite"])
    assert sorted(p["code"] for p in rep["kinds"]["project@offsite"]["problems"]) == ["run_failed", "stale", "verify_failed"]
    assert rep["kinds"]["project"]["status"] == "ok"
    # thresholds: the remote kind's own, else its kind's, else the default
    th = thresholds_from_config({"max_age": {"project": "2d"}})
    assert th.max_age_for("project@offsite") == 2 * 86400 and th.max_age_for("db@offsite") == 26 * H
    th = thresholds_from_config({"max_age": {"project": "2d", "project@offsite": "3d"}, "verify_max_age": {"project@offsite": "off"}})
    assert th.max_age_for("project@offsite") == 3 * 86400 and th.verify_max_age_for("project@offsite") is None
    assert th.verify_max_age_for("project") == 8 * 86400


def test_an_unreachable_remote_is_a_problem_not_a_missing_backup():
    backups, history = healthy()
    rep = evaluate(backups, history, now=NOW, kinds=["project", "db", "db@offsite"],
                   unreachable={"db@offsite": "remote offsite: cannot reach http://127.0.0.1:9"})
    k = rep["kinds"]["db@offsite"]
    assert [p["code"] for p in k["problems"]] == ["unreachable"] and k["count"] is None and k["newest"] is None
    assert rep["status"] == "failed" and rep["exit_code"] == 12
    assert "cannot be listed" in render_status(rep)
    fams = {f.name: f for f in text_string_to_metric_families(render_prometheus(rep).decode())}
    assert sample(fams, "backup_problem", kind="db", remote="offsite", problem="unreachable") == 1
    assert sample(fams, "backup_problem", kind="db", remote="", problem="unreachable") == 0
    assert sample(fams, "backup_count", kind="db", remote="offsite") is None  # not known, so not written


def test_expected_kinds_follow_the_pushes_or_status_remotes():
    pushes = {"project": ["offsite", "nas"], "db": ["offsite"]}
    assert expected_kinds({}, has_database=True, pushes=pushes) == ["project", "db", "project@offsite", "project@nas", "db@offsite"]
    assert expected_kinds({}, has_database=False, pushes=pushes) == ["project", "project@offsite", "project@nas"]
    assert expected_kinds({"remotes": ["nas"]}, has_database=True, pushes=pushes) == ["project", "db", "project@nas", "db@nas"]
    assert expected_kinds({"remotes": []}, has_database=True, pushes=pushes) == ["project", "db"]
    assert expected_kinds({"kinds": ["db@nas"]}, has_database=True, pushes=pushes) == ["db@nas"]
    with pytest.raises(UsageError, match="status.remotes"):
        expected_kinds({"remotes": {"a": 1}}, has_database=True)


def test_a_history_record_from_the_future_does_not_hide_a_later_failure():
    """One success 'ending' a year from now (a clock that was ahead, or an
    edited line) would stay the last run of its kind forever: it is passed
    over, and the real failure after it is reported."""
    backups, history = healthy()
    history.append(run("backup.create", -365 * 24 * H))  # ends a year from now
    history.append(run("backup.create", 0.1 * H, "failure", error="disk full"))
    rep = evaluate(backups, history, now=NOW)
    assert codes(rep) == ["run_failed"] and rep["exit_code"] == 12, rep["problems"]
    history.append(run("backup.create", -60))  # a minute ahead: within the tolerance, believed
    assert evaluate(backups, history, now=NOW)["status"] == "ok"
