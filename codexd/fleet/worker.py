"""``codexd worker``: runs provider runs from a Temporal task queue on this machine.

A process of its own, on two loops with an explicit boundary (codexd.fleet.bridge): the main
thread is trio and runs what a local run runs (:class:`~codexd.runs.executor.LocalExecutor`:
this machine's ``codex``/``claude``, their process trees, typed and redacted events), the
events endpoint the user's codexd reads them from, and the socket claude's permission helper
asks; a dedicated thread is asyncio and runs the Temporal worker (the run workflow and the
``codexd.attempt`` activity). Each activity hands its attempt to the trio side and heartbeats
while it runs; cancelling the activity (the run was canceled) kills the attempt's tree first.

SIGTERM or SIGINT stops polling, stops the attempts in flight (their trees killed) and hands
each back to its workflow as ``WorkerShutdown``: the workflow retries it on another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import structlog
import trio
import trio_websocket

from codexd.children import ChildRegistry
from codexd.config import ExecutorSection, RunsSection, WorkerSection
from codexd.fleet import connect as fleet_connect
from codexd.fleet.bridge import AsyncioThread, TrioPortal, call_trio
from codexd.fleet.stream import AttemptStream, Streams
from codexd.fleet.types import (
    ACTIVITY,
    SIGNAL_STARTED,
    AttemptInput,
    AttemptResult,
    AttemptStarted,
)
from codexd.fsutil import private_dir
from codexd.protocol.runs import Run
from codexd.runs import artifacts, providers
from codexd.runs.capabilities import Catalog
from codexd.runs.executor import Attempt, LocalExecutor
from codexd.runs.secrets import SecretStore
from codexd.store import Store

log = structlog.get_logger("codexd.worker")
_run_dec = msgspec.json.Decoder(Run)
_enc = msgspec.json.Encoder()


@dataclass
class WorkerSettings:
    executor: ExecutorSection
    worker: WorkerSection
    runs: RunsSection
    state_dir: Path


class FleetWorker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.s = settings
        self.name = settings.worker.name or f"{socket.gethostname()}-{os.getpid()}"
        self.streams = Streams()
        self.thread = AsyncioThread("codexd-temporal-worker")
        self.endpoint = ""
        self.permission_socket = str(settings.state_dir / "permission.sock")
        self._store: Store | None = None
        self._executor: LocalExecutor | None = None
        self._portal: TrioPortal | None = None
        self._temporal_worker: Any = None
        self._worker_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._running: dict[tuple[str, int], trio.CancelScope] = {}
        #: Attempts in flight (for the stop message).
        self.in_flight = 0

    # ------------------------------------------------------------------------ the process

    async def run(self, *, task_status: trio.TaskStatus[FleetWorker] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        s = self.s
        private_dir(s.state_dir)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            self._store = await trio.to_thread.run_sync(Store.open, s.state_dir / "worker.db")
            try:
                await self._run(signals, task_status)
            finally:
                self._store.close()

    async def _run(self, signals: Any, task_status: trio.TaskStatus[FleetWorker]) -> None:
        s, store = self.s, self._store
        assert store is not None
        children = ChildRegistry()
        children.open(store, None)
        for survivor in await children.kill_survivors():
            log.warning("worker_orphan_killed", pid=survivor.pid, run_id=survivor.unit_id)
        secrets = SecretStore(s.runs.secret_store, s.state_dir)
        catalog = Catalog(lambda: store)
        self._secrets = secrets
        self._executor = LocalExecutor(lambda: s.runs, log=None,  # type: ignore[arg-type]
                                       secrets=secrets, children=children,
                                       snapshot=catalog.snapshot)
        self._executor.homes_dir = s.state_dir / "codex-homes"
        self._executor.permission_socket = self.permission_socket
        self._executor.inherit_tokens = True
        async with trio.open_nursery() as nursery:
            host, port = _host_port(s.worker.listen)
            server = await nursery.start(trio_websocket.serve_websocket, self.streams.serve,
                                         host, port, _server_tls(s.worker))
            scheme = "wss" if s.worker.tls_cert else "ws"
            self.endpoint = s.worker.advertise or f"{scheme}://{_url_host(host)}:{server.port}"
            await nursery.start(self._permission_server)
            self._portal = TrioPortal(trio.lowlevel.current_trio_token(), nursery)
            self.thread.start()
            try:
                await self.thread.call(self._start_temporal)
            except BaseException:
                self.thread.stop()
                raise
            log.info("worker_started", name=self.name, task_queue=s.executor.task_queue,
                     address=s.executor.address, endpoint=self.endpoint,
                     max_concurrent=s.worker.max_concurrent)
            task_status.started(self)
            async for signum in signals:
                log.info("worker_stopping", signal=signal.Signals(signum).name,
                         in_flight=self.in_flight)
                break
            self._stopping = True
            with trio.CancelScope(shield=True):
                await self.thread.call(self._stop_temporal)
            self.thread.stop()
            nursery.cancel_scope.cancel()
        log.info("worker_stopped", name=self.name)

    async def _start_temporal(self) -> None:
        """On the asyncio thread: connect, then poll the task queue until stopped."""
        from temporalio.worker import Worker

        from codexd.fleet.workflow import RunWorkflow

        client = await fleet_connect.client(self.s.executor)
        self._client = client
        self._temporal_worker = Worker(
            client, task_queue=self.s.executor.task_queue, workflows=[RunWorkflow],
            activities=[self._activity()], identity=self.name,
            max_concurrent_activities=self.s.worker.max_concurrent,
            # Heartbeats (and with them cancellation) reach the server within a second or two.
            max_heartbeat_throttle_interval=timedelta(seconds=1),
            default_heartbeat_throttle_interval=timedelta(seconds=1),
            graceful_shutdown_timeout=timedelta(seconds=0))
        self._worker_task = asyncio.get_running_loop().create_task(self._temporal_worker.run())

    async def _stop_temporal(self) -> None:
        if self._temporal_worker is not None:
            await self._temporal_worker.shutdown()
        if self._worker_task is not None:
            with contextlib.suppress(BaseException):
                await self._worker_task

    # ------------------------------------------------------------------------ the activity

    def _activity(self) -> Callable[[AttemptInput], Any]:
        from temporalio import activity
        from temporalio.exceptions import ApplicationError

        from codexd.fleet.workflow import HANDED_BACK

        @activity.defn(name=ACTIVITY)
        async def attempt(inp: AttemptInput) -> AttemptResult:
            assert self._portal is not None
            info = activity.info()
            stream = await call_trio(self._portal, self._open_stream, inp)
            await activity.client().get_workflow_handle(info.workflow_id or "").signal(
                SIGNAL_STARTED, AttemptStarted(attempt=inp.attempt, worker=self.name,
                                               endpoint=self.endpoint))
            interval = max((info.heartbeat_timeout or timedelta(seconds=10)).total_seconds()
                           / 4, 0.2)

            async def beat() -> None:
                while True:
                    activity.heartbeat(len(stream.events))
                    await asyncio.sleep(interval)

            beating = asyncio.get_running_loop().create_task(beat())
            self.in_flight += 1
            try:
                return await call_trio(self._portal, self._attempt, inp, stream)
            except asyncio.CancelledError:
                if activity.is_worker_shutdown() or self._stopping:
                    raise ApplicationError(f"worker {self.name} stopped", type=HANDED_BACK,
                                           non_retryable=True) from None
                raise
            finally:
                self.in_flight -= 1
                beating.cancel()

        return attempt

    async def _open_stream(self, inp: AttemptInput) -> AttemptStream:
        env = [v for v in (inp.run.get("request") or {}).get("env", {}).values()
               if isinstance(v, str) and len(v) >= 6]
        env += [v for v in (os.environ.get(var) for var in providers.TOKEN_ENV.values()) if v]
        stream = AttemptStream(inp.run_id, inp.attempt, inp.token_sha256, self._secrets.known,
                               env)
        self.streams.add(stream)
        return stream

    async def _attempt(self, inp: AttemptInput, stream: AttemptStream) -> AttemptResult:
        """On the trio thread: one attempt, like a local one (codexd.runs.service._execute)."""
        assert self._executor is not None
        data = dict(inp.run, attempt=inp.attempt, session_id=inp.session_id)
        run = _run_dec.decode(_enc.encode(data))
        executor = self._executor.with_log(stream)
        scope = trio.CancelScope()
        stream.on_cancel = lambda _by: scope.cancel()
        res: Attempt | None = None
        with scope:
            with trio.move_on_after(inp.timeout_seconds) as timer:
                res = await executor.attempt(run)
            if timer.cancelled_caught:
                res = Attempt("failed", reason="timeout", error=f"timed out after "
                              f"{inp.timeout_seconds:g} s; the process tree was killed")
        if res is None:  # the daemon's cancel, over the stream: the tree is gone already
            res = Attempt("canceled", reason="canceled")
        out = res.outcome
        items: list[artifacts.Artifact] = []
        if res.status in ("succeeded", "failed"):
            text = out.result_text if out.result_text is not None else out.last_message
            try:
                items = await trio.to_thread.run_sync(lambda: artifacts.collect(
                    text=text, structured=out.structured, has_structured=out.has_structured,
                    changed=out.changed, todos=out.todos, cwd=run.request.cwd))
            except Exception as exc:
                stream.emit(run.run_id, "run.warning", {
                    "message": f"the worker could not collect the run's artifacts: {exc}"})
        stream.end([(k, n, m, stream.redact(run.run_id, c)) for k, n, m, c in items])
        limit = res.limit
        return AttemptResult(
            status=res.status, attempt=inp.attempt, worker=self.name, reason=res.reason,
            error=res.error, exit_code=res.exit_code, retryable=res.retryable,
            resume_rejected=res.resume_rejected, session_id=out.session_id,
            result_text=out.result_text, last_message=out.last_message, usage=out.usage,
            structured=out.structured, has_structured=out.has_structured,
            changed=sorted(out.changed), todos=out.todos, failure=out.failure,
            saw_output=out.saw_output, limit_message=limit.message if limit else None,
            limit_reset_at=limit.reset_at if limit else None,
            limit_source=limit.source if limit else "", events=len(stream.events))

    # ------------------------------------------------------------------ permission prompts

    async def _permission_server(self, *, task_status: trio.TaskStatus[None] =
                                 trio.TASK_STATUS_IGNORED) -> None:
        """claude's permission helper asks here (``run/permission``, codexd's own wire); the
        prompt goes to the run's daemon through the attempt's stream."""
        path = self.permission_socket
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(64)
        listener = trio.SocketListener(sock)
        task_status.started()
        await trio.serve_listeners(self._permission_client, [listener])

    async def _permission_client(self, conn: trio.SocketStream) -> None:
        buf = b""
        async with conn:
            while True:
                chunk = await conn.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    reply = await self._permission_call(line)
                    if reply is not None:
                        await conn.send_all(_enc.encode(reply) + b"\n")

    async def _permission_call(self, line: bytes) -> dict[str, Any] | None:
        try:
            msg = json.loads(line)
        except ValueError:
            return {"jsonrpc": "2.0", "id": None,
                    "error": {"code": -32700, "message": "parse error"}}
        if not isinstance(msg, dict) or "id" not in msg:
            return None  # a notification (initialized)
        rid, method, params = msg["id"], msg.get("method"), msg.get("params") or {}
        if method == "initialize":
            return {"jsonrpc": "2.0", "id": rid, "result": {
                "serverInfo": {"name": "codexd-worker", "version": _version()}}}
        if method != "run/permission" or not isinstance(params, dict):
            return {"jsonrpc": "2.0", "id": rid,
                    "error": {"code": -32601, "message": f"method not found: {method}"}}
        stream = self.streams.for_run(str(params.get("runId")))
        if stream is None:
            return {"jsonrpc": "2.0", "id": rid, "error": {
                "code": -32011, "message": f"no run {params.get('runId')!r} on this worker"}}
        answer = await stream.ask({"toolName": params.get("toolName"),
                                   "input": params.get("input") or {},
                                   "toolUseId": params.get("toolUseId")})
        return {"jsonrpc": "2.0", "id": rid, "result": {
            "behavior": answer.get("behavior", "deny"), "message": answer.get("message"),
            "approvalId": answer.get("approvalId")}}


def _version() -> str:
    from codexd import __version__

    return __version__


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 0)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def _server_tls(w: WorkerSection) -> ssl.SSLContext | None:
    if not w.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(w.tls_cert, w.tls_key or None)
    return ctx


async def serve(settings: WorkerSettings) -> None:
    worker = FleetWorker(settings)
    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        log.info("worker_ready", ms=int((time.monotonic() - t0) * 1000))
