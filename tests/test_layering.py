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
