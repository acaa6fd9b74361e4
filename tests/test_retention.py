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
