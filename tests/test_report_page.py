"""backup.report: one self-contained HTML page, checked from its parsed HTML,
and rendered in headless Chromium with no console message."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from backup_lib.history import append_record
from conftest import write_tree
from helpers import run_cli

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


class Page(HTMLParser):
    """The parsed page: every element with its attributes, the text by section, the scripts."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.sections: dict[str, list[str]] = {}
        self.scripts: list[str] = []
        self._section = None
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "section":
            self._section = attrs.get("id")
            self.sections[self._section] = []
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        elif self._section:
            self.sections[self._section].append(data)

    def text(self, section: str) -> str:
        return " ".join(" ".join(self.sections[section]).split())

    def tags(self, name: str) -> list[dict]:
        return [a for t, a in self.elements if t == name]


@pytest.fixture(autouse=True)
def no_runtime_config(monkeypatch):
    monkeypatch.delenv("INVOKE_RUNTIME_CONFIG", raising=False)
    yield
    os.environ.pop("INVOKE_RUNTIME_CONFIG", None)


@pytest.fixture
def site(tmp_path):
    """A project with hostile folder names, a full and an incremental backup,
    a database backup, a verify, a drill and a failure in the history."""
    import sqlite3

    root = tmp_path / "site"
    write_tree(root, {"app/main.py": "print(1)\n" * 50, "<img src=x onerror=alert(1)>/x.txt": "x\n", "a&b/y.txt": "yy\n", "top.txt": "t\n"})
    conn = sqlite3.connect(root / "app.db")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    (root / "invoke.yaml").write_text("db:\n  path: app.db\nbackup:\n  incremental: auto\n")
    os.environ["INVOKE_RUNTIME_CONFIG"] = str(root / "invoke.yaml")
    for args in (["backup.create"], ["backup.verify"], ["db.backup"], ["backup.drill", "--command", "true"]):
        code, _, err = run_cli([*args, "-p", str(root)])
        assert code == 0, (args, err)
    (root / "app" / "main.py").write_text("print(2)\n")
    code, out, err = run_cli(["backup.create", "-p", str(root), "--json"])
    assert code == 0 and json.loads(out)["backup_path"].endswith("_incr.tar.gz"), err
    append_record(str(root / "backups" / "history.jsonl"), {
        "v": 1, "task": "db.drill", "kind": "db", "start": "2026-01-01T00:00:00+00:00", "end": "2099-01-01T00:00:01+00:00",
        "outcome": "failure", "exit_code": 21, "error": "check 1 failed: <script>alert(1)</script>"})
    return root


