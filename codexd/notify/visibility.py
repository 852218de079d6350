"""What a client declared it shows (``client/visibility``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Visibility:
    focused: bool = False
    #: The threads on screen; None: the ones the client follows.
    thread_ids: frozenset[str] | None = None
    #: It shows everything (a console's overview): every event is suppressed while focused.
    all: bool = False
