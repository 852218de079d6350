"""``codexd``: run the daemon in the foreground, or inspect its configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from codexd import __version__, config, logs
from codexd.cli.exits import EXIT_CRASHED, EXIT_ERROR, EXIT_OK, EXIT_USAGE
from codexd.errors import CodexdError, ConfigError
from codexd.paths import default_config_file, default_socket, default_state_dir


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codexd",
        description="A per-user daemon that supervises codex app-server and shares it "
        "between many clients over one JSON-RPC socket.",
    )
    p.add_argument("--version", action="version", version=f"codexd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--socket", metavar="PATH", help="socket path (env CODEXD_SOCKET)")
        sp.add_argument("--state-dir", metavar="DIR", help="state folder (env CODEXD_STATE_DIR)")
        sp.add_argument("--config", metavar="FILE", help="config file (must exist if given)")
        sp.add_argument("--log-format", choices=["auto", "json", "console"])
        sp.add_argument(
            "--log-level", type=str.lower,
            choices=["debug", "info", "warning", "error", "critical"],
        )

    run = sub.add_parser("run", help="run the daemon in the foreground")
    common(run)
    cfg = sub.add_parser("config", help="print the effective configuration and paths")
    common(cfg)
    cfg.add_argument("--json", action="store_true", help="machine-readable output")
    wk = sub.add_parser("worker", help="run provider runs from the Temporal task queue "
                        "([runs.executor]) on this machine, in the foreground")
    wk.add_argument("--state-dir", metavar="DIR",
                    help="the worker's state folder (default: the daemon's, /worker)")
    wk.add_argument("--config", metavar="FILE", help="config file (must exist if given)")
    wk.add_argument("--address", help="the Temporal frontend, host:port "
                    "(runs.executor.address)")
    wk.add_argument("--namespace", help="the Temporal namespace (runs.executor.namespace)")
    wk.add_argument("--task-queue", help="the task queue to poll (runs.executor.task_queue)")
    wk.add_argument("--max-concurrent", type=int, metavar="N",
                    help="attempts at once (worker.max_concurrent)")
    wk.add_argument("--listen", metavar="HOST:PORT",
                    help="where daemons read run events from (worker.listen)")
    wk.add_argument("--advertise", metavar="URL", help="the URL daemons use (worker.advertise)")
    wk.add_argument("--name", help="this worker's name (worker.name)")
    wk.add_argument("--log-format", choices=["auto", "json", "console"])
    wk.add_argument("--log-level", type=str.lower,
                    choices=["debug", "info", "warning", "error", "critical"])
    sch = sub.add_parser("schema", help="write the protocol's JSON Schema and index")
    sch.add_argument("--out", metavar="DIR", default="docs/schema",
                     help="folder to write into (default docs/schema)")
    sch.add_argument("--appserver", action="store_true",
                     help="also the pinned app-server's own schema, in DIR/appserver")
    return p


def _cmd_schema(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from codexd import schema

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in schema.build().items():
        (out / name).write_bytes(schema.render(doc))
        print(f"wrote {out / name}", file=sys.stderr)
    if args.appserver:
        from codexd.appserver.command import resolve_command
        from codexd.config import AppServerSection

        codex = resolve_command(AppServerSection())[0]
        target = out / "appserver"
        shutil.rmtree(target, ignore_errors=True)
        done = subprocess.run([codex, "app-server", "generate-json-schema", "--out",
                               str(target)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"codexd: {codex} app-server generate-json-schema failed: "
                  f"{done.stderr.strip()}", file=sys.stderr)
            return EXIT_ERROR
        print(f"wrote {target}/ (the app-server's own schema)", file=sys.stderr)
    return EXIT_OK


def _load(args: argparse.Namespace) -> tuple[config.Config, Path]:
    config_file = Path(args.config).expanduser() if args.config else default_config_file()
    cfg = config.load(config_file, required=bool(args.config))
    cfg = config.with_overrides(
        cfg, socket=getattr(args, "socket", None), state_dir=None if args.command == "worker"
        else args.state_dir, log_format=args.log_format, log_level=args.log_level,
    )
    return cfg, config_file


def _cmd_worker(cfg: config.Config, args: argparse.Namespace) -> int:

    from codexd.fleet.connect import Unreachable
    from codexd.fleet.worker import FleetWorker, WorkerSettings

    ex = msgspec.structs.replace(cfg.runs.executor, **{k: v for k, v in (
        ("address", args.address), ("namespace", args.namespace),
        ("task_queue", args.task_queue)) if v is not None})
    wk = msgspec.structs.replace(cfg.worker, **{k: v for k, v in (
        ("max_concurrent", args.max_concurrent), ("listen", args.listen),
        ("advertise", args.advertise), ("name", args.name)) if v is not None})
    if wk.max_concurrent < 1:
        print("codexd worker: --max-concurrent must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    host = wk.listen.rpartition(":")[0].strip("[]")
    if host and not config.is_loopback(host) and not wk.tls_cert:
        print(f"codexd worker: worker.listen {wk.listen} is not a loopback address: set "
              "worker.tls_cert and worker.tls_key (daemons read run events from it)",
              file=sys.stderr)
        return EXIT_USAGE
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else \
        Path(cfg.daemon.state_dir or default_state_dir()) / "worker"
    logs.configure(cfg.log.format, cfg.log.level)
    logs.capture_stray_tracebacks()
    worker = FleetWorker(WorkerSettings(executor=ex, worker=wk, runs=cfg.runs,
                                        state_dir=state_dir))
    return _run_trio(worker.run, "worker", (Unreachable, CodexdError))


def _cmd_config(cfg: config.Config, config_file: Path, as_json: bool) -> int:
    state_dir = Path(cfg.daemon.state_dir or default_state_dir())
    info: dict[str, Any] = {
        "configFile": str(config_file),
        "configFileExists": config_file.exists(),
        "socket": str(cfg.daemon.socket or default_socket(state_dir)),
        "stateDir": str(state_dir),
        "config": config.redacted(cfg),
    }
    if as_json:
        print(msgspec.json.encode(info).decode())
        return EXIT_OK
    print(f"# config file: {config_file}{'' if info['configFileExists'] else ' (absent)'}")
    print(f"# socket:      {info['socket']}")
    print(f"# state dir:   {info['stateDir']}")
    import tomlkit

    print(tomlkit.dumps(info["config"]), end="")
    return EXIT_OK


def _announce(socket_path: Path, given: str | None) -> None:
    """For a person who just started it by hand: where it listens and what to type next."""
    import shutil

    ctl = shutil.which("codexctl") or str(Path(sys.executable).parent / "codexctl")
    if given:
        ctl += f" --socket {socket_path}"
    print(f"\ncodexd is ready on {socket_path}\n"
          f"  next, in another terminal:  {ctl} status\n"
          f"                              {ctl} ask \"hello\"\n"
          "  Ctrl-C here stops it; `codexctl service install --now` runs it as a service\n",
          file=sys.stderr, flush=True)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        return _cmd_schema(args)
    try:
        cfg, config_file = _load(args)
    except ConfigError as exc:
        print(f"codexd: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "config":
        return _cmd_config(cfg, config_file, args.json)
    if args.command == "worker":
        return _cmd_worker(cfg, args)

    import trio

    from codexd.daemon import Daemon, Overrides

    logs.configure(cfg.log.format, cfg.log.level)
    logs.capture_stray_tracebacks()
    daemon = Daemon(
        cfg,
        config_file=config_file,
        overrides=Overrides(args.socket, args.state_dir, args.log_format, args.log_level),
    )
    announce = sys.stderr.isatty() or cfg.log.format == "console"

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            if announce:
                _announce(daemon.socket_path, args.socket)

    return _run_trio(serve, "daemon", (CodexdError,))


def _run_trio(main: Any, what: str, expected: tuple[type[BaseException], ...]) -> int:
    """``trio.run(main)`` with the exit code: an expected failure is one log line and a
    message; a bug in a core loop one structured event (never a raw traceback on stderr)."""
    import trio

    name, prog = ("codexd", "codexd") if what == "daemon" else ("codexd.worker",
                                                                "codexd worker")
    try:
        trio.run(main)
    except KeyboardInterrupt:
        return 130
    except BaseException as group:
        cause = _unwrap(group)
        if isinstance(cause, expected):
            logs.get_logger(name).error(f"{what}_failed", error=str(cause))
            print(f"{prog}: {cause}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(cause, KeyboardInterrupt):
            return 130
        import traceback

        logs.get_logger(name).critical(
            f"{what}_crashed", error=f"{type(cause).__name__}: {cause}",
            traceback="".join(traceback.format_exception(group)))
        return EXIT_CRASHED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
