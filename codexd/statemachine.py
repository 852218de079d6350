"""State machines as tables (h11's ``_state.py`` style): one dict of edges, one function.

Pure: no I/O. Every machine in codexd is an Enum of states, an Enum of inputs and a
``{(state, input): new_state}`` table; :func:`apply` refuses edges that are not in the table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

S = TypeVar("S", bound=enum.Enum)
I = TypeVar("I", bound=enum.Enum)  # noqa: E741


class BadTransition(Exception):
    """An input arrived in a state whose table has no edge for it."""


def apply(table: Mapping[tuple[S, I], S], state: S, event: I) -> S:
    try:
        return table[(state, event)]
    except KeyError:
        raise BadTransition(f"{event.value} is not allowed in state {state.value}") from None
