"""Which backups a cleanup deletes: a pure plan over plain data.

Two policies:

* age and count (the default): delete what is older than ``retention_days``
  or beyond the newest ``max_backups``;
* calendar rules, restic's and Borg's ``forget`` vocabulary, used as soon as
  one ``keep_*`` rule is given: ``keep_last``, ``keep_hourly``,
  ``keep_daily``, ``keep_weekly``, ``keep_monthly``, ``keep_yearly`` and
  ``keep_within``.  A backup is kept when any rule keeps it; each period
  (local time: an hour, a day, an ISO week, a month, a year) keeps its
  newest backup, and a rule of N keeps the newest backup of each of the N
  most recent periods that have one.  ``keep_within`` keeps every backup
  younger than the duration, counted back from the newest backup (as
  restic does), so that backups that stopped do not age out one by one.

Whatever the policy, the newest backup is kept, and a kept incremental keeps
every backup it depends on (its parent, up to the chain's full backup).

A backup dated in the future (more than :data:`FUTURE_TOLERANCE` past
``now``: made while the clock was wrong) cannot be placed in time: it is
kept, and it is neither "the newest" nor counted by ``max_backups`` or
``keep_last`` (nor by any rule), so it never pushes a real backup out.

An incremental left out of the plan because its chain cannot be known (its
index is missing, or it cannot be read) is given in ``unknown_chains``:
every backup as old as it or older, which could be its parent, is kept.
Deleting newest first removes dependants before their parents, so an
interrupted cleanup never leaves an incremental without its parent.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Sequence

from .errors import UsageError

__all__ = ["Decision", "KeepPolicy", "plan_retention", "check_retention_args", "parse_duration", "Backup", "dated_in_future",
           "FUTURE_TOLERANCE"]

MAX_RETENTION_DAYS = 100 * 366  # a century: beyond it a date would overflow
FUTURE_TOLERANCE = _dt.timedelta(hours=1)  # clocks drift; a backup further ahead than this was made with a wrong clock
_FUTURE = "dated in the future"


@dataclass(frozen=True, slots=True)
class Decision:
    key: str
    timestamp: _dt.datetime
    delete: bool
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True, slots=True)
class Backup:
    """What the plan needs of one backup: its key, its time (aware), and
    the key of the backup it depends on (None for a full backup)."""

    key: str
    timestamp: _dt.datetime
    parent: str | None = None


_DURATION_RE = re.compile(r"(\d+)([ymwdh])")
_UNIT_NAMES = {"y": "years", "m": "months", "w": "weeks", "d": "days", "h": "hours"}


@dataclass(frozen=True, slots=True)
class Duration:
    """A calendar duration: years and months move the calendar, the rest
    is fixed time (``1y3m``, ``2w``, ``36h``)."""

    text: str
    months: int = 0
    days: int = 0
    hours: int = 0

    def before(self, when: _dt.datetime) -> _dt.datetime:
        """``when`` minus this duration."""
        year, month = divmod(when.year * 12 + (when.month - 1) - self.months, 12)
        if year < 1:
            return _dt.datetime.min.replace(tzinfo=when.tzinfo)
        month += 1
        # The same day of the month, or the month's last day (31 March - 1m = 28/29 February).
        next_first = _dt.date(year + (month == 12), month % 12 + 1, 1)
        day = min(when.day, (next_first - _dt.timedelta(days=1)).day)
        moved = when.replace(year=year, month=month, day=day)
        try:
            return moved - _dt.timedelta(days=self.days, hours=self.hours)
        except OverflowError:
            return _dt.datetime.min.replace(tzinfo=when.tzinfo)


def parse_duration(text) -> Duration:
    """``7d``, ``2w``, ``6m``, ``1y3m``, ``36h``: y(ears), m(onths),
    w(eeks), d(ays), h(ours), each at most once, largest first."""
    raw = str(text).strip().lower() if text is not None else ""
    pos, months, days, hours, seen = 0, 0, 0, 0, []
    while pos < len(raw):
        m = _DURATION_RE.match(raw, pos)
        if not m:
            raise UsageError(f"--keep-within takes a duration such as 7d, 2w, 6m or 1y3m (got {text!r}: units are y, m, w, d, h)")
        n, unit = int(m.group(1)), m.group(2)
        if unit in seen or (seen and "ymwdh".index(unit) < "ymwdh".index(seen[-1])):
            raise UsageError(f"--keep-within {text!r}: give each unit once, largest first (for example 1y3m)")
        seen.append(unit)
        if n > 100_000:
            raise UsageError(f"--keep-within {text!r}: {n} {_UNIT_NAMES[unit]} is more than this tool can count")
        if unit == "y":
            months += 12 * n
        elif unit == "m":
            months += n
        elif unit == "w":
            days += 7 * n
        elif unit == "d":
            days += n
        else:
            hours += n
        pos = m.end()
    if not seen:
        raise UsageError(f"--keep-within takes a duration such as 7d, 2w, 6m or 1y3m (got {text!r})")
    return Duration(raw, months, days, hours)


_PERIODS = (  # rule, flag, how a local time names its period
    ("hourly", "--keep-hourly", lambda t: t.strftime("%Y-%m-%d %H:00")),
    ("daily", "--keep-daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", "--keep-weekly", lambda t: "%04d-W%02d" % t.isocalendar()[:2]),
    ("monthly", "--keep-monthly", lambda t: t.strftime("%Y-%m")),
    ("yearly", "--keep-yearly", lambda t: t.strftime("%Y")),
)


@dataclass(frozen=True, slots=True)
class KeepPolicy:
    """Calendar retention rules; 0 (or None for ``within``) turns a rule off."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = field(default=None)

    @classmethod
    def from_values(cls, *, last=None, hourly=None, daily=None, weekly=None, monthly=None, yearly=None, within=None) -> "KeepPolicy | None":
        """Validate flag or configuration values; None when no rule is given."""
        counts = {}
        for name, value in (("last", last), ("hourly", hourly), ("daily", daily), ("weekly", weekly), ("monthly", monthly), ("yearly", yearly)):
            if value in (None, ""):
                counts[name] = None
                continue
            try:
                n = int(value)
            except (TypeError, ValueError):
                raise UsageError(f"--keep-{name} takes a whole number (got {value!r})") from None
            if n < 0:
                raise UsageError(f"--keep-{name} must be 0 or more (got {n})")
            if n > 1_000_000:
                raise UsageError(f"--keep-{name} {n} is more than this tool can count (at most 1000000)")
            counts[name] = n
        duration = parse_duration(within) if within not in (None, "") else None
        if all(v is None for v in counts.values()) and duration is None:
            return None
        policy = cls(**{k: v or 0 for k, v in counts.items()}, within=duration)
        if not any((policy.last, policy.hourly, policy.daily, policy.weekly, policy.monthly, policy.yearly, duration)):
            raise UsageError("the --keep-* rules keep nothing: give at least one rule above 0 (the newest backup is kept anyway)")
        return policy

    def describe(self) -> str:
        parts = [f"--keep-{n} {getattr(self, n)}" for n in ("last", "hourly", "daily", "weekly", "monthly", "yearly") if getattr(self, n)]
        if self.within:
            parts.append(f"--keep-within {self.within.text}")
        return ", ".join(parts)


