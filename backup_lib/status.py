"""``backup.status``: are the backups there, fresh, whole and checked?

A pure evaluation over plain data -- the backups of each kind (rows as
``project.list_backups(...)[i].summary()`` gives them) and the run history
(:func:`backup_lib.history.read_history`) -- into a report (a dict, the
``--json`` output), with a human table (:func:`render_status`) and the
Prometheus text format (:func:`render_prometheus`,
:func:`write_prometheus`).

Per kind (``project``, ``db``, and a remote's copies as ``project@offsite``,
``db@offsite``) it gives the
newest backup's time, age, archive size, file count and content size, the
backup before it, the last run of each task, the last verify and its
result, the last failure, the last successful restore drill (a history
record of task ``backup.drill`` or ``db.drill``), and its problems:

=========== ========= ===============================================================
problem     category  when
=========== ========= ===============================================================
missing     missing   no backup of an expected kind
stale       stale     the newest backup is older than ``status.max_age``
verify_stale stale    no successful verify within ``status.verify_max_age`` (or never)
shrunk      shrunk    newest file count or content size below ``shrink_warning`` × the previous one's
verify_failed failed  the last verify of the kind failed
run_failed  failed    the last run of a scheduled task (create, backup, cleanup, drill, push) failed or was incomplete
unreadable  failed    the newest backup cannot be read (no metadata)
unreachable failed    the remote cannot be listed (endpoint, bucket, credentials)
=========== ========= ===============================================================

The exit code is that of the worst category present (:data:`EXIT_CODES`):
0 ok, 10 shrunk, 11 stale, 12 failed, 13 missing -- above the toolkit's own
1-5, so that "the backups are in trouble" never reads as "the status
command failed" (1), "bad configuration" (2) or "integrity" (4).  Higher is
worse: missing (nothing to restore) > failed (something broke and needs a
person) > stale (the job stopped running) > shrunk (a warning about
content).

A run that ended with exit 2 (a usage or configuration error: nothing was
attempted) is recorded, and shown as the last failure, but it counts as
neither a verify nor a run of its task (:func:`attempted`).

Safety backups (taken by ``db.restore`` before it swaps the database) are
not the scheduled job's output and are left out of the evaluation.

A remote kind (``<kind>@<remote>``) is judged like a local one, from the
remote's listing and from the history records that name that remote
(``backup.push --remote offsite``, ``backup.verify --remote offsite``, …):
a push that stopped makes it stale, a failed push is ``run_failed``.  Its
thresholds are those of its kind unless named (``max_age: {project@offsite:
2d}``).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from .errors import BackupError, UsageError

__all__ = [
    "EXIT_CODES",
    "CATEGORY_OF",
    "Thresholds",
    "parse_duration",
    "format_duration",
    "thresholds_from_config",
    "expected_kinds",
    "split_kind",
    "believable",
    "evaluate",
    "render_status",
    "render_prometheus",
    "write_prometheus",
]

DEFAULT_MAX_AGE = "26h"  # a nightly job plus two hours of slack
DEFAULT_SHRINK_WARNING = 0.5
DEFAULT_VERIFY_MAX_AGE = "8d"  # a weekly verify plus a day of slack
DEFAULT_KINDS = ("project", "db")

EXIT_OK = 0
EXIT_SHRUNK = 10
EXIT_STALE = 11
EXIT_FAILED = 12
EXIT_MISSING = 13
EXIT_CODES = {"ok": EXIT_OK, "shrunk": EXIT_SHRUNK, "stale": EXIT_STALE, "failed": EXIT_FAILED, "missing": EXIT_MISSING}

CATEGORY_OF = {
    "missing": "missing",
    "stale": "stale",
    "verify_stale": "stale",
    "shrunk": "shrunk",
    "verify_failed": "failed",
    "run_failed": "failed",
    "unreadable": "failed",
    "unreachable": "failed",
}

CREATE_TASKS = {"project": "backup.create", "db": "db.backup"}
PUSH_TASKS = {"project": "backup.push", "db": "db.push"}  # a remote kind's "backup run"
VERIFY_TASKS = ("backup.verify", "db.verify")
DRILL_TASKS = {"project": "backup.drill", "db": "db.drill"}
FUTURE_TOLERANCE = _dt.timedelta(minutes=10)  # history records ending later than now + this are not believed
# The tasks a schedule runs: their last run failing is a problem.  A failed
# restore (a typo, a non-empty target) is shown as the last failure only.
SCHEDULED_TASKS = ("backup.create", "db.backup", "backup.cleanup", "db.cleanup", *DRILL_TASKS.values(), "backup.push", "db.push")
# A run that ended with exit 2 (a usage or configuration error: no remote
# configured, a missing identity file, a typo'd flag) attempted nothing: it
# stays in the history and is shown as the last failure, but it is not a
# verify or a scheduled run of the backups, failed or otherwise.
EXIT_USAGE = 2


def believable(history: Iterable, now: _dt.datetime) -> list[Mapping]:
    """The history records with a readable end that is not in the future.
    A run cannot have ended after now: a record "from the future" (a clock
    that was ahead, or a hand-edited line) would stay the last run of its
    kind and hide every real one after it, so it is passed over."""
    latest = now + FUTURE_TOLERANCE
    return [rec for rec in history
            if isinstance(rec, Mapping) and (end := parse_time(rec.get("end"))) is not None and end <= latest]


def attempted(rec: Mapping) -> bool:
    """Did this run get as far as working on backups (not exit 2)?"""
    return rec.get("exit_code") != EXIT_USAGE


# ---------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_OFF = ("off", "none", "never", "false", "no", "0")


def parse_duration(value, *, key: str = "duration", allow_off: bool = True) -> float | None:
    """``26h``, ``7d``, ``90m``, ``1d12h``, ``2w``, ``45s`` -> seconds;
    a bare number is seconds; ``off`` (or null/false) is None when allowed.
    Here ``m`` is minutes (retention's ``--keep-within`` counts months)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        if allow_off:
            return None
        raise UsageError(f"{key} must be a duration such as 26h, 7d or 90m (got {value!r})")
    if isinstance(value, bool):
        raise UsageError(f"{key} must be a duration such as 26h, 7d or 90m (got {value!r})")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        pos, seconds = 0, 0.0
        while pos < len(text):
            m = _DURATION_RE.match(text, pos)
            if not m:
                raise UsageError(f"{key} must be a duration such as 26h, 7d or 90m: units w, d, h, m (minutes), s (got {value!r})")
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if not text:
            raise UsageError(f"{key} must be a duration such as 26h, 7d or 90m (got {value!r})")
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 100 * 366 * 86400:
        raise UsageError(f"{key} must be a positive duration of at most a century (got {value!r})")
    return seconds


def format_duration(seconds: float | None) -> str:
    """The largest unit and the next one when not zero: ``1d 2h``, ``3h``,
    ``5m 3s``, ``42s``."""
    if seconds is None:
        return "-"
    s = int(round(max(0.0, seconds)))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (unit, size) in enumerate(units):
        if s >= size or unit == "s":
            out = f"{s // size}{unit}"
            if i + 1 < len(units):
                nxt_unit, nxt_size = units[i + 1]
                rest = (s % size) // nxt_size
                if rest:
                    out += f" {rest}{nxt_unit}"
            return out
    return "0s"


def split_kind(kind: str) -> tuple[str, str | None]:
    """``project@offsite`` -> (``project``, ``offsite``); ``db`` -> (``db``, None)."""
    base, _, remote = kind.partition("@")
    return base, remote or None


def expected_kinds(section: Mapping | None, *, has_database: bool, pushes: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The kinds ``backup.status`` expects backups of: ``status.kinds`` when
    configured, else the project, and the database when the project has one;
    then, for each, its copies on the remotes it is pushed to (``pushes``:
    kind -> the names in ``backup.push`` / ``db.push``), or on the remotes
    ``status.remotes`` names (``[]``: none)."""
    section = section or {}
    configured = section.get("kinds")
    if configured:
        if isinstance(configured, str):
            configured = [configured]
        if not all(isinstance(k, str) and k for k in configured):
            raise UsageError(f"status.kinds must be a list of kinds such as [project, db] (got {configured!r})")
        return list(dict.fromkeys(configured))
    local = ["project", "db"] if has_database else ["project"]
    remotes = section.get("remotes")
    if remotes is not None:
        if isinstance(remotes, str):
            remotes = [remotes]
        if not isinstance(remotes, (list, tuple)) or not all(isinstance(r, str) and r for r in remotes):
            raise UsageError(f"status.remotes must be a list of remote names (got {remotes!r})")
        per_kind = {k: list(remotes) for k in local}
    else:
        per_kind = {k: list((pushes or {}).get(k) or ()) for k in local}
    return list(dict.fromkeys(local + [f"{k}@{r}" for k in local for r in per_kind[k]]))


# --------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Thresholds:
    """Validated thresholds.  ``max_age`` and ``verify_max_age`` map a kind
    to seconds (None: not checked); ``default`` covers unnamed kinds."""

    max_age: Mapping[str, float | None] = field(default_factory=dict)
    max_age_default: float | None = 26 * 3600
    shrink_warning: float = DEFAULT_SHRINK_WARNING
    verify_max_age: Mapping[str, float | None] = field(default_factory=dict)
    verify_max_age_default: float | None = 8 * 86400

    def max_age_for(self, kind: str) -> float | None:
        """A remote kind's own value, else its kind's, else the default."""
        return self.max_age.get(kind, self.max_age.get(split_kind(kind)[0], self.max_age_default))

    def verify_max_age_for(self, kind: str) -> float | None:
        return self.verify_max_age.get(kind, self.verify_max_age.get(split_kind(kind)[0], self.verify_max_age_default))


def _per_kind(value, key: str, default) -> tuple[dict, float | None]:
    """One duration for every kind, or ``{kind: duration}`` (the rest default)."""
    if isinstance(value, Mapping):
        out = {}
        fallback = parse_duration(default, key=key)
        for kind, v in value.items():
            if not isinstance(kind, str) or not kind:
                raise UsageError(f"{key}: keys are kinds such as project or db (got {kind!r})")
            if kind == "default":
                fallback = parse_duration(v, key=f"{key}.default")
            else:
                out[kind] = parse_duration(v, key=f"{key}.{kind}")
        return out, fallback
    if isinstance(value, (list, tuple, set)):
        raise UsageError(f"{key} must be a duration or a mapping of kind to duration (got a list)")
    return {}, parse_duration(default if value == "" else value, key=key)


def thresholds_from_config(section: Mapping | None = None) -> Thresholds:
    """The ``status:`` configuration section -> Thresholds (UsageError, exit 2,
    on a bad value).  Keys: ``max_age``, ``shrink_warning``, ``verify_max_age``."""
    section = dict(section or {})
    unknown = set(section) - {"max_age", "shrink_warning", "verify_max_age", "kinds", "remotes"}
    if unknown:
        raise UsageError(f"status: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                         "(known: max_age, shrink_warning, verify_max_age, kinds, remotes)")
    max_age, max_default = _per_kind(section.get("max_age", DEFAULT_MAX_AGE), "status.max_age", DEFAULT_MAX_AGE)
    verify, verify_default = _per_kind(section.get("verify_max_age", DEFAULT_VERIFY_MAX_AGE), "status.verify_max_age",
                                       DEFAULT_VERIFY_MAX_AGE)
    shrink = section.get("shrink_warning", DEFAULT_SHRINK_WARNING)
    if shrink is None or shrink is False:
        shrink = 0.0
    if isinstance(shrink, bool) or not isinstance(shrink, (int, float, str)):
        raise UsageError(f"status.shrink_warning must be a number from 0 to 1 (got {shrink!r})")
    try:
        shrink = float(shrink)
    except ValueError:
        raise UsageError(f"status.shrink_warning must be a number from 0 to 1 (got {shrink!r})") from None
    if not (0.0 <= shrink <= 1.0):
        raise UsageError(f"status.shrink_warning must be a number from 0 to 1, 0 to turn it off (got {shrink!r})")
    return Thresholds(max_age, max_default, shrink, verify, verify_default)


# --------------------------------------------------------------- evaluation


def parse_time(value) -> _dt.datetime | None:
    """An ISO 8601 time (a naive one is UTC), or None for anything else."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _row_time(row: Mapping) -> _dt.datetime | None:
    t = parse_time(row.get("backup_timestamp")) or parse_time(row.get("timestamp"))
    if t is None and row.get("name"):
        from .store import parse_backup_name

        info = parse_backup_name(str(row["name"]))
        t = info["timestamp"] if info else None
    return t


def _backup_facts(row: Mapping, t: _dt.datetime | None, now: _dt.datetime) -> dict:
    return {
        "name": row.get("name"),
        "timestamp": t.isoformat() if t else None,
        "age_seconds": None if t is None else round(max(0.0, (now - t).total_seconds()), 3),
        "size": row.get("size"),
        "files": row.get("total_files"),
        "content_size": row.get("total_size"),
        "error": row.get("error"),
    }


def _run_facts(rec: Mapping | None, now: _dt.datetime) -> dict | None:
    if rec is None:
        return None
    end = parse_time(rec.get("end"))
    out = {k: rec.get(k) for k in ("task", "outcome", "exit_code", "end", "duration", "archive", "size", "files",
                                   "checked", "failed", "error") if rec.get(k) is not None}
    out["age_seconds"] = None if end is None else round(max(0.0, (now - end).total_seconds()), 3)
    return out


def _ratio_problem(new, old, ratio: float) -> bool:
    return isinstance(new, (int, float)) and isinstance(old, (int, float)) and old > 0 and new < ratio * old


def evaluate(
    backups: Mapping[str, Sequence[Mapping]],
    history: Sequence[Mapping] = (),
    *,
    now: _dt.datetime,
    thresholds: Thresholds | None = None,
    project: str | None = None,
    kinds: Iterable[str] | None = None,
    unreachable: Mapping[str, str] | None = None,
) -> dict:
    """The status report.  ``backups``: kind -> rows (``name``,
    ``backup_timestamp``, ``size``, ``total_files``, ``total_size``,
    ``error``, ``safety_backup``), any order.  ``kinds``: the kinds that are
    expected to have backups (default: project and db); a kind with rows is
    evaluated too.  ``unreachable``: remote kind -> why it could not be
    listed.  History records that name a ``remote`` count for
    ``<kind>@<remote>``.  ``now`` must be timezone-aware."""
    th = thresholds or Thresholds()
    expected = list(DEFAULT_KINDS if kinds is None else kinds)
    all_kinds = expected + [k for k in backups if k not in expected]
    by_kind: dict[str, list[Mapping]] = {}
    for rec in believable(history, now):
        key = str(rec.get("kind") or "")
        if isinstance(rec.get("remote"), str) and rec["remote"]:
            key = f"{key}@{rec['remote']}"
        by_kind.setdefault(key, []).append(rec)
    for recs in by_kind.values():
        recs.sort(key=lambda r: parse_time(r["end"]))

    report_kinds: dict[str, dict] = {}
    problems: list[dict] = []
    for kind in all_kinds:
        entry = _evaluate_kind(kind, backups.get(kind) or [], by_kind.get(kind, []), now, th, (unreachable or {}).get(kind))
        report_kinds[kind] = entry
        problems += [{"kind": kind, **p} for p in entry["problems"]]

    worst = max((EXIT_CODES[CATEGORY_OF[p["code"]]] for p in problems), default=EXIT_OK)
    status = next(name for name, code in EXIT_CODES.items() if code == worst)
    return {
        "project": project,
        "status": status,
        "exit_code": worst,
        "checked_at": now.isoformat(),
        "thresholds": {
            "max_age_seconds": {k: th.max_age_for(k) for k in all_kinds},
            "verify_max_age_seconds": {k: th.verify_max_age_for(k) for k in all_kinds},
            "shrink_warning": th.shrink_warning,
        },
        "kinds": report_kinds,
        "problems": problems,
    }


def _evaluate_kind(kind: str, rows: Sequence[Mapping], recs: Sequence[Mapping], now: _dt.datetime, th: Thresholds,
                   unreachable: str | None = None) -> dict:
    base, remote = split_kind(kind)
    timed = []
    for row in rows:
        if row.get("safety_backup"):
            continue
        t = _row_time(row)
        timed.append((t or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc), row))
    timed.sort(key=lambda tr: tr[0], reverse=True)
    problems: list[dict] = []

    newest = _backup_facts(timed[0][1], _row_time(timed[0][1]), now) if timed else None
    readable = [(t, r) for t, r in timed if not r.get("error")]
    previous = None
    if timed and not timed[0][1].get("error") and len(readable) > 1:
        previous = _backup_facts(readable[1][1], readable[1][0], now)

    # the last run of each task, the last verify, failure, drill
    last_by_task: dict[str, Mapping] = {}
    for rec in recs:
        if attempted(rec):  # a usage error (exit 2) neither fails a task nor hides its last real run
            last_by_task[str(rec.get("task"))] = rec  # oldest first: the last one wins
    verifies = [r for r in recs if r.get("task") in VERIFY_TASKS and attempted(r)]
    last_verify = verifies[-1] if verifies else None
    ok_verifies = [r for r in verifies if r.get("outcome") == "success"]
    last_ok_verify = ok_verifies[-1] if ok_verifies else None
    failures = [r for r in recs if r.get("outcome") not in ("success", None)]
    drills = [r for r in recs if r.get("task") == DRILL_TASKS.get(kind) and r.get("outcome") == "success"]
    made_by = (PUSH_TASKS if remote else CREATE_TASKS).get(base)
    creates = [r for r in recs if r.get("task") == made_by and r.get("outcome") == "success"]

    max_age = th.max_age_for(kind)
    if unreachable is not None:  # nothing to judge the backups by; the history still counts
        problems.append({"code": "unreachable", "message": f"remote {remote} cannot be listed: {unreachable}"})
    elif newest is None:
        problems.append({"code": "missing", "message": f"no {kind} backup"})
    else:
        if newest["error"]:
            problems.append({"code": "unreadable", "message": f"newest {kind} backup {newest['name']} cannot be read: {newest['error']}"})
        age = newest["age_seconds"]
        if max_age is not None and (age is None or age > max_age):
            problems.append({"code": "stale", "message": f"newest {kind} backup is {format_duration(age) if age is not None else 'of unknown age'} old "
                                                          f"(status.max_age {format_duration(max_age)})"})
        if previous is not None and th.shrink_warning > 0:
            shrunk = []
            if _ratio_problem(newest["files"], previous["files"], th.shrink_warning):
                shrunk.append(f"{newest['files']} files (previous {previous['files']})")
            if _ratio_problem(newest["content_size"], previous["content_size"], th.shrink_warning):
                shrunk.append(f"{newest['content_size']} bytes (previous {previous['content_size']})")
            if shrunk:
                problems.append({"code": "shrunk", "message": f"newest {kind} backup holds " + " and ".join(shrunk)
                                                              + f": below {th.shrink_warning:g} of the previous one"})
        verify_max = th.verify_max_age_for(kind)
        if verify_max is not None:
            ok_end = parse_time(last_ok_verify["end"]) if last_ok_verify else None
            if ok_end is None:
                problems.append({"code": "verify_stale", "message": f"no successful {kind} verify on record "
                                                                    f"(status.verify_max_age {format_duration(verify_max)})"})
            elif (now - ok_end).total_seconds() > verify_max:
                problems.append({"code": "verify_stale", "message": f"last successful {kind} verify was "
                                                                    f"{format_duration((now - ok_end).total_seconds())} ago "
                                                                    f"(status.verify_max_age {format_duration(verify_max)})"})
    if last_verify is not None and last_verify.get("outcome") != "success":
        problems.append({"code": "verify_failed", "message": f"last {kind} verify failed: {last_verify.get('error') or 'exit ' + str(last_verify.get('exit_code'))}"})
    for task in SCHEDULED_TASKS:
        rec = last_by_task.get(task)
        if rec is not None and rec.get("outcome") != "success":
            problems.append({"code": "run_failed", "message": f"last {task} {'was incomplete' if rec.get('outcome') == 'incomplete' else 'failed'}"
                                                              f" {format_duration((now - parse_time(rec['end'])).total_seconds())} ago: "
                                                              f"{rec.get('error') or 'exit ' + str(rec.get('exit_code'))}"})

    worst = max((EXIT_CODES[CATEGORY_OF[p["code"]]] for p in problems), default=EXIT_OK)
    return {
        "status": next(name for name, code in EXIT_CODES.items() if code == worst),
        "exit_code": worst,
        "remote": remote,
        "count": None if unreachable is not None else len(timed),
        "newest": newest,
        "previous": previous,
        "max_age_seconds": max_age,
        "last_success_run": _run_facts(creates[-1] if creates else None, now),
        "last_runs": {task: _run_facts(rec, now) for task, rec in sorted(last_by_task.items())},
        "last_verify": _run_facts(last_verify, now),
        "last_successful_verify": _run_facts(last_ok_verify, now),
        "last_failure": _run_facts(failures[-1] if failures else None, now),
        "last_drill": _run_facts(drills[-1] if drills else None, now),
        "problems": problems,
    }


# ---------------------------------------------------------------- rendering


def render_status(report: Mapping) -> str:
    """A table for people: one row per kind, then the problems."""
    from .report import human_size

    header = ("KIND", "STATUS", "NEWEST (UTC)", "AGE", "SIZE", "FILES", "LAST VERIFY", "LAST FAILURE")
    table = [header]
    for kind, k in report["kinds"].items():
        n = k["newest"] or {}
        ts = (n.get("timestamp") or "")[:19].replace("T", " ") or "-"
        verify = k["last_verify"]
        verify_s = "never" if verify is None else f"{'ok' if verify['outcome'] == 'success' else verify['outcome']} {format_duration(verify['age_seconds'])} ago"
        failure = k["last_failure"]
        failure_s = "-" if failure is None else f"{failure['task']} {format_duration(failure['age_seconds'])} ago"
        table.append((kind, k["status"], ts, format_duration(n.get("age_seconds")) if n else "-",
                      human_size(n.get("size")) if n else "-", "-" if n.get("files") is None else str(n["files"]),
                      verify_s, failure_s))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    title = f"{report.get('project') or 'backups'}: {report['status']}"
    if report["exit_code"]:
        title += f" (exit {report['exit_code']})"
    lines.append(title)
    lines += ["  ".join(col.ljust(w) for col, w in zip(row, widths)).rstrip() for row in table]
    drills = [(kind, k["last_drill"]) for kind, k in report["kinds"].items() if k.get("last_drill")]
    for kind, d in drills:
        lines.append(f"last successful drill ({kind}): {format_duration(d['age_seconds'])} ago")
    for p in report["problems"]:
        lines.append(f"{CATEGORY_OF[p['code']]:8}  {p['message']}")
    return "\n".join(lines)


_METRICS = (  # name, help
    ("backup_status", "Status of this kind of backup: 0 ok, 10 shrunk, 11 stale, 12 failed, 13 missing (the worst applies)"),
    ("backup_problem", "1 when this problem applies to this kind of backup, else 0"),
    ("backup_count", "Number of backups of this kind"),
    ("backup_last_success_timestamp_seconds", "Time of the newest backup (Unix seconds)"),
    ("backup_size_bytes", "Size of the newest backup's archive in bytes"),
    ("backup_files", "Number of files in the newest backup"),
    ("backup_content_bytes", "Total size of the files in the newest backup, uncompressed"),
    ("backup_duration_seconds", "Duration of the last successful backup run"),
    ("backup_last_verify_success", "1 when the last verify succeeded, 0 when it failed"),
    ("backup_last_verify_timestamp_seconds", "End of the last verify run (Unix seconds)"),
    ("backup_last_failure_timestamp_seconds", "End of the last failed run of any task (Unix seconds)"),
    ("backup_last_drill_success_timestamp_seconds", "End of the last successful restore drill (Unix seconds)"),
    ("backup_status_timestamp_seconds", "When this status was evaluated (Unix seconds)"),
)


def _ts(value) -> float | None:
    t = parse_time(value)
    return None if t is None else t.timestamp()


def render_prometheus(report: Mapping) -> bytes:
    """The report in the Prometheus text exposition format (prometheus_client)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    project = report.get("project") or ""
    labels = ("project", "kind", "remote")  # remote: "" for the local backups
    g = {name: Gauge(name, help_, labels if name not in ("backup_problem", "backup_status_timestamp_seconds") else
                     ((*labels, "problem") if name == "backup_problem" else ("project",)), registry=registry)
         for name, help_ in _METRICS}
    g["backup_status_timestamp_seconds"].labels(project).set(_ts(report["checked_at"]) or 0)
    for kind, k in report["kinds"].items():
        base, remote = split_kind(kind)

        def put(name, value, *extra):
            if value is not None:
                g[name].labels(project, base, remote or "", *extra).set(float(value))

        put("backup_status", k["exit_code"])
        codes = {p["code"] for p in k["problems"]}
        for code in CATEGORY_OF:
            put("backup_problem", int(code in codes), code)
        put("backup_count", k["count"])
        n = k["newest"]
        if n:
            put("backup_last_success_timestamp_seconds", _ts(n["timestamp"]))
            put("backup_size_bytes", n.get("size"))
            put("backup_files", n.get("files"))
            put("backup_content_bytes", n.get("content_size"))
        if k["last_success_run"]:
            put("backup_duration_seconds", k["last_success_run"].get("duration"))
        if k["last_verify"]:
            put("backup_last_verify_success", int(k["last_verify"]["outcome"] == "success"))
            put("backup_last_verify_timestamp_seconds", _ts(k["last_verify"].get("end")))
        if k["last_failure"]:
            put("backup_last_failure_timestamp_seconds", _ts(k["last_failure"].get("end")))
        if k["last_drill"]:
            put("backup_last_drill_success_timestamp_seconds", _ts(k["last_drill"].get("end")))
    return generate_latest(registry)


def write_prometheus(report: Mapping, path: str) -> None:
    """Write the metrics for node_exporter's textfile collector, atomically
    (a temp file in the same directory, renamed over ``path``); the collector
    reads only ``*.prom`` files, so it never sees the temp file."""
    import os

    data = render_prometheus(report)
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise BackupError(f"--prometheus {path}: the directory {directory} does not exist")
    from .store import replace_file

    try:
        replace_file(path, data, mode=0o644)  # (a hidden .tmp name: the collector never reads it)
    except OSError as exc:
        raise BackupError(f"--prometheus {path} cannot be written: {exc.strerror or exc}") from None
