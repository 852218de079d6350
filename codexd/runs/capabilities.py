"""What a provider CLI on this machine is: found or not, its version, supported or not."""

from __future__ import annotations

import re
import subprocess
import time

from codexd.protocol.runs import Capability
from codexd.runs import providers
from codexd.runs.executor import ROOT

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
#: Oldest versions codexd was built against; older ones run, with a warning.
MIN_VERSION = {"codex": (0, 100, 0), "claude": (2, 0, 0)}


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first x.y.z in ``text``."""
    m = _VERSION.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def probe(provider: str, configured: str) -> Capability:
    path = providers.find_cli(provider, configured, ROOT)
    now = int(time.time() * 1000)
    if path is None:
        return Capability(provider=provider, status="blocked", path=None, version=None,
                          reason=f"{provider} is not installed (PATH, .tools/npm, "
                                 f"runs.{provider}_command)", checked_at=now)
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                           check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Capability(provider=provider, status="blocked", path=path, version=None,
                          reason=f"`{provider} --version` failed: {exc}", checked_at=now)
    m = _VERSION.search(p.stdout)
    if p.returncode != 0 or not m:
        return Capability(provider=provider, status="blocked", path=path, version=None,
                          reason=f"`{provider} --version` printed no version (exit "
                                 f"{p.returncode})", checked_at=now)
    version = tuple(int(x) for x in m.groups())
    if version < MIN_VERSION[provider]:
        return Capability(provider=provider, status="degraded", path=path, version=m.group(0),
                          reason=f"older than {'.'.join(map(str, MIN_VERSION[provider]))}; JSON "
                                 "events may differ", checked_at=now)
    return Capability(provider=provider, status="supported", path=path, version=m.group(0),
                      reason="", checked_at=now)