def check_retention_args(retention_days, max_backups) -> tuple[int, int]:
    """Validate and convert --retention-days / --max-backups."""
    try:
        days = int(retention_days)
        keep = int(max_backups)
    except (TypeError, ValueError):
        raise UsageError(f"--retention-days and --max-backups take whole numbers (got {retention_days!r}, {max_backups!r})") from None
    if days < 0:
        raise UsageError(f"--retention-days must be 0 or more (got {days})")
    if days > MAX_RETENTION_DAYS:
        raise UsageError(f"--retention-days must be at most {MAX_RETENTION_DAYS} (got {days})")
    if keep < 1:
        raise UsageError(f"--max-backups must be 1 or more (got {keep}): the newest backup is always kept")
    return days, keep


def _as_backups(backups) -> list[Backup]:
    out = []
    for b in backups:
        out.append(b if isinstance(b, Backup) else Backup(*b))
    return out


def plan_retention(
    backups: Sequence,
    *,
    now: _dt.datetime,
    retention_days: int = 30,
    max_backups: int = 5,
    keep: KeepPolicy | None = None,
    tz: _dt.tzinfo | None = None,
    unknown_chains: Sequence[tuple[str, _dt.datetime, str]] = (),
) -> list[Decision]:
    """Keep or delete each backup; the result is newest first.

    ``backups``: :class:`Backup` or ``(key, UTC timestamp[, parent key])``
    in any order.  ``keep``: calendar rules (else age and count).  ``tz``:
    the zone periods are counted in (default: the machine's local zone).
    ``unknown_chains``: ``(name, UTC timestamp, why)`` of incrementals kept
    out of the plan whose parent is unknown (``why``: "whose index is
    missing"); every backup not newer than one of them is kept.
    """
    every = sorted(_as_backups(backups), key=lambda b: b.timestamp, reverse=True)
    if not every:
        return []
    reasons: dict[str, list[str]] = {b.key: [] for b in every}
    dropped: dict[str, str] = {}
    horizon = now + FUTURE_TOLERANCE
    for b in every:
        if b.timestamp > horizon:
            reasons[b.key].append(f"{_FUTURE} ({b.timestamp:%Y-%m-%d %H:%M} UTC): kept, not counted")
    ordered = [b for b in every if b.timestamp <= horizon]  # what can be placed in time, newest first
    if ordered and keep is None:
        cutoff = now - _dt.timedelta(days=retention_days)
        for rank, b in enumerate(ordered):
            if rank == 0:
                reasons[b.key].append("newest backup, always kept")
            elif rank >= max_backups:
                dropped[b.key] = f"beyond the newest {max_backups}"
            elif b.timestamp < cutoff:
                dropped[b.key] = f"older than {retention_days} days"
            else:
                reasons[b.key].append("within the retention policy")
    elif ordered:
        reasons[ordered[0].key].append("newest backup, always kept")
        for rank, b in enumerate(ordered):
            if rank < keep.last:
                reasons[b.key].append(f"last {keep.last}")
        for name, _flag, period_of in _PERIODS:
            left = getattr(keep, name)
            last_period = None
            for b in ordered:
                if not left:
                    break
                period = period_of(b.timestamp.astimezone(tz))
                if period != last_period:
                    reasons[b.key].append(f"{name} {period}")
                    last_period = period
                    left -= 1
        if keep.within is not None:
            since = keep.within.before(ordered[0].timestamp)
            for b in ordered:
                if b.timestamp >= since:
                    reasons[b.key].append(f"within {keep.within.text} of the newest")
        for b in ordered:
            if not reasons[b.key]:
                dropped[b.key] = f"not kept by {keep.describe()}"
    for name, when, why in unknown_chains:
        for b in every:
            if b.timestamp <= when:
                reasons[b.key].append(f"possible parent of {_name(name)}, {why}")
                dropped.pop(b.key, None)
    # A kept backup keeps the chain it depends on.
    by_key = {b.key: b for b in every}
    for b in every:  # newest first: a dependant is always newer than its parent
        if not reasons[b.key]:
            continue
        child, parent = b.key, b.parent
        while parent is not None and parent in by_key:
            why = f"{'base' if by_key[parent].parent is None else 'parent'} of {_name(child)}"
            already = bool(reasons[parent])
            if why not in reasons[parent]:
                reasons[parent].append(why)
            if already:
                break  # kept already: its own chain is (or will be) walked
            dropped.pop(parent, None)
            child, parent = parent, by_key[parent].parent
    out = []
    for b in every:
        if reasons[b.key]:
            out.append(Decision(b.key, b.timestamp, False, tuple(reasons[b.key])))
        else:
            out.append(Decision(b.key, b.timestamp, True, (dropped.get(b.key, "not kept"),)))
    return out


def dated_in_future(decisions: Sequence[Decision]) -> list[Decision]:
    """The decisions about backups dated in the future (to warn about)."""
    return [d for d in decisions if any(r.startswith(_FUTURE) for r in d.reasons)]


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]
