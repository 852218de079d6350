"""``codexctl``: a small command-line client over the daemon's socket.

Exit codes: 0 ok, 1 the daemon answered an error, 2 usage, 3 the daemon is not reachable.
Every command takes ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from codexd import __version__
from codexd.cli import agent, auto, git, ops, runs, service, sessions, term, tokens, workspace
from codexd.cli.exits import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from codexd.cli.output import CommandFailed, UsageError, print_json, table
from codexd.client import Client, ConnectionClosed, DaemonUnreachable
from codexd.errors import RpcError
from codexd.protocol.appserver import APPSERVER_STATUS
from codexd.protocol.atoms import (
    ATOM_DELETE,
    ATOM_GET,
    ATOM_LIST,
    ATOM_SET,
    AtomDeleteParams,
    AtomKeyParams,
    AtomListParams,
    AtomSetParams,
)
from codexd.protocol.daemon import (
    DAEMON_GC,
    DAEMON_HEALTH,
    DAEMON_SHUTDOWN,
    DAEMON_STATUS,
    GcParams,
    ShutdownParams,
)

#: How long a command waits for an answer by default (--timeout).
TIMEOUT = 30.0


def _json_arg(text: str, what: str) -> Any:
    try:
        return msgspec.json.decode(text.encode())
    except msgspec.DecodeError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc}); quote strings: '\"text\"'") from None


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{s}s"]
    return " ".join(parts)


# ---------------------------------------------------------------------------------- commands


def cmd_status(c: Client, a: argparse.Namespace) -> Any:
    st = c.request(DAEMON_STATUS)
    if a.json:
        return st
    print(f"codexd {st.version} (protocol {st.protocol_version}), pid {st.pid}, "
          f"up {_duration(st.uptime_seconds)}")
    print(f"socket    {st.socket}")
    if st.websocket:
        print(f"websocket {st.websocket}  (a token on every connection: codexctl token)")
    if st.app_server_socket:
        print(f"app-server wire  {st.app_server_socket}  (codex --remote unix://"
              f"{st.app_server_socket})")
    print(f"database  {st.db_path}")
    print(f"config    {st.config_file or '(defaults)'}")
    print(f"clients   {st.clients_connected} connected, {st.clients_total} since start")
    points = [(name, ms) for name, ms in (("socket bound", st.startup.socket_bound_ms),
                                          ("scheduler loaded", st.startup.scheduler_loaded_ms),
                                          ("app-server ready", st.startup.app_server_ready_ms))
              if ms is not None]
    if points:
        print("start     " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in points)
              + " after exec")
    calls = ", ".join(
        f"{m} {v.calls}" + (f" ({v.errors} errors)" if v.errors else "")
        for m, v in st.methods.items()
    )
    print(f"calls     {calls or 'none'}")
    try:
        srv = c.request(APPSERVER_STATUS)
    except RpcError:
        srv = None
    if srv is not None:
        line: str = srv.state if srv.enabled else "disabled (appserver.enabled)"
        if srv.pid:
            line += f", pid {srv.pid}"
        if srv.version:
            line += f", codex {srv.version}"
        if srv.state != "ready" and srv.last_error:
            line += f"; last error: {srv.last_error}"
        print(f"appserver {line}")
    if st.faults:
        last = st.last_fault
        print("faults    " + ", ".join(f"{k} {v}" for k, v in st.faults.items())
              + (f"; last: {last.kind} {last.unit}: {last.message}" if last else "")
              + " (contained; see the daemon log, event unit_fault)")
    if st.automations != "active":
        print(f"automations {st.automations}")
    for provider, reason in st.lanes_paused.items():
        print(f"paused    {provider} runs: {reason}")
    if st.previous_run_unclean:
        print("note      the previous codexd did not stop cleanly (killed or crashed)")
    return None


def cmd_health(c: Client, a: argparse.Namespace) -> Any:
    h = c.request(DAEMON_HEALTH)
    if a.json:
        print_json(h)
    else:
        print("healthy" if h.ok else "UNHEALTHY")
        for name, check in h.checks.items():
            print(f"  {name:10} {'ok' if check.ok else 'FAIL'}"
                  + (f"  {check.detail}" if check.detail else ""))
    return EXIT_OK if h.ok else EXIT_ERROR


def cmd_call(c: Client, a: argparse.Namespace) -> Any:
    params = _json_arg(a.params, "PARAMS") if a.params is not None else None
    result = c.call(a.method, params)
    print_json(result)
    return None


def _show_value(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def cmd_atoms_get(c: Client, a: argparse.Namespace) -> Any:
    atom = c.request(ATOM_GET, AtomKeyParams(key=a.key))
    if a.json:
        print_json(atom)
        return EXIT_OK if atom.exists else EXIT_ERROR  # the same exit code as without --json
    if not atom.exists:
        print(f"{a.key}: not set", file=sys.stderr)
        return EXIT_ERROR
    print(_show_value(atom.value))
    return None


def cmd_atoms_set(c: Client, a: argparse.Namespace) -> Any:
    value = a.value if a.string else _json_arg(a.value, "VALUE")
    out = c.request(ATOM_SET, AtomSetParams(key=a.key, value=msgspec.Raw(msgspec.json.encode(
        value)), expected_revision=a.expect_revision))
    if a.json:
        return out
    print(f"{out.key} = {_show_value(value)} (revision {out.revision})")
    return None


def cmd_atoms_rm(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(ATOM_DELETE, AtomDeleteParams(key=a.key,
                                                  expected_revision=a.expect_revision))
    if a.json:
        return out
    print(f"{a.key}: {'deleted' if out.deleted else 'was not set'}")
    return None


def cmd_atoms_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(ATOM_LIST, AtomListParams(prefix=a.prefix or ""))
    if a.json:
        return out
    table(["KEY", "REVISION>", "VALUE"],
          [[x.key, x.revision, _show_value(x.value)] for x in out.atoms],
          empty="no atoms" + (f" under {a.prefix!r}" if a.prefix else ""))
    return None


def cmd_shutdown(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(DAEMON_SHUTDOWN, ShutdownParams(reason=a.reason or None))
    if a.json:
        return out
    print(f"codexd is stopping (grace {out.grace_seconds} s)")
    return None


def _size(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n / 1024:.0f} KiB"


def cmd_gc(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(DAEMON_GC, GcParams(dry_run=a.dry_run))
    if a.json:
        return out
    table(["TABLE", "POLICY", "MATCHING", "DELETED"],
          [[t.name, t.rule, str(t.eligible), "-" if out.dry_run else str(t.deleted)]
           for t in out.tables])
    if out.dry_run:
        print(f"dry run: nothing deleted ({sum(t.eligible for t in out.tables)} rows would be; "
              "run `codexctl gc` to apply)")
    else:
        print(f"deleted {sum(t.deleted for t in out.tables)} rows in {out.duration_ms:.0f} ms; "
              f"database {_size(out.bytes_before)} -> {_size(out.bytes_after)}")
    return None


def cmd_completion(_c: Client | None, a: argparse.Namespace) -> Any:
    """argcomplete's shell code: the shell asks codexctl itself, so every subcommand and flag of
    the parser is completed (and stays in step with it)."""
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["codexctl"], shell=a.shell))
    return None


def cmd_man(_c: Client | None, _a: argparse.Namespace) -> Any:
    from argparse_manpage.manpage import Manpage

    page = Manpage(_parser(), _data={
        "project_name": "codexd", "version": __version__,
        "description": "control codexd, the shared runtime for AI coding clients",
        "url": "", "authors": []})
    sys.stdout.write(str(page))
    return None


# ------------------------------------------------------------------------------------ parser


def _parser() -> argparse.ArgumentParser:
    # The global options, accepted before or after the subcommand (SUPPRESS: a subcommand's
    # parser must not overwrite what was given before it; main() fills in the defaults).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON output")
    common.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                        help="daemon socket (env CODEXD_SOCKET)")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help=f"give up on an answer after this long (default {TIMEOUT:g})")

    p = argparse.ArgumentParser(
        prog="codexctl", parents=[common],
        description="Control a running codexd over its socket.",
        epilog="exit codes: 0 ok, 1 the daemon answered an error, 2 usage, "
        "3 the daemon is not reachable, 130 interrupted (Ctrl-C)",
    )
    p.add_argument("--version", action="version", version=f"codexctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[..., Any], help: str, parent: Any = sub) -> Any:
        sp = parent.add_parser(name, help=help, parents=[common])
        sp.set_defaults(fn=fn)
        return sp

    add("status", cmd_status, "show the daemon's status")
    add("health", cmd_health, "check the daemon's health (exit 1 when unhealthy)")
    sp = add("call", cmd_call, "call any method; prints the result as JSON")
    sp.add_argument("method")
    sp.add_argument("params", nargs="?", help="params as JSON, e.g. '{\"key\":\"x\"}'")
    add("shutdown", cmd_shutdown, "stop the daemon gracefully").add_argument("--reason")
    add("gc", cmd_gc, "apply the retention policies now ([retention] in the config)") \
        .add_argument("--dry-run", action="store_true", help="only count what would go")

    atoms = sub.add_parser("atoms", help="persisted key/value atoms").add_subparsers(
        dest="atoms_command", required=True, metavar="ATOMS_COMMAND"
    )
    add("get", cmd_atoms_get, "print an atom's value", atoms).add_argument("key")
    sp = add("set", cmd_atoms_set, "set an atom to a JSON value", atoms)
    sp.add_argument("key")
    sp.add_argument("value", help="a JSON value, e.g. 42, '\"dark\"', '{\"a\":1}'")
    sp.add_argument("--string", action="store_true", help="store VALUE as a plain string")
    sp.add_argument("--expect-revision", type=int, metavar="N",
                    help="only if the atom is at revision N (0 = does not exist)")
    sp = add("rm", cmd_atoms_rm, "delete an atom", atoms)
    sp.add_argument("key")
    sp.add_argument("--expect-revision", type=int, metavar="N")
    add("ls", cmd_atoms_ls, "list atoms", atoms).add_argument("prefix", nargs="?")
    agent.add_commands(add, sub)
    term.add_commands(add, sub, common)
    auto.add_commands(add, sub)
    runs.add_commands(add, sub)
    sessions.add_commands(add, sub)
    tokens.add_commands(add, sub)
    tokens.add_audit_command(add)
    service.add_commands(add, sub)
    workspace.add_commands(add, sub)
    git.add_commands(add, sub)
    ops.add_commands(add, sub)
    sp = add("completion", cmd_completion, "shell completion: eval \"$(codexctl completion "
             "bash)\" (zsh, fish alike)")
    sp.add_argument("shell", choices=["bash", "zsh", "fish"])
    sp.set_defaults(connect=False)
    add("man", cmd_man, "the man page (codexctl man | man -l -)").set_defaults(connect=False)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asking for completions (codexctl completion)
        import argcomplete

        argcomplete.autocomplete(parser)  # exits
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse (3.11) leaves words after an option and a `--` unparsed when a positional
        # came before the option (`conv send ID --wait -- text`): they are the prompt's.
        words = extra[1:] if extra[0] == "--" else extra
        if not hasattr(args, "prompt_words") or (
                words is extra and any(w.startswith("-") for w in words)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.prompt_words = [*args.prompt_words, *words]
    for name, default in (("json", False), ("socket", None), ("timeout", TIMEOUT)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        # Ctrl-C: the usual 130, quietly (a command that started something says so itself).
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `codexctl … | head`: the reader is gone; say nothing, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        if getattr(args, "connect", True):
            with Client.connect(args.socket, client_name="codexctl", timeout=args.timeout,
                                server_requests=getattr(args, "server_requests", False)) as c:
                out = args.fn(c, args)
        else:
            out = args.fn(None, args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"codexctl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DaemonUnreachable as exc:
        _error(args, str(exc), None)
        return EXIT_UNREACHABLE
    except RpcError as exc:
        _error(args, exc.message, exc.code, exc.data)
        return EXIT_ERROR
    except CommandFailed as exc:
        _error(args, str(exc), None)
        return EXIT_ERROR
    except (ConnectionClosed, TimeoutError) as exc:
        _error(args, f"lost the daemon: {exc}" if str(exc) else "timed out", None)
        return EXIT_UNREACHABLE
    if isinstance(out, int):
        return out
    if out is not None:
        print_json(out)
    return EXIT_OK


def _error(args: argparse.Namespace, message: str, code: int | None, data: Any = None) -> None:
    if args.json:
        err: dict[str, Any] = {"error": {"message": message}}
        if code is not None:
            err["error"]["code"] = code
        if data is not None:
            err["error"]["data"] = data
        print_json(err)
    else:
        print(f"codexctl: {message}" + (f" (code {code})" if code is not None else ""),
              file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
