"""The per-client output queue: direct writes from the event loop and from the stdout pump
thread never reorder or interleave bytes, even when the socket is full."""

from __future__ import annotations

import socket

import trio

from codexd.transport.outqueue import BUSY, OutputQueue


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return a, b


async def _writer(q: OutputQueue, sock: socket.socket) -> None:
    """The session's writer task: drain the queue to the socket."""
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    while data := await q.get_batch():
        await stream.send_all(data)
        q.written()


def _drain(sock: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += sock.recv(size - len(out))
    return bytes(out)


async def test_direct_write_when_idle_and_busy_while_a_batch_is_out() -> None:
    a, b = _pair()
    q = OutputQueue(1 << 20, a.fileno())
    assert q.write_now(b"one\n") == 0
    assert b.recv(100) == b"one\n"
    assert q.put(b"two\n")
    # Something is queued: a direct write would overtake it.
    assert q.write_now(b"three\n") == BUSY
    batch = await q.get_batch()
    # The writer holds a batch it has not written yet: still busy.
    assert q.write_now(b"three\n") == BUSY
    a.send(batch)
    q.written()
    assert q.write_now(b"three\n") == 0
    assert _drain(b, 10) == b"two\nthree\n"
    q.detach_fd()
    assert q.write_now(b"four\n") == BUSY  # the socket is closing: queue (or drop) instead
    a.close()
    b.close()


async def test_a_full_socket_queues_the_rest_first_and_the_order_holds() -> None:
    a, b = _pair()
    q = OutputQueue(1 << 24, a.fileno())
    big = bytes(range(256)) * 2048  # 512 kB: far more than the socket takes
    rest = q.write_now(big)
    assert 0 < rest < len(big)
    assert q.queued_bytes == rest
    q.wake()
    # Later output queues behind the remainder.
    assert q.write_now(b"after\n") == BUSY
    assert q.put(b"after\n")
    received = bytearray()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_writer, q, a)
        while len(received) < len(big) + 6:
            received += await trio.to_thread.run_sync(b.recv, 1 << 20)
        q.close()
    assert bytes(received) == big + b"after\n"
    a.close()
    b.close()


async def test_writes_from_two_threads_never_interleave_or_reorder() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    q = OutputQueue(1 << 24, a.fileno())
    messages = [b"%d-%s\n" % (i, b"x" * (i * 7 % 300)) for i in range(6000)]
    total = sum(len(m) for m in messages)

    def produce(k: int) -> None:
        # What the stdout pump does: write at once, else hand the bytes to the event loop.
        for m in messages[k::2]:
            rest = q.write_now(m)
            if rest == BUSY:
                trio.from_thread.run_sync(q.put, m)
            elif rest > 0:
                trio.from_thread.run_sync(q.wake)

    received = bytearray()
    all_read = trio.Event()

    def read() -> None:
        while len(received) < total:
            received.extend(b.recv(1 << 16))
        trio.from_thread.run_sync(all_read.set)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_writer, q, a)
        nursery.start_soon(trio.to_thread.run_sync, read)
        async with trio.open_nursery() as producers:
            for k in (0, 1):
                producers.start_soon(trio.to_thread.run_sync, produce, k)
        with trio.fail_after(30):
            await all_read.wait()
        q.close()
    lines = [line + b"\n" for line in bytes(received).split(b"\n")[:-1]]
    # Every message arrived whole (no partial write was interleaved with another)...
    assert sorted(lines) == sorted(messages)
    # ...and each thread's messages in the order it wrote them.
    for k in (0, 1):
        mine = set(messages[k::2])
        assert [m for m in lines if m in mine] == messages[k::2]
    a.close()
    b.close()


async def test_send_writes_when_idle_queues_behind_a_batch_and_refuses_past_the_limit() -> None:
    a, b = _pair()
    q = OutputQueue(64, a.fileno())
    assert q.send(b"now\n")
    assert b.recv(100) == b"now\n"
    assert q.put(b"first\n")
    assert q.send(b"second\n")  # queued behind "first", not written ahead of it
    assert q.queued_bytes == len(b"first\nsecond\n")
    assert not q.send(b"x" * 100) and q.overflowed
    assert await q.get_batch() == b"first\nsecond\n"
    a.close()
    b.close()


async def test_overflow_notice_follows_a_whole_message_never_a_cut_one() -> None:
    """Regression: replacing the queue on overflow dropped the unsent tail of a message the
    client had started reading, so it read one invalid JSON line before the notice."""
    a, b = _pair()
    q = OutputQueue(1 << 24, a.fileno())
    big = b'{"m":"' + b"x" * 300_000 + b'"}\n'
    rest = q.write_now(big)
    assert 0 < rest < len(big)  # the socket took part of it
    q.put(b'{"m":"later"}\n')
    q.replace_with(b'{"method":"events/overflow"}\n')
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_writer, q, a)
        got = await trio.to_thread.run_sync(
            _drain, b, len(big) + len(b'{"method":"events/overflow"}\n'))
    assert got.split(b"\n")[:-1] == [big.rstrip(b"\n"), b'{"method":"events/overflow"}']
    a.close()
    b.close()
