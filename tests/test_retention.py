import datetime as dt

import pytest

from backup_lib.errors import UsageError
from backup_lib.retention import check_retention_args, plan_retention

NOW = dt.datetime(2026, 1, 31, tzinfo=dt.timezone.utc)


def days_ago(n):
    return NOW - dt.timedelta(days=n)


def deleted(decisions):
    return {d.key for d in decisions if d.delete}


def test_age_and_count():
    backups = [(f"b{i}", days_ago(i * 10)) for i in range(8)]  # 0, 10, … 70 days old
    plan = plan_retention(backups, now=NOW, retention_days=30, max_backups=5)
    assert deleted(plan) == {"b4", "b5", "b6", "b7"}  # > 30 days, or beyond the newest 5
    plan = plan_retention(backups, now=NOW, retention_days=100, max_backups=3)
    assert deleted(plan) == {"b3", "b4", "b5", "b6", "b7"}


def test_newest_always_kept():
    backups = [("old", days_ago(400)), ("older", days_ago(500))]
    plan = plan_retention(backups, now=NOW, retention_days=30, max_backups=5)
    assert deleted(plan) == {"older"}
    assert plan[0].key == "old" and not plan[0].delete


def test_order_does_not_matter_and_result_is_newest_first():
    backups = [("b", days_ago(2)), ("a", days_ago(1)), ("c", days_ago(3))]
    plan = plan_retention(backups, now=NOW, retention_days=30, max_backups=2)
    assert [d.key for d in plan] == ["a", "b", "c"]
    assert deleted(plan) == {"c"}


def test_zero_days_keeps_only_newest():
    backups = [("a", days_ago(0.5)), ("b", days_ago(1))]
    assert deleted(plan_retention(backups, now=NOW, retention_days=0, max_backups=5)) == {"a", "b"} - {"a"}


@pytest.mark.parametrize("days,keep", [(-1, 5), (30, 0), ("x", 5), (30, -2)])
def test_bad_values_are_usage_errors(days, keep):
    with pytest.raises(UsageError):
        check_retention_args(days, keep)


def test_string_values_from_flags():
    assert check_retention_args("60", "10") == (60, 10)


# ------------------------------------------------------------ calendar rules

import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from backup_lib.retention import Backup, KeepPolicy, parse_duration  # noqa: E402

UTC = dt.timezone.utc


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


def kept(decisions):
    return [d.key for d in decisions if not d.delete]


def nightly(start, days, hour=2):
    """One backup a night at ``hour`` UTC, newest last."""
    return [Backup(f"n{i:04d}", start + dt.timedelta(days=i, hours=hour)) for i in range(days)]


def test_keep_daily_weekly_monthly_yearly_over_years():
    backups = nightly(at(2024, 1, 1), 3 * 365)  # 2024-01-01 .. 2026-12-30
    policy = KeepPolicy.from_values(daily=7, weekly=4, monthly=12, yearly=3)
    plan = plan_retention(backups, now=backups[-1].timestamp, keep=policy, tz=UTC)
    keep = {d.key: d.reasons for d in plan if not d.delete}
    newest = backups[-1].timestamp
    stamps = {b.key: b.timestamp for b in backups}
    days = sorted({stamps[k].date() for k in keep}, reverse=True)
    # The last 7 nights, the newest of each of the last 4 ISO weeks, of 12 months, of 3 years.
    assert days[:7] == [(newest - dt.timedelta(days=i)).date() for i in range(7)]
    months = {(stamps[k].year, stamps[k].month) for k, r in keep.items() if any(x.startswith("monthly") for x in r)}
    assert len(months) == 12 and (2026, 12) in months and (2026, 1) in months and (2025, 12) not in months
    years = sorted(stamps[k].year for k, r in keep.items() if any(x.startswith("yearly") for x in r))
    assert years == [2024, 2025, 2026]
    # Each period keeps its newest backup: the yearly of 2024 is 31 December.
    y2024 = [k for k, r in keep.items() if "yearly 2024" in r]
    assert [stamps[k].date() for k in y2024] == [dt.date(2024, 12, 31)]
    assert len(keep) == len(set(keep))
    assert all(d.reasons for d in plan)


