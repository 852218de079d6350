"""What a client session and the method handlers may use of the daemon: a typed context.

:class:`DaemonContext` is a ``Protocol``; ``Daemon`` satisfies it structurally and is the only
implementation. Sessions and handlers are typed against it, never against ``Daemon``, so nothing
under ``codexd/`` but the command line imports ``codexd.daemon`` (a layering test keeps it so),
and a test can hand a session a context of its own making.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from codexd.approvals import ApprovalBook
    from codexd.appserver.supervisor import AppServer
    from codexd.audit import AuditLog
    from codexd.automations.service import AutomationService
    from codexd.config import Config
    from codexd.events import EventHub
    from codexd.faults import Faults
    from codexd.git.jobs import GitJobs
    from codexd.git.service import GitService
    from codexd.retention import Retention
    from codexd.runs.service import RunService
    from codexd.session.routes import Route
    from codexd.stats import Stats
    from codexd.store import Store
    from codexd.terminal.host import TerminalHost, Viewer
    from codexd.tokens import TokenBook
    from codexd.transport.frontend import FrontendListener
    from codexd.watches import Watches
    from codexd.workspaces import Workspaces


class Peer(Protocol):
    """A connected client as the daemon-wide view sees it (a session satisfies it)."""

    @property
    def id(self) -> int: ...


class DaemonContext(Protocol):
    # The services.
    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> Store: ...
    @property
    def events(self) -> EventHub: ...
    @property
    def approvals(self) -> ApprovalBook: ...
    @property
    def terminals(self) -> TerminalHost: ...
    @property
    def automations(self) -> AutomationService: ...
    @property
    def runs(self) -> RunService: ...
    @property
    def retention(self) -> Retention: ...
    @property
    def appserver(self) -> AppServer: ...
    @property
    def faults(self) -> Faults: ...
    @property
    def tokens(self) -> TokenBook: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def workspaces(self) -> Workspaces: ...
    @property
    def git(self) -> GitService: ...
    @property
    def git_jobs(self) -> GitJobs: ...
    @property
    def watches(self) -> Watches: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def routes(self) -> dict[str, Route]: ...
    @property
    def sessions(self) -> Collection[Peer]: ...

    # What daemon/status reports.
    @property
    def state_dir(self) -> Path: ...
    @property
    def socket_path(self) -> Path: ...
    @property
    def wire_socket_path(self) -> Path | None: ...
    @property
    def control_socket_path(self) -> Path | None: ...
    @property
    def frontends(self) -> FrontendListener | None: ...
    @property
    def db_path(self) -> Path: ...
    @property
    def config_source(self) -> Path | None: ...
    @property
    def started_at_iso(self) -> str: ...
    @property
    def started_monotonic(self) -> float: ...
    @property
    def shutting_down(self) -> bool: ...
    @property
    def previous_run_unclean(self) -> bool: ...

    def publish(self, method: str, params: Any, *, thread_id: str | None = None,
                exclude: Peer | None = None,
                emitted_at_ms: int | None = None) -> None: ...

    def forwards(self, method: str) -> bool: ...

    def spawn(self, coro: Awaitable[None], kind: str = "task") -> None: ...

    def request_shutdown(self, reason: str) -> None: ...

    # A session tells its owner; the owner tells the features keyed by session.
    def session_drained(self, session: Viewer) -> None: ...
