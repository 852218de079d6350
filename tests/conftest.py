"""Shared fixtures (the helpers they use live in tests/helpers/)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import Bridge, DaemonProc, make_bridge, make_daemon, short_tempdir


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProc]:
    d = make_daemon(short_tmp).start()
    yield d
    d.stop()
    # Shown by pytest only when the test failed: the daemon's side of the story.
    print("--- daemon log (last 40 lines) ---\n" + "\n".join(d.log().splitlines()[-40:]))


@pytest.fixture
def daemon_factory(short_tmp: Path) -> Iterator[object]:
    made: list[DaemonProc] = []

    def factory(**kw: object) -> DaemonProc:
        d = make_daemon(short_tmp, **kw)  # type: ignore[arg-type]
        made.append(d)
        return d

    yield factory
    for d in made:
        d.stop()


@pytest.fixture
def wire() -> Iterator[object]:
    """Open raw line sockets to a daemon; all are closed at teardown."""
    from tests.wire import Wire

    opened: list[Wire] = []

    def open_wire(d: DaemonProc, timeout: float = 10.0) -> Wire:
        w = Wire(d.socket, timeout)
        opened.append(w)
        return w

    yield open_wire
    for w in opened:
        w.close()


@pytest.fixture
def bridge(short_tmp: Path) -> Iterator[Bridge]:
    b = make_bridge(short_tmp)
    b.daemon.start()
    yield b
    b.daemon.stop()
    b.model.stop()  # type: ignore[attr-defined]
