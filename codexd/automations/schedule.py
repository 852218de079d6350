"""Schedule maths: RFC 5545 recurrence rules in a time zone, as pure functions of ``now``.

An automation's schedule is an ``RRULE`` (the ``RRULE:`` prefix optional), optionally preceded by a
``DTSTART`` line; without one the rule is anchored at the automation's creation time. Occurrences
are computed in local wall-clock time of the automation's IANA zone (zoneinfo), so "every weekday
at 09:00" stays at 09:00 across daylight-saving changes. Per RFC 5545 §3.3.5 a local time that
occurs twice (autumn overlap) means its first occurrence, and a local time that does not exist
(spring gap) is read with the offset before the gap (02:30 becomes 03:30). Occurrences are
returned as Unix milliseconds, strictly increasing (a gap can map two local times onto one
instant; the duplicate is dropped).

No trio, no I/O: everything here takes ``now`` as an argument and is tested with fixed clocks.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule as _rr

__all__ = ["Schedule", "ScheduleError", "cron_to_rrule", "local_zone_name", "on_the_hour", "parse"]


class ScheduleError(ValueError):
    """The rule, its DTSTART or its time zone is invalid; the message says which and why."""


_DTSTART = re.compile(
    r"^DTSTART(?:;TZID=(?P<tzid>[^:;]+))?(?:;VALUE=DATE-TIME)?:"
    r"(?P<value>\d{8}T\d{6})(?P<z>Z?)$", re.IGNORECASE)
_UNITS = {_rr.MINUTELY: timedelta(minutes=1), _rr.HOURLY: timedelta(hours=1),
          _rr.DAILY: timedelta(days=1), _rr.WEEKLY: timedelta(weeks=1)}
_WEEK = timedelta(weeks=1)


def local_zone_name() -> str:
    """The machine's IANA zone: ``$TZ``, else the /etc/localtime link, else ``UTC``."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _zone_ok(tz):
        return tz
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    parts = Path(target).parts
    if "zoneinfo" in parts:
        name = "/".join(parts[parts.index("zoneinfo") + 1:])
        if name and _zone_ok(name):
            return name
    return "UTC"


