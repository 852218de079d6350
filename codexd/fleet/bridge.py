"""The boundary between trio (codexd) and asyncio (the Temporal SDK): a thread of its own.

The Temporal SDK is asyncio only, and codexd is trio. Rather than run one inside the other
(trio-asyncio), each keeps its own loop on its own thread and they meet here, explicitly:

- :class:`AsyncioThread` runs an asyncio loop on a dedicated daemon thread. Trio code awaits an
  asyncio coroutine with :meth:`AsyncioThread.call`: the coroutine runs on that loop, the trio
  task waits without blocking its thread, and cancelling the trio task cancels the coroutine.
- :func:`call_trio` is the other direction, for the worker's activities (asyncio) that run the
  run executor (trio) of the worker's main thread: it starts the trio function in a nursery
  there and awaits its result on the asyncio side; cancelling the asyncio task cancels it.

Nothing else crosses: objects that belong to one loop are never touched from the other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class AsyncioThread:
    """An asyncio event loop on a thread of its own (``name`` names the thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self.name}: the asyncio thread is not running")
        return self._loop

    def start(self) -> None:
        if self._thread is not None:
            return

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._ready.set()
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is left on the loop, stop it and join the thread (blocking)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop from any thread (no waiting)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` as a task on the loop and await it from trio. Cancelling the trio
        task cancels the asyncio task and waits (shielded, 10 s at most) until it has
        finished: nothing it started is still running when this returns."""
        token = trio.lowlevel.current_trio_token()
        loop = self.loop
        done = trio.Event()
        box: dict[str, asyncio.Task[T | None]] = {}
        abandoned = False

        async def wrapper() -> T | None:
            try:
                return await fn(*args)
            except BaseException:
                if abandoned:  # nobody waits for it: its error is not news
                    return None
                raise

        def start() -> None:
            task = loop.create_task(wrapper())
            box["task"] = task
            task.add_done_callback(lambda _t: _wake(token, done))

        def cancel() -> None:  # runs after start(): the loop's callbacks keep their order
            box["task"].cancel()

        loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except trio.Cancelled:
            abandoned = True
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(cancel)
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await done.wait()
            raise
        task = box["task"]
        if task.cancelled():
            raise RuntimeError(f"{self.name}: the task was cancelled on its own loop")
        return task.result()  # type: ignore[return-value]


def _wake(token: trio.lowlevel.TrioToken, event: trio.Event) -> None:
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(event.set)


class TrioPortal:
    """Where asyncio code starts trio work: a nursery on the trio thread, and its token."""

    def __init__(self, token: trio.lowlevel.TrioToken, nursery: trio.Nursery) -> None:
        self.token = token
        self.nursery = nursery


async def call_trio(portal: TrioPortal, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """From asyncio: run the trio function ``fn(*args)`` in the portal's nursery and await its
    result. Cancelling the awaiting asyncio task cancels the trio task and waits for it (its
    ``finally`` blocks run: a run's process tree is killed before this returns)."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[T] = loop.create_future()
    scope = trio.CancelScope()

    def settle(value: T | None, exc: BaseException | None) -> None:
        if result.done():
            return
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(value)  # type: ignore[arg-type]

    async def task() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            with scope:
                value = await fn(*args)
        except Exception as exc:
            error = exc
        finally:
            if scope.cancelled_caught and error is None:
                error = asyncio.CancelledError()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(settle, value, error)

    portal.token.run_sync_soon(portal.nursery.start_soon, task)
    try:
        return await asyncio.shield(result)
    except asyncio.CancelledError:
        if not result.done():
            portal.token.run_sync_soon(scope.cancel)
            with contextlib.suppress(BaseException):
                await result
        raise