def test_periods_use_the_local_time_zone():
    # 23:30 UTC on 31 December is already the new year in Berlin.
    backups = [Backup("a", at(2025, 12, 31, 23, 30)), Backup("b", at(2025, 12, 31, 12, 0)), Backup("c", at(2025, 12, 30, 12, 0))]
    now = at(2026, 1, 1)
    berlin = plan_retention(backups, now=now, keep=KeepPolicy.from_values(yearly=5), tz=ZoneInfo("Europe/Berlin"))
    assert kept(berlin) == ["a", "b"]  # a is 2026 in Berlin, b the newest of 2025
    utc = plan_retention(backups, now=now, keep=KeepPolicy.from_values(yearly=5), tz=UTC)
    assert kept(utc) == ["a"]  # all three in 2025
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:  # default: the machine's local zone, as the README says
        assert kept(plan_retention(backups, now=now, keep=KeepPolicy.from_values(yearly=5))) == ["a", "b"]
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_keep_last_and_within_and_reasons():
    backups = [Backup(f"b{i}", at(2026, 11, 29) - dt.timedelta(days=i)) for i in range(20)]
    plan = plan_retention(backups, now=at(2026, 11, 29), keep=KeepPolicy.from_values(last=3, within="1w"), tz=UTC)
    assert kept(plan) == [f"b{i}" for i in range(8)]  # last 3, and everything within a week of the newest
    reasons = {d.key: d.reasons for d in plan}
    assert "last 3" in reasons["b0"] and "newest backup, always kept" in reasons["b0"]
    assert reasons["b5"] == ("within 1w of the newest",)
    assert reasons["b9"] == ("not kept by --keep-last 3, --keep-within 1w",)
    assert plan_retention(backups, now=at(2026, 11, 29), keep=KeepPolicy.from_values(within="1y3m"), tz=UTC)[-1].delete is False


def test_within_counts_from_the_newest_backup_not_now():
    backups = [Backup("a", at(2026, 1, 10)), Backup("b", at(2026, 1, 5)), Backup("c", at(2025, 12, 1))]
    plan = plan_retention(backups, now=at(2026, 11, 29), keep=KeepPolicy.from_values(within="7d"), tz=UTC)
    assert kept(plan) == ["a", "b"]


@pytest.mark.parametrize("text,when,expected", [
    ("7d", at(2026, 3, 31), at(2026, 3, 24)),
    ("2w", at(2026, 3, 31), at(2026, 3, 17)),
    ("1m", at(2026, 3, 31), at(2026, 2, 28)),
    ("6m", at(2026, 8, 31), at(2026, 2, 28)),
    ("1y3m", at(2026, 5, 15), at(2025, 2, 15)),
    ("36h", at(2026, 1, 2, 12), at(2026, 1, 1)),
    ("1y", at(2024, 2, 29), at(2023, 2, 28)),
])
def test_durations(text, when, expected):
    assert parse_duration(text).before(when) == expected


@pytest.mark.parametrize("kw", [
    {"daily": -1}, {"last": "x"}, {"within": "7x"}, {"within": "d7"}, {"within": "3m1y"}, {"within": "1d1d"},
    {"last": 0, "daily": 0}, {"within": ""} | {"daily": 0},
])
def test_bad_keep_rules_are_usage_errors(kw):
    with pytest.raises(UsageError):
        KeepPolicy.from_values(**kw)


def test_no_rule_means_no_policy():
    assert KeepPolicy.from_values() is None
    assert KeepPolicy.from_values(daily=None, within="") is None


def test_a_kept_incremental_keeps_its_whole_chain_with_either_policy():
    # full f0 <- i1 <- i2 <- i3 (newest), and an older chain g0 <- j1.
    day = dt.timedelta(days=1)
    t = at(2026, 11, 20)
    backups = [Backup("g0", t), Backup("j1", t + day, "g0"), Backup("f0", t + 2 * day), Backup("i1", t + 3 * day, "f0"),
               Backup("i2", t + 4 * day, "i1"), Backup("i3", t + 5 * day, "i2")]
    plan = plan_retention(backups, now=t + 6 * day, keep=KeepPolicy.from_values(last=1), tz=UTC)
    assert kept(plan) == ["i3", "i2", "i1", "f0"]
    reasons = {d.key: d.reasons for d in plan}
    assert reasons["i2"] == ("parent of i3",) and reasons["f0"] == ("base of i1",)
    plan = plan_retention(backups, now=t + 6 * day, retention_days=30, max_backups=2)
    assert kept(plan) == ["i3", "i2", "i1", "f0"]
    plan = plan_retention(backups, now=t + 6 * day, keep=KeepPolicy.from_values(last=5), tz=UTC)
    assert kept(plan) == ["i3", "i2", "i1", "f0", "j1", "g0"]


