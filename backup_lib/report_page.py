"""``backup.report``: one self-contained HTML page with the picture at a
glance -- the backups of each kind, their sizes and file counts over time,
the newest backup's size by top-level folder, the chains of incrementals,
the status with its thresholds, the last drills and the recent runs.

Three parts, as everywhere in the toolkit:

* :func:`gather` (effects): the backups of each kind from the index beside
  each archive, the run history, the status evaluation, and the newest
  project backup's manifest (from the manifest cache when fresh);
* :func:`build_context` (pure): plain data to what the page shows, charts
  included (coordinates computed here, drawn as inline SVG);
* :func:`render` and :func:`write_page`: the Jinja2 template
  ``templates/report.html.j2`` (autoescaped: file names and error lines are
  user data), written atomically.

The page loads nothing: styles and the one small script are inline, and
its Content-Security-Policy forbids every other source, so it opens the
same from disk, from a CI artifact or from a mail attachment.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from typing import Iterable, Mapping, Sequence

from .errors import BackupError
from .report import display_path, human_size
from .status import DRILL_TASKS, attempted, parse_time as _time

__all__ = ["REPORT_NAME", "SCRIPT", "default_report_path", "gather", "build_context", "render", "write_page", "chains",
           "folder_sizes", "verify_states", "line_chart", "inside_project"]

REPORT_NAME = "report.html"
TEMPLATE = "report.html.j2"
MAX_RUNS = 25  # recent runs shown
MAX_FOLDERS = 30  # top-level folders shown (the rest summed)
MAX_ROWS = 200  # backups listed per kind (the newest)


def default_report_path(history_file: str) -> str:
    """Beside the run history (``<root>/backups/report.html`` by default):
    a place ``backup.create`` leaves out."""
    return os.path.join(os.path.dirname(os.path.abspath(history_file)), REPORT_NAME)


# ---------------------------------------------------------------- gathering


def gather(
    *,
    project: str,
    root: str,
    backup_dirs: Mapping[str, str],
    history_file: str | None,
    status: dict | None,
    identity_file: str | None = None,
    cache_dir: str | None = None,
    now: _dt.datetime | None = None,
) -> dict:
    """Everything the page shows, as plain data (see :func:`build_context`)."""
    from .history import read_history
    from .project import list_backups

    backups = {}
    for kind, directory in backup_dirs.items():
        rows = []
        if os.path.isdir(directory):
            for b in list_backups(directory, kind=kind):
                row = b.summary()
                meta = b.metadata or {}
                for key in ("parent", "base", "chain_depth", "encryption", "metadata_sha256"):
                    if key in meta:
                        row[key] = meta[key]
                rows.append(row)
        backups[kind] = rows
    history = read_history(history_file) if history_file else []
    folders, note = None, None
    project_rows = [r for r in backups.get("project", []) if not r.get("error")]
    if project_rows:
        newest = project_rows[0]
        try:
            from .diff import read_manifest

            manifest, _meta = read_manifest(newest["backup_path"], identity_file=identity_file, cache_dir=cache_dir)
            folders = {"backup": newest["name"], "rows": folder_sizes(manifest)}
        except BackupError as exc:
            note = f"{newest['name']}: {exc}"
    return {"project": project, "root": root, "generated": (now or _dt.datetime.now(_dt.timezone.utc)).isoformat(),
            "backups": backups, "history": history, "status": status, "folders": folders, "folders_note": note}


def folder_sizes(manifest: bytes) -> list[dict]:
    """Bytes and files by top-level folder ("" for files at the root), the
    largest first; a hard link's bytes count once, as in the archive."""
    from .archive import iter_manifest
    from .diff import top_level

    out: dict[str, dict] = {}
    for rec in iter_manifest(manifest):
        kind = rec.get("type")
        if kind == "dir" or not isinstance(rec.get("path"), str):
            continue
        row = out.setdefault(top_level(rec["path"]), {"folder": top_level(rec["path"]), "size": 0, "files": 0})
        row["files"] += 1
        if kind == "file" and isinstance(rec.get("size"), int):
            row["size"] += rec["size"]
    return sorted(out.values(), key=lambda r: (-r["size"], r["folder"]))


# ------------------------------------------------------------------ deciding


VERIFY_TASK = {"project": "backup.verify", "db": "db.verify"}


