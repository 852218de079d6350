"""Reading usage-limit reset times off what the CLIs print (the formats they use today)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from codexd.runs import limits

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 2, 17, 28, 40, tzinfo=UTC)


def at(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("text", "reset"), [
    # codex prints the minute it resets in (rounded down): the lane waits to its end.
    ("You\u2019ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit "
     "https://chatgpt.com/settings/usage to purchase more credits or try again at 5:35 PM.",
     at(2026, 12, 2, 17, 36)),
    ("You've hit your usage limit. Try again at 5:15 PM.", at(2026, 12, 3, 17, 16)),  # passed
    ("You've hit your usage limit for GPT-5.3-Codex-Spark. Switch to another model now, or "
     "try again at Jul 9th, 2027 1:47 AM.", at(2027, 7, 9, 1, 48)),
    ("You've hit your usage limit. Try again in 3 hours.", at(2026, 12, 2, 20, 28, 40)),
    ("exceeded retry limit, last status: 429 Too Many Requests", None),
])
def test_codex_messages(text: str, reset: int | None):
    found = limits.from_codex_message(text, NOW)
    assert found is not None and found.reset_at == reset


def test_an_ordinary_failure_is_no_limit():
    assert limits.from_codex_message("stream disconnected before completion", NOW) is None


@pytest.mark.parametrize(("text", "reset"), [
    ("You've hit your 5-hour limit · resets 5:29pm (UTC)", at(2026, 12, 2, 17, 30)),
    ("You've hit your session limit · resets in 1d 5h", at(2026, 12, 3, 22, 28, 40)),
    ("You've hit your weekly limit · resets Sep 24 at 3pm (Australia/Brisbane)",
     at(2027, 9, 24, 5, 1)),
    ("You've hit your weekly limit · resets Mon 12:00am (UTC)", at(2026, 12, 7, 0, 1)),
    ("API Error: Request rejected (429) · please try again later", None),
])
def test_claude_messages(text: str, reset: int | None):
    assert limits.from_claude_message(text, NOW) == reset


def test_the_exhausted_window_of_the_last_rollout_snapshot():
    def line(primary: float, secondary: float) -> str:
        return json.dumps({"type": "event_msg", "payload": {"type": "token_count", "info": None,
                           "rate_limits": {
                               "primary": {"used_percent": primary, "window_minutes": 300,
                                           "resets_at": 1796231707},
                               "secondary": {"used_percent": secondary,
                                             "window_minutes": 10080,
                                             "resets_at": 1796800000}}}})
    assert limits.from_rollout([line(40, 20), line(100, 63)]) == 1796231707000
    assert limits.from_rollout([line(100, 100)]) == 1796800000000  # both: the later one
    assert limits.from_rollout([line(100, 20), line(12, 20)]) is None  # no longer exhausted
    assert limits.from_rollout(["not json", "{}"]) is None