def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}; use an IANA name such as "
                            "'Europe/Berlin' or 'UTC'") from None


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed rule. Build with :func:`parse`."""

    text: str
    tz: ZoneInfo
    dtstart: datetime
    rule: _rr.rrule
    #: Whole weeks (or the rule's period) by which the anchor may move without changing the
    #: occurrences after it; None when the rule has no such period (COUNT, BYMONTH, ...).
    period: timedelta | None

    def occurrences(self, after_ms: int) -> Iterator[int]:
        """Occurrences strictly after ``after_ms``, increasing, as Unix ms."""
        after = datetime.fromtimestamp(after_ms / 1000, UTC).astimezone(self.tz)
        rule = self.rule
        if self.period is not None and after - self.dtstart > 2 * self.period:
            # Move the anchor forward by whole periods (wall-clock), so a rule anchored years
            # ago does not iterate through every past occurrence.
            steps = (after.replace(tzinfo=None) - self.dtstart.replace(tzinfo=None)) // self.period
            rule = rule.replace(dtstart=self.dtstart + (steps - 1) * self.period)
        last = after_ms
        # The candidate is computed in wall time; search from a little before so an instant
        # whose wall time lies in a gap or overlap is not skipped.
        start = after - timedelta(hours=3)
        for dt in rule.xafter(start.replace(tzinfo=self.tz), inc=False):
            ms = _ms(dt)
            if ms > last:
                last = ms
                yield ms

    def next_after(self, after_ms: int) -> int | None:
        return next(self.occurrences(after_ms), None)

    def upcoming(self, after_ms: int, count: int) -> list[int]:
        out = []
        for ms in self.occurrences(after_ms):
            out.append(ms)
            if len(out) >= count:
                break
        return out

    def min_gap_seconds(self, after_ms: int, samples: int = 50) -> float | None:
        """The shortest distance between the next ``samples`` occurrences (None: fewer than 2)."""
        times = self.upcoming(after_ms, samples)
        if len(times) < 2:
            return None
        return min(b - a for a, b in itertools.pairwise(times)) / 1000


def parse(text: str, *, tz_name: str, anchor_ms: int) -> Schedule:
    """Parse ``text`` (an RRULE, optionally with a DTSTART line) in zone ``tz_name``.

    ``anchor_ms`` is the DTSTART used when the text has none (the automation's creation time,
    truncated to the minute).

    Raises:
        ScheduleError: with a message naming what is wrong.
    """
    tz = zone(tz_name)
    lines = [ln.strip() for ln in text.replace("\\n", "\n").splitlines() if ln.strip()]
    if not lines:
        raise ScheduleError("the rrule is empty; e.g. 'FREQ=DAILY;BYHOUR=9;BYMINUTE=0'")
    if len(lines) == 1 and (suggested := cron_to_rrule(lines[0])) is not None:
        raise ScheduleError(f"{lines[0]!r} is a cron expression, not an RRULE; as an RRULE it "
                            f"is {suggested!r}")
    dtstart: datetime | None = None
    rules: list[str] = []
    for line in lines:
        upper = line.upper()
        if upper.startswith("DTSTART"):
            if dtstart is not None:
                raise ScheduleError("the rrule has two DTSTART lines")
            dtstart = _parse_dtstart(line, tz)
        elif upper.startswith("RRULE:"):
            rules.append(line[6:])
        elif upper.startswith("FREQ=") or ";FREQ=" in upper:
            rules.append(line)
        elif len(lines) > 1:
            raise ScheduleError(f"unsupported line in rrule: {line!r} (only DTSTART and RRULE)")
        else:
            raise ScheduleError(f"not an RRULE: {line!r}; an RRULE looks like "
                                "'FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9;BYMINUTE=0' (RFC 5545), "
                                "optionally after a DTSTART line")
    if len(rules) != 1:
        raise ScheduleError(f"the rrule must contain exactly one RRULE, found {len(rules)}")
    if dtstart is None:
        anchor = datetime.fromtimestamp(anchor_ms // 60_000 * 60, UTC).astimezone(tz)
        dtstart = anchor.replace(second=0, microsecond=0)
    rules[0] = on_the_hour(rules[0])
    try:
        rule = _rr.rrulestr(rules[0], dtstart=dtstart, ignoretz=False)
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"invalid rrule {rules[0]!r}: {exc}") from None
    if not isinstance(rule, _rr.rrule):  # pragma: no cover - rrulestr without forceset
        raise ScheduleError("the rrule must be a single rule")
    return Schedule(text=text, tz=tz, dtstart=dtstart, rule=rule, period=_period(rule))


def on_the_hour(rule: str) -> str:
    """``BYHOUR`` without ``BYMINUTE`` means on the hour: ``FREQ=DAILY;BYHOUR=9`` is 09:00, not
    09:<the minute the automation was created> (what RFC 5545 would take from DTSTART, and never
    what a person writing it means). A ``BYSECOND`` is left as written."""
    parts = {p.split("=", 1)[0].strip().upper() for p in rule.split(";") if p.strip()}
    if "BYHOUR" in parts and "BYMINUTE" not in parts:
        return rule.rstrip(";") + ";BYMINUTE=0"
    return rule


_CRON_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
                "@annually": "0 0 1 1 *"}
_CRON_NAMES = {**{d: str(i) for i, d in enumerate(
    ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}, **{m: str(i) for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1)}}
_RRULE_DAYS = ["SU", "MO", "TU", "WE", "TH", "FR", "SA", "SU"]


def _cron_field(text: str, low: int, high: int) -> list[int] | None:
    """A cron field as the sorted values it allows (None: every value, or not a cron field)."""
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.lower().split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else 0
        if step_text and not step:
            raise ValueError(part)
        if base == "*":
            start, end = low, high
        else:
            a, _, b = base.partition("-")
            a, b = _CRON_NAMES.get(a, a), _CRON_NAMES.get(b, b)
            if not a.isdigit() or (b and not b.isdigit()):
                raise ValueError(part)
            start, end = int(a), int(b) if b else (high if step else int(a))
        if not low <= start <= end <= high:
            raise ValueError(part)
        values.update(range(start, end + 1, step or 1))
    return sorted(values)


def cron_to_rrule(text: str) -> str | None:
    """The RRULE for a five-field cron expression (or @daily & co.), None when ``text`` is not
    one or has no exact RRULE (day-of-month *and* day-of-week: cron ORs them)."""
    fields = _CRON_MACROS.get(text.strip().lower(), text).split()
    if len(fields) != 5 or "=" in text:
        return None
    try:
        minute, hour, dom, month, dow = (
            _cron_field(f, lo, hi) for f, (lo, hi) in
            zip(fields, [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)], strict=True))
    except ValueError:
        return None
    if dom is not None and dow is not None:
        return None
    freq = "MINUTELY" if minute is None else "HOURLY" if hour is None else \
        "WEEKLY" if dow is not None else "MONTHLY" if dom is not None else "DAILY"
    parts = [f"FREQ={freq}"]
    if month is not None:
        parts.append("BYMONTH=" + ",".join(map(str, month)))
    if dom is not None:
        parts.append("BYMONTHDAY=" + ",".join(map(str, dom)))
    if dow is not None:
        parts.append("BYDAY=" + ",".join(dict.fromkeys(_RRULE_DAYS[d] for d in dow)))
    if hour is not None:
        parts.append("BYHOUR=" + ",".join(map(str, hour)))
    if minute is not None:
        parts.append("BYMINUTE=" + ",".join(map(str, minute)))
    return ";".join(parts)


def _parse_dtstart(line: str, tz: ZoneInfo) -> datetime:
    m = _DTSTART.match(line)
    if not m:
        raise ScheduleError(f"invalid DTSTART {line!r}; e.g. 'DTSTART;TZID=Europe/Berlin:"
                            "20260101T090000' or 'DTSTART:20260101T080000Z'")
    try:
        naive = datetime.strptime(m["value"], "%Y%m%dT%H%M%S")
    except ValueError:
        raise ScheduleError(f"invalid DTSTART date-time {m['value']!r}") from None
    if m["z"]:
        return naive.replace(tzinfo=UTC).astimezone(tz)
    if m["tzid"]:
        # A DTSTART in another zone fixes the instant; occurrences follow the automation's zone.
        return naive.replace(tzinfo=zone(m["tzid"])).astimezone(tz)
    return naive.replace(tzinfo=tz)


def _period(rule: _rr.rrule) -> timedelta | None:
    """How far the anchor can move (whole weeks, or whole rule intervals) without any effect."""
    r: Any = rule  # dateutil has no public accessors for a rule's parts
    freq = r._freq
    if r._count is not None or freq not in _UNITS:
        return None
    if any(getattr(r, f"_{name}") for name in
           ("bymonth", "bymonthday", "bynmonthday", "byyearday", "byweekno", "bysetpos",
            "byeaster")):
        return None
    unit = _UNITS[freq]
    interval = int(r._interval)
    # Both the rule's own step (interval units) and the week (BYDAY) must line up.
    step_s = int((unit * interval).total_seconds())
    week_s = int(_WEEK.total_seconds())
    return timedelta(seconds=step_s * week_s // math.gcd(step_s, week_s))