def verify_states(rows: Sequence[Mapping], history: Sequence[Mapping], kind: str, remote: str | None = None) -> list[dict]:
    """Per backup: the outcome of the last verify run of its kind that ended
    after it was made (``ok``, ``failed``, or ``never``) and when.  A run
    that failed may have failed on another backup: the page says "last
    verify failed", not that this one is damaged.  Local backups
    (``remote`` None) count only verify runs without a remote (``backup.verify
    --remote nas`` checked the copies, not them); a remote's copies only that
    remote's runs.  A run that ended with exit 2 (a usage error) verified
    nothing and does not count (as in ``backup.status``)."""
    runs = sorted(((t, r) for r in history if r.get("task") == VERIFY_TASK.get(kind) and (r.get("remote") or None) == remote
                   and attempted(r) and (t := _time(r.get("end")))),
                  key=lambda tr: tr[0])
    out = []
    for row in rows:
        made = _time(row.get("backup_timestamp"))
        after = [(t, r) for t, r in runs if made is not None and t >= made]
        if not after:
            out.append({"state": "never", "end": None})
        else:
            t, r = after[-1]
            out.append({"state": "ok" if r.get("outcome") == "success" else "failed", "end": t.isoformat()})
    return out


def chains(rows: Sequence[Mapping]) -> list[dict]:
    """The chains of incremental backups: each full backup that has
    incrementals, with them in order (oldest first), and the links that
    are missing (an incremental whose parent is not in the folder)."""
    names = {r.get("name") for r in rows}
    by_base: dict[str, list[Mapping]] = {}
    for r in rows:
        if r.get("backup_type") == "project_incremental":
            base = (r.get("base") or {}).get("name") or "?"
            by_base.setdefault(base, []).append(r)
    out = []
    for base, incs in by_base.items():
        incs = sorted(incs, key=lambda r: (r.get("chain_depth") or 0, r.get("backup_timestamp") or ""))
        members = []
        for r in incs:
            parent = (r.get("parent") or {}).get("name")
            members.append({"name": r.get("name"), "depth": r.get("chain_depth"), "timestamp": r.get("backup_timestamp"),
                            "size": r.get("size"), "parent": parent, "parent_missing": bool(parent) and parent not in names})
        out.append({"base": base, "base_present": base in names, "members": members,
                    "broken": base not in names or any(m["parent_missing"] for m in members),
                    "size": sum(m["size"] or 0 for m in members)})
    out.sort(key=lambda c: max((m["timestamp"] or "") for m in c["members"]), reverse=True)
    return out


