"""5-field cron schedules: parsing with errors naming the field, and the next time a schedule fires."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from node_janitor.api.cron import CronSchedule


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "0 3 * * *", "*/15 0-6 * * mon-fri", "30 3 1,15 * *", "0 0 * JAN,jul 0", "5 4 * * 7", "@daily",
     " 0 3 * * * ", "0-59/10 */2 1-31/3 */3 1-5"],
)  # fmt: skip
def test_valid(expression: str) -> None:
    CronSchedule.parse(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("every day", "5 fields"),
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("* 24 * * *", "hour value 24"),
        ("* * 0 * *", "day of month value 0"),
        ("* * * 13 *", "month value 13"),
        ("* * * * 8", "day of week value 8"),
        ("5-1 * * * *", "backwards"),
        ("*/0 * * * *", "step must be at least 1"),
        ("* * * foo *", "invalid month value 'foo'"),
        ("@fortnightly", "unknown schedule macro"),
        ("1,,2 * * * *", "invalid minute field"),
    ],
)
def test_invalid(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule.parse(expression)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * *", datetime(2024, 6, 1, 2, 59, 30), datetime(2024, 6, 1, 3, 0)),
        ("0 3 * * *", datetime(2024, 6, 1, 3, 0), datetime(2024, 6, 2, 3, 0)),  # strictly after
        ("*/15 * * * *", datetime(2024, 6, 1, 10, 16), datetime(2024, 6, 1, 10, 30)),
        ("0 0 1 1 *", datetime(2024, 6, 1), datetime(2025, 1, 1)),
        ("0 0 29 2 *", datetime(2024, 3, 1), datetime(2028, 2, 29)),
        ("0 12 * * mon", datetime(2024, 6, 1), datetime(2024, 6, 3, 12, 0)),  # 2024-06-01 is a Saturday
        ("0 12 * * 7", datetime(2024, 6, 1), datetime(2024, 6, 2, 12, 0)),  # 7 is Sunday too
        # both day fields restricted: either matches (the 13th, or a Friday)
        ("0 0 13 * fri", datetime(2024, 6, 1), datetime(2024, 6, 7)),
        ("@hourly", datetime(2024, 12, 31, 23, 30), datetime(2025, 1, 1, 0, 0)),
    ],
)
def test_next_after(expression: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(after) == expected


def test_next_after_keeps_the_time_zone() -> None:
    moment = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
    assert CronSchedule.parse("0 3 * * *").next_after(moment) == datetime(2024, 6, 1, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_schedule_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"the schedule '{expression}' never fires: no month it names")):
        CronSchedule.parse(expression)


def test_daylight_saving_time() -> None:
    """02:30 does not exist on 2024-03-31 in Berlin: the schedule fires at the first minute after the gap."""
    berlin = ZoneInfo("Europe/Berlin")
    schedule = CronSchedule.parse("30 2 * * *")
    after_gap = datetime(2024, 3, 31, 3, 0, tzinfo=berlin)
    assert schedule.next_after(datetime(2024, 3, 30, 12, 0, tzinfo=berlin)) == after_gap
    assert schedule.next_after(after_gap) == datetime(2024, 4, 1, 2, 30, tzinfo=berlin)


def test_the_cronjob_dialect_only() -> None:
    """cronsim's extensions are not CronJob syntax: refused, as the apiserver's CronJob would."""
    for expression in ("0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2", "0 0 15W * *"):
        with pytest.raises(ValueError, match="invalid"):
            CronSchedule.parse(expression)


def test_matches() -> None:
    schedule = CronSchedule.parse("30 3 * * *")
    assert schedule.matches(datetime(2024, 6, 1, 3, 30, 59))
    assert not schedule.matches(datetime(2024, 6, 1, 3, 31))
