"""Benchmark: git/status and files/search through codexd against running git and ripgrep
directly, side by side in one run.

1. A repository with 10,000 tracked files and 100 changed ones: codexd's `git/status` round
   trip (a client on the Unix socket) against `git status --porcelain=v2` run directly, the two
   alternated; p50 and the ratio (target <= 1.2x).
2. A folder of 100,000 files: `files/search` (fuzzy, ranked, top 50) against `rg --files`
   run directly (listing only), alternated; p50 and the ratio (target <= 1.2x).

    .venv/bin/python bench/bench_files_git.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codexd.client import Client  # noqa: E402
from tests.helpers.daemon import make_daemon  # noqa: E402

TARGET = 1.2
GIT_ENV = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1"}


def make_repo(root: Path, files: int, changed: int) -> None:
    root.mkdir()
    for i in range(files):
        d = root / f"pkg{i // 500:03d}" / f"mod{i // 50:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:05d}.py").write_text(f"value = {i}\n" * 20)
    run = {"cwd": root, "env": GIT_ENV, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)  # type: ignore[call-overload]
    subprocess.run(["git", "add", "."], **run)  # type: ignore[call-overload]
    subprocess.run(["git", "-c", "user.name=B", "-c", "user.email=b@x", "commit", "-q", "-m",
                    "all"], **run)  # type: ignore[call-overload]
    for i in range(0, files, files // changed):
        d = root / f"pkg{i // 500:03d}" / f"mod{i // 50:04d}"
        (d / f"file{i:05d}.py").write_text("changed = True\n")
    subprocess.run(["git", "update-index", "-q", "--refresh"], **{**run, "check": False})  # type: ignore[call-overload]


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"area{i // 10_000:02d}" / f"dir{i // 100:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"component_{i:06d}.ts").touch()


def alternate(direct: list[str], cwd: Path, call: object, rounds: int
              ) -> tuple[list[float], list[float]]:
    d_times, c_times = [], []
    for _ in range(3):  # warm both (page cache, git's index)
        subprocess.run(direct, cwd=cwd, env=GIT_ENV, capture_output=True, check=True)
        call()  # type: ignore[operator]
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(direct, cwd=cwd, env=GIT_ENV, capture_output=True, check=True)
        d_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        call()  # type: ignore[operator]
        c_times.append(time.perf_counter() - t)
    return d_times, c_times


def report(name: str, direct_name: str, d: list[float], c: list[float]) -> bool:
    d50, c50 = statistics.median(d), statistics.median(c)
    ratio = c50 / d50
    print(f"{name:<34} p50 {c50 * 1000:8.1f} ms   {direct_name:<32} p50 {d50 * 1000:8.1f} ms"
          f"   ratio {ratio:.2f}x (target <= {TARGET}x) {'ok' if ratio <= TARGET else 'OVER'}")
    return ratio <= TARGET


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--search-files", type=int, default=100_000)
    args = ap.parse_args()
    if shutil.which("rg") is None or shutil.which("git") is None:
        print("needs git and ripgrep (Debian: apt install git ripgrep)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="cxd-bench-", dir="/tmp"))
    try:
        print(f"progress: a repository of {args.files} files, 100 changed...", file=sys.stderr)
        repo = base / "repo"
        make_repo(repo, args.files, 100)
        print(f"progress: a folder of {args.search_files} files...", file=sys.stderr)
        tree = base / "tree"
        make_tree(tree, args.search_files)
        (base / "d").mkdir()
        d = make_daemon(base / "d", env={"GIT_CONFIG_GLOBAL": "/dev/null",
                                         "GIT_CONFIG_NOSYSTEM": "1"}).start()
        try:
            with Client.connect(d.socket, timeout=120) as c:
                c.call("workspace/grant", {"path": str(base)})
                st = c.call("git/status", {"repo": str(repo)})
                assert len(st["files"]) == 100, len(st["files"])
                print("progress: git/status, alternated with git status...", file=sys.stderr)
                gd, gc = alternate(["git", "status", "--porcelain=v2"], repo,
                                   lambda: c.call("git/status", {"repo": str(repo)}),
                                   args.rounds)
                hits = c.call("files/search", {"root": str(tree), "query": "dir0420comp7"})
                assert hits["scanned"] == args.search_files, hits["scanned"]
                print("progress: files/search, alternated with rg --files...", file=sys.stderr)
                sd, sc = alternate(["rg", "--files"], tree, lambda: c.call(
                    "files/search", {"root": str(tree), "query": "dir0420comp7"}),
                    args.rounds)
        finally:
            d.stop()
        print(f"\n{args.files} tracked files, 100 changed; {args.search_files} files to search;"
              f" {args.rounds} rounds each, alternated")
        ok = report("codexd git/status", "git status --porcelain=v2", gd, gc)
        ok &= report("codexd files/search (top 50)", "rg --files", sd, sc)
        return 0 if ok else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
