"""The trio/asyncio boundary the temporal executor and `codexd worker` stand on: results,
errors and cancellation cross it both ways, and a cancelled side never leaks work."""

from __future__ import annotations

import asyncio

import pytest
import trio

from codexd.fleet.bridge import AsyncioThread, TrioPortal, call_trio


async def test_trio_awaits_asyncio_results_errors_and_cancels_it():
    th = AsyncioThread("test-asyncio")
    th.start()
    try:
        async def double(x: int) -> int:
            await asyncio.sleep(0.01)
            return 2 * x

        assert await th.call(double, 21) == 42

        async def fail() -> None:
            raise LookupError("from asyncio")

        with pytest.raises(LookupError, match="from asyncio"):
            await th.call(fail)

        seen: list[str] = []

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        with trio.move_on_after(0.2):
            await th.call(forever)
        assert seen == ["cancelled"]  # cancelled on its loop before call() gave up

        async def swallow() -> str:  # a coroutine that turns cancellation into an error
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise RuntimeError("cancelled, said differently") from None
            return "never"

        with trio.fail_after(5):  # not the 10 s shielded wait: it ended at once
            with trio.move_on_after(0.1):
                await th.call(swallow)
    finally:
        th.stop()


async def test_asyncio_awaits_trio_and_its_cancel_runs_trio_finally_first():
    th = AsyncioThread("test-asyncio")
    th.start()
    order: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            portal = TrioPortal(trio.lowlevel.current_trio_token(), nursery)

            async def trio_add(a: int, b: int) -> int:
                await trio.sleep(0.01)
                return a + b

            async def trio_forever() -> None:
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(0.05)  # a process tree being killed
                    order.append("trio finally")

            async def on_asyncio() -> int:
                total = await call_trio(portal, trio_add, 2, 3)
                task = asyncio.ensure_future(call_trio(portal, trio_forever))
                await asyncio.sleep(0.05)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    order.append("asyncio saw the cancel")
                return total

            assert await th.call(on_asyncio) == 5
        assert order == ["trio finally", "asyncio saw the cancel"]
    finally:
        th.stop()
