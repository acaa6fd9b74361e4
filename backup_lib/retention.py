"""Which backups a cleanup deletes: a pure plan over plain data."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Sequence

from .errors import UsageError

__all__ = ["Decision", "plan_retention", "check_retention_args"]


@dataclass(frozen=True, slots=True)
class Decision:
    key: str
    timestamp: _dt.datetime
    delete: bool
    reason: str


def check_retention_args(retention_days, max_backups) -> tuple[int, int]:
    """Validate and convert --retention-days / --max-backups."""
    try:
        days = int(retention_days)
        keep = int(max_backups)
    except (TypeError, ValueError):
        raise UsageError(f"--retention-days and --max-backups take whole numbers (got {retention_days!r}, {max_backups!r})") from None
    if days < 0:
        raise UsageError(f"--retention-days must be 0 or more (got {days})")
    if keep < 1:
        raise UsageError(f"--max-backups must be 1 or more (got {keep}): the newest backup is always kept")
    return days, keep


def plan_retention(
    backups: Sequence[tuple[str, _dt.datetime]],
    *,
    now: _dt.datetime,
    retention_days: int,
    max_backups: int,
) -> list[Decision]:
    """Delete what is older than ``retention_days`` or beyond the newest
    ``max_backups``; the newest backup is kept whatever its age.

    ``backups`` is (key, UTC timestamp) in any order; the result is newest
    first.
    """
    ordered = sorted(backups, key=lambda b: b[1], reverse=True)
    cutoff = now - _dt.timedelta(days=retention_days)
    out = []
    for rank, (key, ts) in enumerate(ordered):
        if rank == 0:
            out.append(Decision(key, ts, False, "newest backup, always kept"))
        elif rank >= max_backups:
            out.append(Decision(key, ts, True, f"beyond the newest {max_backups}"))
        elif ts < cutoff:
            out.append(Decision(key, ts, True, f"older than {retention_days} days"))
        else:
            out.append(Decision(key, ts, False, "within the retention policy"))
    return out
