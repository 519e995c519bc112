"""Standard 5-field cron schedules, as a Kubernetes CronJob takes them.

`minute hour day-of-month month day-of-week`, each field `*`, a value, a range `a-b`, a step `*/n` or
`a-b/n` or `a/n`, or a comma list of those; months and days of week also by name (`jan`, `mon`); day of
week 0 or 7 is Sunday. The macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and
`@hourly` are accepted too. As in cron and robfig/cron, when both day fields are restricted a day matches
if either matches.

Evaluation is cronsim's (healthchecks.io's evaluator: DST gaps and folds handled, a schedule that can never fire
refused). Parsing stays ours, in front of it, because it is measurably better for a policy field: it accepts
exactly the CronJob dialect (robfig/cron's standard parser: the macros, which cronsim refuses, and none of
cronsim's extensions `L`, `W`, `#`, which a CronJob refuses), and its errors name the field and the range
("minute value 60 is out of range 0-59", where cronsim says "Bad minute").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cronsim import CronSim, CronSimError

__all__ = ["CRON_PATTERN", "CronSchedule"]


def _field_pattern(value: str) -> str:
    """A cron field of `value`s: comma-separated `*` or a value or a range, each with an optional step >= 1."""
    part = rf"(?:\*|(?:{value})(?:-(?:{value}))?)(?:/0*[1-9][0-9]*)?"
    return rf"{part}(?:,{part})*"


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELD_VALUES = (
    r"0*(?:[0-9]|[1-5][0-9])",  # minute 0-59
    r"0*(?:[0-9]|1[0-9]|2[0-3])",  # hour 0-23
    r"0*(?:[1-9]|[12][0-9]|3[01])",  # day of month 1-31
    rf"0*(?:[1-9]|1[0-2])|(?i:{'|'.join(_MONTH_NAMES)})",  # month 1-12
    rf"0*[0-7]|(?i:{'|'.join(_WEEKDAY_NAMES)})",  # day of week 0-7
)
_FIELDS_PATTERN = r"\s+".join(_field_pattern(v) for v in _FIELD_VALUES)
CRON_PATTERN = rf"^\s*(?:(?i:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly))|{_FIELDS_PATTERN})\s*$"
"""A schedule (5 fields, each value in its field's range, steps at least 1; or a macro), for the CRD: what RE2 can
check of CronSchedule.parse (not backwards ranges, nor days no month has)."""

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name: i + 1 for i, name in enumerate(_MONTH_NAMES)}
_WEEKDAYS = {name: i for i, name in enumerate(_WEEKDAY_NAMES)}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, low, high, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)
_PART_RE = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    day_of_month_restricted: bool
    day_of_week_restricted: bool
    expression: str = "* * * * *"  # the five fields (a macro expanded), as cronsim evaluates them

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parses a schedule; raises ValueError naming the offending field."""
        text = expression.strip().lower()
        text = _MACROS.get(text, text)
        if text.startswith("@"):
            raise ValueError(f"unknown schedule macro {expression.strip()!r}; use one of {', '.join(_MACROS)}")
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(
                f"a schedule has 5 fields (minute hour day-of-month month day-of-week), got {len(fields)} "
                f"in {expression!r}"
            )
        values = [_parse_field(field, *spec) for field, spec in zip(fields, _FIELDS, strict=True)]
        days_of_week = frozenset(0 if d == 7 else d for d in values[4])
        try:
            CronSim(" ".join(fields), datetime(2000, 1, 1))
        except CronSimError as exc:  # every field is in range: the days can never be (e.g. February 30)
            why = "no month it names has such a day" if "day-of-month" in str(exc) else str(exc)
            raise ValueError(f"the schedule {expression.strip()!r} never fires: {why}") from None
        return cls(
            minutes=values[0],
            hours=values[1],
            days_of_month=values[2],
            months=values[3],
            days_of_week=days_of_week,
            day_of_month_restricted=not fields[2].startswith("*"),
            day_of_week_restricted=not fields[4].startswith("*"),
            expression=" ".join(fields),
        )

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires in the minute of `moment`."""
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after `moment` (seconds dropped) at which the schedule fires.

        Naive and aware datetimes both work and the result keeps `moment`'s tzinfo; in a zone with daylight
        saving time, a time that does not exist fires at the first minute after the gap, and one that happens
        twice fires once (cronsim's rules).
        """
        return next(CronSim(self.expression, moment))

    def _day_matches(self, moment: datetime) -> bool:
        in_month = moment.day in self.days_of_month
        in_week = (moment.isoweekday() % 7) in self.days_of_week
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return in_month or in_week
        return in_month and in_week


def _parse_field(field: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    allowed: set[int] = set()
    for part in field.split(","):
        match = _PART_RE.match(part)
        if match is None:
            raise ValueError(f"invalid {name} field {field!r}")
        star, first, last, step_text = match.groups()
        if star:
            start, end = low, high
        else:
            start = _value(first, name, low, high, names)
            end = _value(last, name, low, high, names) if last else (high if step_text else start)
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"invalid {name} field {field!r}: step must be at least 1")
        if end < start:
            raise ValueError(f"invalid {name} field {field!r}: range {start}-{end} is backwards")
        allowed.update(range(start, end + 1, step))
    return frozenset(allowed)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text in names:
        return names[text]
    if not text.isdigit():
        raise ValueError(f"invalid {name} value {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name} value {value} is out of range {low}-{high}")
    return value
