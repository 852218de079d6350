"""What a finished run leaves behind (``run_artifacts``): its final message, its structured
output, the files it changed with their diff, its last todo list. Collected once per run, when
it ends, redacted like its events; readable with ``run/artifacts`` and in exports.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

#: A diff longer than this is cut (the artifact says so).
MAX_DIFF = 1 << 20

Artifact = tuple[str, str, str, str]  # kind, name, media type, content


def collect(*, text: str | None, structured: Any, has_structured: bool, changed: set[str],
            todos: list[dict[str, Any]] | None, cwd: str) -> list[Artifact]:
    """Blocking (git): call from a worker thread."""
    out: list[Artifact] = []
    if text:
        out.append(("message", "final.md", "text/markdown", text))
    if has_structured:
        out.append(("structuredOutput", "output.json", "application/json",
                    json.dumps(structured, indent=2, ensure_ascii=False)))
    if changed:
        files = sorted(changed)
        out.append(("files", "changed.json", "application/json", json.dumps(files, indent=2)))
        diff = git_diff(cwd, files)
        if diff:
            out.append(("diff", "changes.diff", "text/x-diff", diff))
    if todos:
        out.append(("todos", "todos.json", "application/json",
                    json.dumps(todos, indent=2, ensure_ascii=False)))
    return out


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", cwd, *args], capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})


def git_diff(cwd: str, files: list[str]) -> str:
    """The work tree's diff of ``files`` against HEAD, new files included ("" outside a git
    work tree)."""
    try:
        inside = _git(cwd, "rev-parse", "--is-inside-work-tree")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return ""
    paths = [os.path.relpath(f, cwd) if os.path.isabs(f) else f for f in files]
    tracked = _git(cwd, "diff", "--no-color", "--no-ext-diff", "HEAD", "--", *paths)
    parts = [tracked.stdout] if tracked.returncode == 0 else []
    untracked = _git(cwd, "ls-files", "--others", "--exclude-standard", "--", *paths)
    for path in untracked.stdout.splitlines():
        new = _git(cwd, "diff", "--no-color", "--no-index", "--", "/dev/null", path)
        parts.append(new.stdout)  # exit 1 means "differs": the diff is there
    diff = "".join(parts)
    if len(diff) > MAX_DIFF:
        diff = diff[:MAX_DIFF] + f"\n[cut: the diff is longer than {MAX_DIFF} bytes]\n"
    return diff
