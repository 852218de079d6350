"""The import graph's rules, read from the source (like the sans-IO test of codexd/rpc)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "codexd"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, TYPE_CHECKING blocks included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_only_the_command_line_imports_the_daemon():
    """Services and handlers get what they use (constructor arguments, the typed
    ``codexd.context.DaemonContext``), never the daemon itself: no service locator."""
    offenders = sorted(
        str(path.relative_to(PKG)) for path in PKG.rglob("*.py")
        if path.parts[len(PKG.parts)] != "cli" and path.name != "daemon.py"
        and any(n == "codexd.daemon" or n.startswith("codexd.daemon.") for n in _imports(path)))
    assert offenders == []


def test_services_do_not_import_the_transport_or_the_handlers():
    """Services (terminals, runs, automations, approvals, the app-server) are below the
    transport and the handlers: they may be typed against a session, never import its module
    at run time, and never import codexd.api."""
    services = [PKG / "terminal", PKG / "runs", PKG / "automations", PKG / "appserver",
                PKG / "store"]
    for folder in services:
        for path in folder.rglob("*.py"):
            names = _imports(path)
            assert not any(n.startswith("codexd.api") for n in names), path
    for path in [*(PKG / "store").rglob("*.py"), *(PKG / "protocol").rglob("*.py")]:
        names = _imports(path)
        assert not any(n.startswith(("codexd.transport", "codexd.api")) for n in names), path


def test_tests_share_helpers_only_through_tests_helpers():
    tests = PKG.parent / "tests"
    offenders = sorted(
        f"{path.name}: {name}" for path in tests.glob("*.py")
        for name in _imports(path)
        if name.startswith(("tests.conftest", "tests.test_")))
    assert offenders == []


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_circle_even_through_type_checking_imports():
    """The import graph of codexd (TYPE_CHECKING imports included) has no cycle: each layer
    types against what it uses of the layers above (small Protocols), not their modules."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {m: {n for n in _imports(p) if n in modules and n != m}
             for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n):], n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_services_do_not_know_the_session_module():
    """Services reach a client only through the few members they name in a Protocol of
    their own, so a new transport or session kind needs no change below the session."""
    services = [*(PKG / "terminal").rglob("*.py"), *(PKG / "runs").rglob("*.py"),
                *(PKG / "automations").rglob("*.py"), *(PKG / "appserver").rglob("*.py"),
                PKG / "approvals.py", PKG / "events.py", PKG / "subscriptions.py",
                PKG / "context.py"]
    offenders = sorted(str(p.relative_to(PKG)) for p in services
                       if any(n.startswith("codexd.session")
                              and not n.startswith("codexd.session.routes")
                              for n in _imports(p)))
    assert offenders == []
