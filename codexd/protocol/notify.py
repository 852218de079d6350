"""Notifications (``client/visibility``, ``notify/test``): see codexd.notify."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from codexd.protocol.base import Params, Struct, method

ChannelName = Literal["program", "desktop", "webhook"]
ThreadId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class VisibilityParams(Params, frozen=True):
    #: A person is looking at this client now (its window is focused, its tab visible).
    focused: bool
    #: The threads it shows; omitted: the threads it follows (``thread/start|resume``,
    #: ``events/subscribe``).
    thread_ids: Annotated[list[ThreadId], msgspec.Meta(max_length=1000)] | None = None
    #: It shows everything (an overview): every notification is suppressed while it is focused.
    all: bool = False


class VisibilityResult(Struct, frozen=True):
    focused: bool
    thread_ids: list[str] | None
    all: bool


CLIENT_VISIBILITY = method(
    "client/visibility", VisibilityParams, VisibilityResult,
    "Declare what this client shows and whether it is focused: notifications about it are "
    "suppressed while it is.",
)


class NotifyTestParams(Params, frozen=True):
    #: Only this channel; omitted: every channel ``[notify]`` turns on.
    channel: ChannelName | None = None


class ChannelResult(Struct, frozen=True):
    channel: ChannelName
    ok: bool
    #: Why it failed, and what to do.
    error: str | None
    duration_ms: float


class NotifyTestResult(Struct, frozen=True):
    results: list[ChannelResult]


NOTIFY_TEST = method(
    "notify/test", NotifyTestParams, NotifyTestResult,
    "Send a test notification through each configured channel now and say how each went.",
)
