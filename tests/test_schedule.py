"""Schedule maths with fixed clocks: zones, DST gaps and overlaps, DTSTART forms, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from codexd.automations.schedule import ScheduleError, cron_to_rrule, parse


def ms(s: str, tz: str = "UTC") -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def local(t: int, tz: str) -> str:
    return datetime.fromtimestamp(t / 1000, UTC).astimezone(ZoneInfo(tz)).isoformat()


def upcoming(rule: str, tz: str, after: str, n: int, anchor: str | None = None) -> list[str]:
    s = parse(rule, tz_name=tz, anchor_ms=ms(anchor or after, tz))
    return [local(t, tz) for t in s.upcoming(ms(after, tz), n)]


def test_weekday_mornings_in_berlin_stay_at_nine_across_the_spring_change():
    got = upcoming("RRULE:FREQ=WEEKLY;BYHOUR=9;BYMINUTE=0;BYDAY=MO,TU,WE,TH,FR",
                   "Europe/Berlin", "2026-03-26T12:00:00", 4)
    assert got == ["2026-03-27T09:00:00+01:00", "2026-03-30T09:00:00+02:00",
                   "2026-03-31T09:00:00+02:00", "2026-04-01T09:00:00+02:00"]


def test_a_time_in_the_spring_gap_moves_forward_by_the_gap():
    # 02:30 does not exist on 2026-03-29 in Berlin: RFC 5545 reads it with the offset before
    # the gap, i.e. 03:30 CEST.
    got = upcoming("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "Europe/Berlin", "2026-03-28T12:00:00", 3)
    assert got == ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00",
                   "2026-03-31T02:30:00+02:00"]


def test_a_time_in_the_autumn_overlap_fires_once_at_its_first_occurrence():
    got = upcoming("FREQ=DAILY;BYHOUR=1;BYMINUTE=30", "America/New_York",
                   "2026-10-31T12:00:00", 3)
    # 2026-11-01 01:30 happens twice in New York; only the first (EDT, -04:00) fires.
    assert got == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00",
                   "2026-11-03T01:30:00-05:00"]


def test_hourly_rule_through_the_spring_gap_never_repeats_an_instant():
    s = parse("FREQ=HOURLY;BYMINUTE=0", tz_name="America/New_York",
              anchor_ms=ms("2026-03-07T00:00:00", "America/New_York"))
    times = s.upcoming(ms("2026-03-08T00:30:00", "America/New_York"), 4)
    assert times == sorted(set(times))
    assert [local(t, "America/New_York") for t in times] == [
        "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00", "2026-03-08T05:00:00-04:00"]


def test_dtstart_forms_and_anchor():
    # TZID form: 09:00 New York is 15:00 Berlin; occurrences follow the automation's zone.
    got = upcoming("DTSTART;TZID=America/New_York:20260105T090000\nRRULE:FREQ=WEEKLY;BYDAY=MO",
                   "Europe/Berlin", "2026-01-01T00:00:00", 2)
    assert got == ["2026-01-05T15:00:00+01:00", "2026-01-12T15:00:00+01:00"]
    # UTC form and a literal "\n" as written in a one-line TOML string.
    got = upcoming("DTSTART:20260601T060000Z\\nRRULE:FREQ=DAILY;COUNT=2", "UTC",
                   "2026-05-01T00:00:00", 5)
    assert got == ["2026-06-01T06:00:00+00:00", "2026-06-02T06:00:00+00:00"]
    # Without DTSTART the anchor (creation time, truncated to the minute) sets minute and second.
    got = upcoming("FREQ=HOURLY", "UTC", "2026-05-01T10:00:00", 2, anchor="2026-05-01T08:17:42")
    assert got == ["2026-05-01T10:17:00+00:00", "2026-05-01T11:17:00+00:00"]


def test_rules_anchored_long_ago_are_fast_and_exact():
    anchor = "2016-01-01T00:03:00"
    s = parse("FREQ=MINUTELY;INTERVAL=7", tz_name="Europe/Paris",
              anchor_ms=ms(anchor, "Europe/Paris"))
    after = ms("2026-07-01T12:00:00", "Europe/Paris")
    first = s.next_after(after)
    assert first is not None
    # Check against the definition: a whole number of 7-minute wall-clock steps from the anchor.
    wall = datetime.fromtimestamp(first / 1000, UTC).astimezone(ZoneInfo("Europe/Paris"))
    start = datetime.fromisoformat(anchor)
    assert (wall.replace(tzinfo=None) - start).total_seconds() % 420 == 0
    assert 0 < first - after <= 420_000


def test_count_and_until_end_the_schedule():
    s = parse("FREQ=DAILY;COUNT=2", tz_name="UTC", anchor_ms=ms("2026-01-01T09:00:00"))
    assert len(s.upcoming(ms("2025-12-31T00:00:00"), 10)) == 2
    assert s.next_after(ms("2026-01-03T00:00:00")) is None
    s = parse("FREQ=DAILY;UNTIL=20260103T000000Z", tz_name="Europe/Berlin",
              anchor_ms=ms("2026-01-01T09:00:00", "Europe/Berlin"))
    assert len(s.upcoming(ms("2025-12-31T00:00:00"), 10)) == 2


@pytest.mark.parametrize(("rule", "tz", "message"), [
    ("", "UTC", "empty"),
    ("FREQ=FORTNIGHTLY", "UTC", "invalid rrule"),
    ("FREQ=DAILY;BYHOUR=25", "UTC", "invalid rrule"),
    ("RRULE:FREQ=DAILY\nRRULE:FREQ=WEEKLY", "UTC", "exactly one RRULE"),
    ("EXDATE:20260101T000000Z\nRRULE:FREQ=DAILY", "UTC", "unsupported line"),
    ("DTSTART:2026-01-01\nRRULE:FREQ=DAILY", "UTC", "invalid DTSTART"),
    ("FREQ=DAILY", "Mars/Olympus", "unknown time zone"),
    ("every day at nine", "UTC", "not an RRULE"),
    ("30 8 * * 1-5", "UTC", "cron expression, not an RRULE; as an RRULE it is "
                            "'FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=8;BYMINUTE=30'"),
])
def test_bad_rules_say_what_is_wrong(rule, tz, message):
    with pytest.raises(ScheduleError, match=message):
        parse(rule, tz_name=tz, anchor_ms=0)


def test_min_gap_reports_the_tightest_spacing():
    s = parse("FREQ=DAILY;BYHOUR=9,10;BYMINUTE=0", tz_name="UTC", anchor_ms=0)
    assert s.min_gap_seconds(ms("2026-01-01T00:00:00")) == 3600


@pytest.mark.parametrize(("cron", "rrule"), [
    ("0 9 * * *", "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"),
    ("*/15 * * * *", "FREQ=HOURLY;BYMINUTE=0,15,30,45"),
    ("0 0 1 * *", "FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=0;BYMINUTE=0"),
    ("0 9 * jan sun,sat", "FREQ=WEEKLY;BYMONTH=1;BYDAY=SU,SA;BYHOUR=9;BYMINUTE=0"),
    ("@hourly", "FREQ=HOURLY;BYMINUTE=0"),
    ("0 9 1 * 1", None),  # day of month and day of week: cron ORs them, an RRULE cannot
    ("FREQ=DAILY", None),
    ("61 * * * *", None),
])
def test_cron_expressions_map_to_the_same_times(cron, rrule):
    assert cron_to_rrule(cron) == rrule
    if rrule is not None:  # and the suggestion is a rule that parses
        parse(rrule, tz_name="UTC", anchor_ms=0)


def test_byhour_without_byminute_means_on_the_hour():
    anchor = ms("2026-01-01T07:42:00")  # created at 07:42: RFC 5545 alone would say 09:42
    s = parse("FREQ=DAILY;BYHOUR=9", tz_name="UTC", anchor_ms=anchor)
    assert s.upcoming(anchor, 2) == [ms("2026-01-01T09:00:00"), ms("2026-01-02T09:00:00")]
    hourly = parse("FREQ=HOURLY", tz_name="UTC", anchor_ms=anchor)  # no BYHOUR: as written
    assert hourly.next_after(anchor) == ms("2026-01-01T08:42:00")
