"""A dedicated I/O thread on the hot path, stopped cleanly with its task.

A turn of trio's event loop costs tens of µs of Python; on a forwarded request's round trip there
are two (the client's request arriving, the app-server's answer arriving), which is most of what
codexd adds to it. The app-server's stdout is therefore read by a thread of its own, blocking in
``poll``, which writes answers to forwarded requests straight to the client and hands everything
else to the event loop in order (``AppServer._pump``). (A reader thread per client was measured
too and rejected: codexd's own methods then cross from thread to loop and back, which costs more
than it saves; see docs/performance.md.)
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio


async def run_reader_thread(fn: Callable[[int], None], name: str) -> None:
    """Run ``fn(stop_fd)`` on a thread of its own until it returns.

    ``fn`` must poll ``stop_fd`` with its input and return once it is readable, which happens
    when this task is cancelled. The call returns only after ``fn`` has returned, so whatever
    ``fn`` reads from (a socket, a pipe) may be closed right after. ``trio.from_thread.run``
    inside ``fn`` runs in this task and sees its cancellation.
    """
    stop_r, stop_w = os.pipe()

    async def stop_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            os.write(stop_w, b"x")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_when_cancelled)
            # Not abandoned on cancel: the thread must be gone before its fds are closed. Its
            # own limiter: it must not hold a token of the default pool for its whole life.
            await trio.to_thread.run_sync(fn, stop_r, limiter=trio.CapacityLimiter(1),
                                          thread_name=name)
            nursery.cancel_scope.cancel()
    finally:
        os.close(stop_w)
        os.close(stop_r)