def test_the_page_holds_the_picture_and_loads_nothing(site):
    code, out, err = run_cli(["backup.report", "-p", str(site)])
    assert code == 0, err
    path = site / "backups" / "report.html"
    assert out.startswith(f"Wrote {path} (2 project backups, 1 db backups; status ")
    html = path.read_text()
    page = Page(html)
    # self-contained: no element loads anything, one inline script allowed by its hash, nothing else
    for tag, attrs in page.elements:
        assert not ({"src", "href", "srcset", "data", "action", "poster"} & set(attrs)), (tag, attrs)
        assert tag not in ("link", "iframe", "object", "embed", "img", "base", "form"), tag
    assert "url(" not in html and "@import" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    csp = next(a["content"] for a in page.tags("meta") if a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
    assert len(page.scripts) == 1
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    # escaped user data: the names and the error are text, never elements
    assert len(page.tags("script")) == 1
    folders = page.text("folders")
    assert "<img src=x onerror=alert(1)>/" in folders and "a&b/" in folders and "app/" in folders and "(files at the top)" in folders
    assert "check 1 failed: <script>alert(1)</script>" in page.text("drills")
    # the backups, their kinds and verify states
    project = page.text("backups-project")
    assert "incremental (depth 1)" in project and "full" in project
    assert "ok" in project and "not verified" in project  # the full was verified, the incremental made afterwards
    assert re.search(r"site_db_\d{8}_\d{6}\.tar\.gz", page.text("backups-db"))
    # charts, chains, status, drills, runs
    assert len(page.tags("svg")) == 2 and len(page.tags("polyline")) == 4  # size: project and db; files: project and db
    chains = page.text("chains")
    assert re.search(r"site_project_\d{8}_\d{6}\.tar\.gz — 1 incrementals", chains) and "_incr.tar.gz (depth 1" in chains
    status = page.text("status")
    assert "Overall:" in status and "project" in status and "db" in status and "Max age" in status
    assert [a for a in page.tags("span") if "badge" in a.get("class", "")]
    drills = page.text("drills")
    assert "backup.drill" in drills and "success" in drills and "db.drill" in drills and "failure" in drills
    assert "backup.create" in page.text("runs") and "backup.verify" in page.text("runs")
    assert page.tags("meta")[1] == {"name": "viewport", "content": "width=device-width, initial-scale=1"}
    assert "@media print" in html


def test_the_report_is_never_in_a_project_backup(site, tmp_path):
    assert run_cli(["backup.report", "-p", str(site)])[0] == 0
    (site / "site-report").mkdir()
    (site / "invoke.yaml").write_text("db:\n  path: app.db\nreport:\n  output: site-report/backups.html\n")
    code, out, err = run_cli(["backup.report", "-p", str(site), "--json"])
    assert code == 0 and json.loads(out)["output"] == str(site / "site-report" / "backups.html"), err
    assert "inside the project" not in err
    code, out, err = run_cli(["backup.create", "-p", str(site), "--dry-run", "--json"])
    files = json.loads(out)["files"]
    assert "backups/report.html" not in files and "site-report/backups.html" not in files
    assert (site / "backups" / "report.html").exists() and (site / "site-report" / "backups.html").exists()
    code, out, err = run_cli(["backup.report", "-p", str(site), "-O", str(site / "top.html")])
    assert code == 0 and err.startswith("warning: ") and "inside the project" in err


def test_an_unwritable_report_path_is_one_line_and_exit_1(site, tmp_path):
    a_file = tmp_path / "plain-file"
    a_file.write_text("")
    for target in (a_file / "report.html", tmp_path / "no-such-dir" / "report.html", tmp_path, Path("/proc/report.html")):
        code, out, err = run_cli(["backup.report", "-p", str(site), "--output", str(target)])
        assert code == 1 and out == "" and err.startswith("error: cannot write the report to ") and err.count("\n") == 1, (target, err)
    assert not list(tmp_path.glob(".report.html.*.tmp"))


def test_an_empty_project_still_gets_a_page(tmp_path):
    root = tmp_path / "new"
    root.mkdir()
    code, out, err = run_cli(["backup.report", "-p", str(root)])
    assert code == 0, err
    page = Page((root / "backups" / "report.html").read_text())
    assert "No backups." in page.text("backups-project") and "Nothing to draw yet." in page.text("charts")
    assert "missing" in page.text("status")


def test_local_verify_state_counts_only_local_verifies_that_ran(tmp_path, monkeypatch):
    root = tmp_path / "shop"
    write_tree(root, {"app.py": "print(1)\n"})
    nas = tmp_path / "nas"
    nas.mkdir()
    conf = tmp_path / "remotes.yaml"
    conf.write_text(f"remotes:\n  nas: {{url: '{nas}'}}\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(conf))
    out_page = tmp_path / "r.html"
    for args in (["backup.create"], ["backup.push", "-R", "nas"], ["backup.verify", "-R", "nas"]):
        code, _, err = run_cli([*args, "-p", str(root)])
        assert code == 0, (args, err)

    def verify_cell():
        code, _, err = run_cli(["backup.report", "-p", str(root), "-O", str(out_page)])
        assert code == 0, err
        return Page(out_page.read_text()).text("backups-project")

    # only the copy on nas was checked: the local backup is not verified (as backup.status says)
    assert "not verified" in verify_cell() and "ok" not in verify_cell().split("full", 1)[1]
    code, _, err = run_cli(["backup.verify", "-p", str(root)])
    assert code == 0, err
    assert "not verified" not in verify_cell()
    # a verify that stopped at a usage error (a missing identity file, exit 2) checked nothing
    code, _, err = run_cli(["backup.verify", "-p", str(root), "-I", str(tmp_path / "typo.key")])
    assert code == 2, err
    cell = verify_cell()
    assert "last verify failed" not in cell and "not verified" not in cell
    # the same for a drill: a bad --timeout (exit 2) never ran, the last drill is the one that did
    code, _, err = run_cli(["backup.drill", "-p", str(root), "--command", "true"])
    assert code == 0, err
    code, _, err = run_cli(["backup.drill", "-p", str(root), "--timeout", "soon"])
    assert code == 2, err
    verify_cell()
    drills = Page(out_page.read_text()).text("drills")
    assert "backup.drill" in drills and "success" in drills and "failure" not in drills and "soon" not in drills


def test_report_flags_follow_the_short_flag_table():
    import tasks

    from test_tasks import task_flags

    for name in ("backup.drill", "db.drill", "backup.diff", "backup.ls", "backup.report"):
        flags = task_flags(name)
        assert "json" in flags and "project-root" in flags and "backup-dir" in flags, name
        for long, short in flags.items():
            assert short == tasks.SHORT_FLAGS.get(long), (name, long, short)
    assert task_flags("backup.report")["output"] == task_flags("backup.keygen")["output"] == "O"
    assert task_flags("backup.drill")["keep"] == task_flags("db.drill")["keep"] == "k"


# ------------------------------------------------------------------ Chromium


def render_in_chromium(path: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(the DOM after the page's script ran, the console messages) from headless Chromium."""
    profile = tmp_path / f"chromium-profile-{path.stem}"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_the_page_renders_in_chromium_without_console_messages(site, tmp_path):
    assert run_cli(["backup.report", "-p", str(site)])[0] == 0
    dom, console = render_in_chromium(site / "backups" / "report.html", tmp_path)
    assert console == []
    assert 'data-script="ran"' in dom  # the page's own script ran under its policy
    assert "Backups of site" in dom
    # and the check would see a page that tries to load something, or a script the policy does not allow
    html = (site / "backups" / "report.html").read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("<main>", '<main><img alt="" src="http://127.0.0.1:9/x.png">', 1)
                      .replace("document.documentElement", "document.documentElement ", 1))
    dom, console = render_in_chromium(broken, tmp_path)
    assert len(console) >= 2 and 'data-script="ran"' not in dom


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_drills_from_a_remote_are_rows_of_their_own():
    """A drill of a remote's copy proves that copy, not the local one: the
    local row keeps the local drill's outcome."""
    from backup_lib.report_page import build_context

    def rec(end, outcome, remote=None):
        r = {"task": "backup.drill", "kind": "project", "start": end, "end": end, "outcome": outcome,
             "exit_code": 0 if outcome == "success" else 7, "archive": "site_project_20261129_020000.tar.gz"}
        if remote:
            r["remote"] = remote
        return r

    history = [rec("2026-11-29T03:00:00+00:00", "failure"), rec("2026-11-29T04:00:00+00:00", "success", "offsite")]
    drills = build_context({"history": history, "backups": {}})["drills"]
    rows = {d["task"]: d.get("outcome") for d in drills}
    assert rows == {"backup.drill": "failure", "backup.drill --remote offsite": "success", "db.drill": None}, rows
