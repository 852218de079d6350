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
        cfg, socket=args.socket, state_dir=args.state_dir,
        log_format=args.log_format, log_level=args.log_level,
    )
    return cfg, config_file


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

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        return 130
    except BaseException as group:
        cause = _unwrap(group)
        if isinstance(cause, CodexdError):
            logs.get_logger("codexd").error("daemon_failed", error=str(cause))
            print(f"codexd: {cause}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(cause, KeyboardInterrupt):
            return 130
        # A bug in a core loop: one structured event (never a raw traceback on stderr).
        import traceback

        logs.get_logger("codexd").critical(
            "daemon_crashed", error=f"{type(cause).__name__}: {cause}",
            traceback="".join(traceback.format_exception(group)))
        return EXIT_CRASHED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
