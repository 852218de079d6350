"""Compare a benchmark between two trees of this repository, alternated in one run.

Checks REV out into a temporary git worktree, then runs the benchmark (any of the scripts here
that accept ``--json``) alternately against that tree and the working tree, ``--runs`` times
each, and prints every run and the medians side by side. The daemon a benchmark starts runs with
``python -m codexd`` from the current directory, so each run's cwd picks the tree measured.

    .venv/bin/python bench/ab.py --base a41e037 [--runs 3] -- bench/bench_status.py --seconds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def run(tree: Path, script: str, args: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(ROOT / script), *args, "--json"], cwd=tree,
                         capture_output=True, text=True, check=True, timeout=1800)
    return flatten(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the revision to compare against")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("bench", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS]")
    a = ap.parse_args()
    bench = a.bench[1:] if a.bench[:1] == ["--"] else a.bench
    script, args = bench[0], bench[1:]
    with tempfile.TemporaryDirectory(prefix="cxd-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), a.base],
                       cwd=ROOT, check=True)
        tools = ROOT / ".tools"
        if tools.exists():
            (base / ".tools").symlink_to(tools)
        try:
            results: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
            for i in range(a.runs):
                for label, tree in (("base", base), ("head", ROOT)):
                    print(f"run {i + 1}/{a.runs} {label} ...", file=sys.stderr, flush=True)
                    results[label].append(run(tree, script, args))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           check=False)
    keys = sorted(set().union(*(r.keys() for r in results["base"] + results["head"])))
    print(f"{script} {' '.join(args)}: {a.base} (base) vs working tree (head), "
          f"{a.runs} alternated runs each")
    print(f"{'figure':<34} {'base median':>12} {'head median':>12} {'change':>8}   "
          "runs (base | head)")
    for k in keys:
        b = [r[k] for r in results["base"] if k in r]
        h = [r[k] for r in results["head"] if k in r]
        mb, mh = statistics.median(b), statistics.median(h)
        change = f"{(mh - mb) / mb * 100:+.1f}%" if mb else "-"
        print(f"{k:<34} {mb:>12.4g} {mh:>12.4g} {change:>8}   "
              f"{' '.join(f'{x:.4g}' for x in b)} | {' '.join(f'{x:.4g}' for x in h)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