def test_random_plans_never_break_a_chain():
    rng = random.Random(11)
    for _ in range(300):
        backups, t, parent = [], at(2025, 1, 1), None
        for i in range(rng.randint(1, 40)):
            t += dt.timedelta(hours=rng.choice([1, 5, 24, 24, 24, 72, 24 * 30]))
            parent = None if parent is None or rng.random() < 0.2 else parent
            backups.append(Backup(f"b{i}", t, parent))
            parent = f"b{i}"
        rng.shuffle(backups)
        kw = {k: rng.choice([0, 0, 1, 2, 7]) for k in ("last", "hourly", "daily", "weekly", "monthly", "yearly")}
        if not any(kw.values()):
            kw["last"] = 1
        if rng.random() < 0.3:
            kw["within"] = rng.choice(["1d", "2w", "3m"])
        plan = plan_retention(backups, now=t, keep=KeepPolicy.from_values(**kw), tz=UTC)
        by_key = {b.key: b for b in backups}
        keep = {d.key for d in plan if not d.delete}
        assert plan[0].delete is False
        for key in keep:
            p = by_key[key].parent
            while p is not None:
                assert p in keep, (key, p)
                p = by_key[p].parent
        # Deleting in plan order (newest first) never leaves a kept or not-yet-deleted dependant without its parent.
        gone = set()
        for d in plan:
            if d.delete:
                gone.add(d.key)
                assert not any(b.parent == d.key and b.key not in gone for b in backups), d.key


def test_retention_days_beyond_a_century_is_a_usage_error():
    with pytest.raises(UsageError, match="at most"):
        check_retention_args(1_000_000, 5)


def test_a_backup_dated_in_the_future_is_kept_but_never_counted():
    from backup_lib.retention import dated_in_future

    ahead = NOW + dt.timedelta(days=365)  # made while the clock was a year ahead
    backups = [("future", ahead), ("real", days_ago(0)), ("older", days_ago(1))]
    plan = plan_retention(backups, now=NOW, retention_days=30, max_backups=1)
    assert deleted(plan) == {"older"}  # the real newest stays; the future one does not count
    by_key = {d.key: d for d in plan}
    assert "newest" in by_key["real"].reason and "dated in the future" in by_key["future"].reason
    assert [d.key for d in dated_in_future(plan)] == ["future"]
    plan = plan_retention(backups, now=NOW, keep=KeepPolicy.from_values(last=1))
    assert deleted(plan) == {"older"}
    plan = plan_retention(backups, now=NOW, keep=KeepPolicy.from_values(within="1d"))
    assert deleted(plan) == set()  # counted back from the real newest, not from a year ahead
    # A small drift is no clock error: 30 minutes ahead is just the newest.
    plan = plan_retention([("soon", NOW + dt.timedelta(minutes=30)), ("real", days_ago(0))], now=NOW, max_backups=1)
    assert deleted(plan) == {"real"} and dated_in_future(plan) == []
    # Only future backups: all kept, none deleted.
    assert deleted(plan_retention([("f", ahead)], now=NOW, max_backups=1)) == set()


def test_an_incremental_with_an_unknown_chain_keeps_every_possible_parent():
    backups = [("new_full", days_ago(0)), ("incr2", days_ago(2), "full1"), ("full1", days_ago(3)), ("full0", days_ago(5))]
    # "lost" (an incremental one day old, its index missing) could depend on any backup up to its time.
    plan = plan_retention(backups, now=NOW, retention_days=30, max_backups=1,
                          unknown_chains=[("dir/lost_incr.tar.gz", days_ago(1), "whose index is missing")])
    assert deleted(plan) == set()
    assert "possible parent of lost_incr.tar.gz, whose index is missing" in {d.key: d for d in plan}["full0"].reason
    plan = plan_retention(backups, now=NOW, retention_days=30, max_backups=1,
                          unknown_chains=[("lost", days_ago(3), "which cannot be read")])
    assert deleted(plan) == {"incr2"}  # newer than the unknown incremental: not its parent
