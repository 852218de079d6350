"""Usage and rate limits of the provider CLIs, and when they reset. Pure.

- **codex** ``exec --json``: a ``turn.failed`` (or ``error``) message "You've hit your usage
  limit. … try again at 5:15 PM." (minute precision, local time; "at Jul 9th, 2026 1:47 AM" when
  not today), "exceeded retry limit, last status: 429 Too Many Requests" (a rate limit with no
  time). The exact reset is in the session's rollout file: the last ``token_count`` event's
  ``rate_limits`` (``primary``/``secondary`` with ``used_percent`` and ``resets_at``, the same
  data as the app-server's ``account/rateLimits/updated``): :func:`from_rollout`.
- **claude** ``-p --output-format stream-json``: a ``rate_limit_event`` whose
  ``rate_limit_info`` has ``status: "rejected"`` and ``resetsAt`` (Unix seconds), then a
  ``result`` with ``api_error_status: 429`` ("You've hit your 5-hour limit · resets 5:16pm").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_USAGE = re.compile(r"usage limit|hit your (?:[\w-]+ )?limit|rate limit|429 Too Many Requests",
                    re.I)
_AT = re.compile(r"try again at ([^.\n]+?)\.?\s*$", re.I)
_IN = re.compile(r"try again in\s+(?:~\s*)?(\d+)\s*(second|sec|minute|min|hour|day)s?", re.I)
_UNIT = {"second": 1, "sec": 1, "minute": 60, "min": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True, slots=True)
class Limit:
    """A run stopped at a provider's limit."""

    message: str
    #: When it resets (Unix ms); None: the provider did not say.
    reset_at: int | None = None
    #: Where the reset time came from: "rolloutRateLimits", "message", "rateLimitEvent",
    #: "appServer", or "" when unknown.
    source: str = ""


def is_limit_message(text: str) -> bool:
    return bool(_USAGE.search(text or ""))


def from_codex_message(text: str, now: dt.datetime) -> Limit | None:
    """The limit a codex error message announces (``now``: aware, local time zone)."""
    if not is_limit_message(text):
        return None
    m = _IN.search(text)
    if m:
        seconds = int(m.group(1)) * _UNIT[m.group(2).lower()]
        return Limit(text, int((now.timestamp() + seconds) * 1000), "message")
    m = _AT.search(text)
    if not m:
        return Limit(text)
    when = _parse_time(m.group(1), now)
    return Limit(text, None if when is None else int(when * 1000), "message")


def _parse_time(words: str, now: dt.datetime) -> float | None:
    """Unix seconds of "5:15 PM" / "Jul 9th, 2026 1:47 AM" as codex prints them: the end of
    that minute (codex rounds down), tomorrow when a bare time has passed."""
    from dateutil import parser

    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", words.strip())
    try:
        parsed = parser.parse(cleaned, default=now.replace(minute=0, second=0,
                                                           microsecond=0))
    except (ValueError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=now.tzinfo)
    end = parsed.timestamp() + 60
    has_date = bool(re.search(r"\d{4}|[A-Za-z]{3,}\s+\d|\b(?:mon|tue|wed|thu|fri|sat|sun)",
                              cleaned, re.I))
    if not has_date and end <= now.timestamp():
        end += 86400
    elif has_date and not re.search(r"\d{4}", cleaned) and end <= now.timestamp():
        end = parsed.replace(year=parsed.year + 1).timestamp() + 60  # "Jan 3" in December
    return end


_RESETS = re.compile(r"resets\s+(?P<when>[^(\n]+?)\s*(?:\((?P<tz>[^)]+)\))?\s*$", re.I)
_SPAN = re.compile(r"(\d+)\s*([dhms])", re.I)


def from_claude_message(text: str, now: dt.datetime) -> int | None:
    """The reset (Unix ms) in claude's "You've hit your 5-hour limit · resets 5:16pm (UTC)"
    ("resets in 1d 5h", "resets Sep 24 at 3pm (Australia/Brisbane)"): the end of that minute,
    tomorrow when a bare time has passed."""
    m = _RESETS.search(text or "")
    if not m:
        return None
    when = m.group("when").strip()
    if when.lower().startswith("in "):
        seconds = sum(int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u.lower()]
                      for n, u in _SPAN.findall(when))
        return int((now.timestamp() + seconds) * 1000) if seconds else None
    local = now
    if m.group("tz"):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            local = now.astimezone(ZoneInfo(m.group("tz").strip()))
    when = re.sub(r"\bat\b", " ", when)
    end = _parse_time(when, local)
    return None if end is None else int(end * 1000)


def from_transcript(lines: Iterable[str]) -> int | None:
    """The reset (Unix ms) of the last usage-limit error in a claude session transcript."""
    found: int | None = None
    for line in lines:
        if "resetsAt" not in line:
            continue
        m = re.search(r'"resetsAt"\s*:\s*(\d+)', line)
        if m:
            value = int(m.group(1))
            found = value * 1000 if value < 1e11 else value
    return found


def from_rollout(lines: Iterable[str]) -> int | None:
    """The reset (Unix ms) of the exhausted window in a codex rollout's last rate-limit
    snapshot; None without one."""
    last: dict[str, Any] | None = None
    for line in lines:
        if '"rate_limits"' not in line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        payload = obj.get("payload") if isinstance(obj, dict) else None
        limits = payload.get("rate_limits") if isinstance(payload, dict) else None
        if isinstance(limits, dict):
            last = limits
    return None if last is None else exhausted_reset(last)


def exhausted_reset(limits: dict[str, Any]) -> int | None:
    """The latest ``resets_at`` (or ``resetsAt``) among windows at 100% (Unix ms)."""
    best: int | None = None
    for key in ("primary", "secondary"):
        window = limits.get(key)
        if not isinstance(window, dict):
            continue
        used = window.get("used_percent", window.get("usedPercent"))
        reset = window.get("resets_at", window.get("resetsAt"))
        if isinstance(used, (int, float)) and used >= 100 and isinstance(reset, (int, float)):
            ms = int(reset * 1000) if reset < 1e11 else int(reset)
            best = ms if best is None else max(best, ms)
    return best
