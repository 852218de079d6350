"""Handlers for ``client/visibility`` and ``notify/test``."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.notify.visibility import Visibility
from codexd.protocol.notify import (
    CLIENT_VISIBILITY,
    NOTIFY_TEST,
    ChannelResult,
    NotifyTestParams,
    NotifyTestResult,
    VisibilityParams,
    VisibilityResult,
)
from codexd.session import ClientSession


@handles(CLIENT_VISIBILITY)
def client_visibility(session: ClientSession, params: VisibilityParams) -> VisibilityResult:
    threads = frozenset(params.thread_ids) if params.thread_ids is not None else None
    session.visibility = Visibility(focused=params.focused, thread_ids=threads, all=params.all)
    return VisibilityResult(focused=params.focused,
                            thread_ids=sorted(threads) if threads is not None else None,
                            all=params.all)


@handles(NOTIFY_TEST, ordered=False)
async def notify_test(session: ClientSession, params: NotifyTestParams) -> NotifyTestResult:
    notify = session.ctx.notify
    configured = [c.name for c in notify.channels()]
    if params.channel is not None and params.channel not in configured:
        hint = {"program": "set [notify] program = [\"/path/to/script\"]",
                "desktop": "set [notify] desktop = \"on\" (or \"auto\" in a graphical session)",
                "webhook": "set [notify] webhook_url"}[params.channel]
        raise RpcError(ErrorCode.NOT_FOUND,
                       f"the {params.channel} channel is not configured: {hint}, then "
                       "reload the daemon (SIGHUP)",
                       {"configured": configured})
    if not configured:
        raise RpcError(ErrorCode.NOT_FOUND,
                       "no notification channel is configured: set [notify] program, desktop "
                       "or webhook_url in config.toml (docs/configuration.md), then "
                       "reload the daemon (SIGHUP)", {"configured": []})
    results = await notify.test(params.channel)
    return NotifyTestResult(results=[
        ChannelResult(channel=r.channel, ok=r.ok, error=r.error,  # type: ignore[arg-type]
                      duration_ms=r.duration_ms) for r in results])