def _nice_max(value: float) -> float:
    """A round number at or above ``value`` for an axis (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    import math

    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def line_chart(series: Mapping[str, Sequence[tuple[_dt.datetime, float]]], *, width: int = 640, height: int = 200,
               fmt=str) -> dict | None:
    """Coordinates of a line chart over time, for inline SVG: one polyline
    and its points per series, the y axis from 0 to a round maximum, the
    first and last times as x labels.  None when there is nothing to draw."""
    points = [(t, v) for s in series.values() for t, v in s if t is not None and isinstance(v, (int, float))]
    if not points:
        return None
    left, right, top, bottom = 64, 12, 12, 28
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    span = (t1 - t0) or 1.0
    vmax = _nice_max(max(v for _, v in points))
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(t: _dt.datetime, v: float) -> tuple[float, float]:
        x = left + (plot_w / 2 if t1 == t0 else (t.timestamp() - t0) / span * plot_w)
        return round(x, 1), round(top + plot_h - v / vmax * plot_h, 1)

    out_series = []
    for i, (label, data) in enumerate(series.items()):
        pts = [(xy(t, v), t, v) for t, v in sorted(((t, v) for t, v in data if t is not None and isinstance(v, (int, float))),
                                                   key=lambda tv: tv[0])]
        if not pts:
            continue
        out_series.append({"label": label, "index": i, "polyline": " ".join(f"{x},{y}" for (x, y), _, _ in pts),
                           "points": [{"x": x, "y": y, "title": f"{label}: {fmt(v)} at {t:%Y-%m-%d %H:%M} UTC"}
                                      for (x, y), t, v in pts]})
    grid = [{"y": round(top + plot_h - f * plot_h, 1), "label": fmt(vmax * f)} for f in (0, 0.5, 1)]
    when = "%Y-%m-%d" if t1 - t0 >= 2 * 86400 else "%Y-%m-%d %H:%M"
    x_labels = [{"x": left, "anchor": "start", "label": _dt.datetime.fromtimestamp(t0, _dt.timezone.utc).strftime(when)}]
    if t1 != t0:
        x_labels.append({"x": width - right, "anchor": "end", "label": _dt.datetime.fromtimestamp(t1, _dt.timezone.utc).strftime(when)})
    return {"width": width, "height": height, "series": out_series, "grid": grid, "left": left, "right": width - right,
            "bottom": top + plot_h, "x_labels": x_labels}


def _kind_label(row: Mapping) -> str:
    t = row.get("backup_type")
    if t == "project_incremental":
        return f"incremental (depth {row.get('chain_depth')})" if row.get("chain_depth") else "incremental"
    if t == "project_full":
        return "full"
    if t == "database":
        return "database (safety)" if row.get("safety_backup") else "database"
    return "unreadable" if row.get("error") else str(t or "?")


def _short_time(value) -> str:
    t = _time(value)
    return f"{t.astimezone(_dt.timezone.utc):%Y-%m-%d %H:%M}" if t else "-"


def _count(n) -> str:
    return "-" if n is None else f"{n:,}"


STATUS_CLASSES = {"ok": "ok", "shrunk": "warn", "stale": "warn", "failed": "bad", "missing": "bad"}


def build_context(data: Mapping) -> dict:
    """What the template shows, from :func:`gather`'s data (pure)."""
    from .status import CATEGORY_OF, format_duration

    history = list(data.get("history") or [])
    kinds = []
    charts = {}
    size_series, files_series = {}, {}
    for kind, rows in (data.get("backups") or {}).items():
        rows = list(rows)
        states = verify_states(rows, history, kind)
        shown = []
        for row, verify in list(zip(rows, states))[:MAX_ROWS]:
            shown.append({"name": display_path(row.get("name") or ""), "time": row.get("backup_timestamp"),
                          "time_text": _short_time(row.get("backup_timestamp")), "kind": _kind_label(row),
                          "size": human_size(row.get("size")), "files": _count(row.get("total_files")),
                          "content": human_size(row.get("total_size")), "verify": verify["state"],
                          "verify_end": verify["end"], "verify_text": _short_time(verify["end"]) if verify["end"] else "",
                          "encrypted": bool(row.get("encryption")), "error": row.get("error")})
        kinds.append({"kind": kind, "title": "Project backups" if kind == "project" else "Database backups",
                      "rows": shown, "count": len(rows), "more": max(0, len(rows) - MAX_ROWS)})
        timed = [(_time(r.get("backup_timestamp")), r) for r in rows if not r.get("error") and not r.get("safety_backup")]
        size_series[kind] = [(t, r.get("size")) for t, r in timed]
        files_series[kind] = [(t, r.get("total_files")) for t, r in timed]
    charts["size"] = line_chart(size_series, fmt=human_size)
    charts["files"] = line_chart(files_series, fmt=lambda v: f"{v:,.0f}")

    folders = None
    if data.get("folders"):
        rows = data["folders"]["rows"]
        total = sum(r["size"] for r in rows) or 1
        top, rest = rows[:MAX_FOLDERS], rows[MAX_FOLDERS:]
        shown = [{"folder": display_path(r["folder"] + "/") if r["folder"] else "(files at the top)",
                  "size": human_size(r["size"]), "files": _count(r["files"]), "percent": round(100 * r["size"] / total, 1)}
                 for r in top]
        if rest:
            size = sum(r["size"] for r in rest)
            shown.append({"folder": f"({len(rest)} more folders)", "size": human_size(size),
                          "files": _count(sum(r["files"] for r in rest)), "percent": round(100 * size / total, 1)})
        folders = {"backup": display_path(data["folders"]["backup"]), "rows": shown, "total": human_size(sum(r["size"] for r in rows))}

    project_rows = (data.get("backups") or {}).get("project") or []
    chain_list = chains(project_rows)
    for c in chain_list:
        c["base"] = display_path(c["base"])
        c["size_text"] = human_size(c["size"])
        for m in c["members"]:
            m["name"] = display_path(m["name"] or "")
            m["parent"] = display_path(m["parent"] or "")
            m["time_text"] = _short_time(m["timestamp"])
    fulls_alone = sum(1 for r in project_rows if r.get("backup_type") == "project_full") - sum(1 for c in chain_list if c["base_present"])

    status = data.get("status")
    status_ctx = None
    if status:
        th = status.get("thresholds") or {}
        status_kinds = []
        for kind, k in (status.get("kinds") or {}).items():
            n = k.get("newest") or {}
            drill = k.get("last_drill")
            status_kinds.append({
                "kind": kind, "status": k.get("status"), "cls": STATUS_CLASSES.get(k.get("status"), "bad"),
                "newest": _short_time(n.get("timestamp")), "age": format_duration(n.get("age_seconds")) if n else "-",
                "max_age": format_duration((th.get("max_age_seconds") or {}).get(kind)) if (th.get("max_age_seconds") or {}).get(kind) else "off",
                "verify_max_age": format_duration((th.get("verify_max_age_seconds") or {}).get(kind))
                if (th.get("verify_max_age_seconds") or {}).get(kind) else "off",
                "last_verify": (k.get("last_verify") or {}).get("outcome") or "never",
                "last_drill": _short_time(drill.get("end")) if drill else "never",
            })
        status_ctx = {"status": status.get("status"), "cls": STATUS_CLASSES.get(status.get("status"), "bad"),
                      "exit_code": status.get("exit_code"), "kinds": status_kinds,
                      "shrink_warning": th.get("shrink_warning"),
                      "problems": [{"kind": p.get("kind"), "category": CATEGORY_OF.get(p.get("code"), "failed"),
                                    "cls": STATUS_CLASSES.get(CATEGORY_OF.get(p.get("code"), "failed"), "bad"),
                                    "message": p.get("message")} for p in status.get("problems") or []]}

    drills = []
    for kind, task in DRILL_TASKS.items():
        # one row for the local drills, one for each remote drilled (exit 2: the drill never ran)
        by_where: dict = {None: []}
        for r in history:
            if r.get("task") == task and attempted(r):
                where = r.get("remote") if isinstance(r.get("remote"), str) else None
                by_where.setdefault(where, []).append(r)
        for where, recs in sorted(by_where.items(), key=lambda kv: kv[0] or ""):
            label = task if where is None else f"{task} --remote {where}"
            if not recs:
                drills.append({"task": label, "outcome": None})
                continue
            r = max(recs, key=lambda r: _time(r.get("end")) or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc))
            drills.append({"task": label, "outcome": r.get("outcome"), "cls": "ok" if r.get("outcome") == "success" else "bad",
                           "end": r.get("end"), "end_text": _short_time(r.get("end")), "duration": r.get("duration"),
                           "archive": display_path(r.get("archive") or "-"), "error": r.get("error"),
                           "exit_code": r.get("exit_code")})

    runs = []
    for r in sorted(history, key=lambda r: _time(r.get("end")) or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc),
                    reverse=True)[:MAX_RUNS]:
        runs.append({"task": r.get("task"), "outcome": r.get("outcome"),
                     "cls": {"success": "ok", "incomplete": "warn"}.get(r.get("outcome"), "bad"),
                     "end": r.get("end"), "end_text": _short_time(r.get("end")),
                     "duration": "-" if r.get("duration") is None else f"{r['duration']:.1f}s",
                     "archive": display_path(r.get("archive") or "-"), "error": r.get("error")})

    return {"project": data.get("project") or "", "root": display_path(data.get("root") or ""),
            "generated": data.get("generated"), "generated_text": _short_time(data.get("generated")),
            "kinds": kinds, "charts": charts, "folders": folders, "folders_note": data.get("folders_note"),
            "chains": chain_list, "fulls_alone": max(0, fulls_alone), "status": status_ctx, "drills": drills, "runs": runs}


