"""The TypeScript client (clients/typescript): its build (types generated from docs/schema/ and
the pinned app-server, strict tsc) and its own node:test suite against a real daemon with the
real codex app-server (calls, typed errors, a Codex turn approved from TypeScript, a reconnect
mid-stream, refused tokens, bounded queueing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.helpers import require_cli
from tests.helpers.daemon import ROOT

PACKAGE = ROOT / "clients" / "typescript"


def _npm(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{ROOT / '.tools/npm/node_modules/.bin'}:{os.environ['PATH']}"}
    return subprocess.run(["npm", *args], cwd=PACKAGE, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.timeout(600)
def test_the_typescript_client_builds_strict_and_passes_its_suite():
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed (the README's requirements)")
    require_cli("codex")
    if not (PACKAGE / "node_modules" / ".package-lock.json").exists():
        installed = _npm("ci", "--no-audit", "--no-fund", "--loglevel=error", timeout=300)
        assert installed.returncode == 0, installed.stderr
    build = _npm("run", "build", timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "generated" in build.stdout
    run = _npm("test", timeout=400)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    passed = re.search(r"^# pass (\d+)$", out, re.M)
    failed = re.search(r"^# fail (\d+)$", out, re.M)
    assert passed and failed, out
    assert int(failed.group(1)) == 0 and int(passed.group(1)) >= 7, out