# ----------------------------------------------------------------- rendering

# The page's one script: times shown in UTC get the reader's local time as
# a tooltip.  Allowed by its hash in the page's Content-Security-Policy.
SCRIPT = """\
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var t = new Date(el.getAttribute("datetime"));
  if (!isNaN(t)) { el.title = t.toLocaleString(); }
});
document.documentElement.setAttribute("data-script", "ran");
"""


def _template_text() -> str:
    from importlib import resources

    return resources.files("backup_lib").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


def render(context: Mapping) -> str:
    """The page (Jinja2, autoescaped)."""
    import base64

    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(_template_text())
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return template.render(**context, script=SCRIPT, script_hash=script_hash)


def write_page(text: str, path: str, *, make_dir: bool = False) -> str:
    """Write the page to ``path`` atomically (a temporary file beside it,
    renamed over it); 0600, like the history it is made from."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if make_dir and not os.path.isdir(directory):
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise BackupError(f"cannot write the report to {display_path(path)}: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise BackupError(f"cannot write the report to {display_path(path)}: it is a folder")
    if not os.path.isdir(directory):
        raise BackupError(f"cannot write the report to {display_path(path)}: the folder {display_path(directory)} does not exist")
    from .store import replace_file

    try:
        replace_file(path, text.encode("utf-8"))
    except OSError as exc:
        raise BackupError(f"cannot write the report to {display_path(path)}: {exc.strerror or exc}") from None
    return path


def inside_project(path: str, root: str, left_out: Iterable[str]) -> bool:
    """Whether ``backup.create`` could select ``path``: inside the root and
    not in a folder (or at a path) it always leaves out."""
    real = os.path.realpath(path)
    base = os.path.realpath(root).rstrip("/") + "/"
    if not real.startswith(base):
        return False
    for p in left_out:
        rp = os.path.realpath(p)
        if real == rp or real.startswith(rp.rstrip("/") + "/"):
            return False
    return True

