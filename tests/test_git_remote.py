"""git/fetch|pull|push as background jobs against real remotes: a bare repository on disk, and a
smart-HTTP server (the real git http-backend) that asks for a password."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from codexd.client import Client, ReceivedNotification
from tests.helpers.daemon import DaemonProc, make_daemon
from tests.helpers.githttp import GitHttp


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=_isolated()).stdout


def _isolated() -> dict[str, str]:
    import os

    # No user or system config (credential helpers, url rewrites) leaks into these tests.
    return {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def _commit(repo: Path, name: str, content: str) -> None:
    (repo / name).write_text(content)
    git(repo, "add", name)
    git(repo, "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-q", "-m", f"add {name}")


@pytest.fixture
def remotes(short_tmp: Path) -> dict[str, Path]:
    base = short_tmp / "ws"
    base.mkdir()
    origin = short_tmp / "origin.git"
    git(short_tmp, "init", "-q", "--bare", "-b", "main", str(origin))
    seed = short_tmp / "seed"
    git(short_tmp, "clone", "-q", str(origin), str(seed))
    # Enough content that git reports progress.
    for i in range(40):
        (seed / f"f{i}.txt").write_text(f"{i}\n" * 2000)
    git(seed, "add", ".")
    git(seed, "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-q", "-m", "seed")
    git(seed, "push", "-q", "origin", "main")
    work = base / "work"
    git(short_tmp, "clone", "-q", f"file://{origin}", str(work))
    return {"base": base, "origin": origin, "seed": seed, "work": work}


def _daemon(short_tmp: Path, config: str = "") -> DaemonProc:
    return make_daemon(short_tmp, config=config,
                       env={"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"})


def wait_done(c: Client, job_id: str, seen: list[ReceivedNotification],
              timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        note = c.next_notification(timeout=max(0.1, deadline - time.monotonic()))
        seen.append(note)
        if note.method == "git/jobDone" and note.params["job"]["jobId"] == job_id:
            return note.params["job"]


def next_of(c: Client, method: str, seen: list[ReceivedNotification], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        note = c.next_notification(timeout=max(0.1, deadline - time.monotonic()))
        seen.append(note)
        if note.method == method:
            return note.params


def test_push_fetch_pull_report_progress(short_tmp, remotes):
    d = _daemon(short_tmp).start()
    work, seed = remotes["work"], remotes["seed"]
    try:
        with d.client() as c:
            c.call("workspace/grant", {"path": str(remotes["base"])})
            for i in range(30):
                (work / f"new{i}.txt").write_text(f"new {i}\n" * 3000)
            git(work, "add", ".")
            git(work, "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-q", "-m", "more")
            seen: list[ReceivedNotification] = []
            started = c.call("git/push", {"repo": str(work)})
            assert started["kind"] == "push" and started["root"] == str(work)
            job = wait_done(c, started["jobId"], seen)
            assert job["state"] == "succeeded", job
            progress = [n.params for n in seen if n.method == "git/progress"]
            assert progress and all(p["jobId"] == started["jobId"] for p in progress)
            assert any(p["phase"] == "Writing objects" and p["percent"] == 100 for p in progress)
            assert git(remotes["origin"], "log", "-1", "--format=%s", "main").strip() == "more"

            # Someone else pushes; fetch sees it, pull brings it in.
            git(seed, "pull", "-q", "origin", "main")
            _commit(seed, "theirs.txt", "theirs\n")
            git(seed, "push", "-q", "origin", "main")
            fetched = wait_done(c, c.call("git/fetch", {"repo": str(work)})["jobId"], seen)
            assert fetched["state"] == "succeeded", fetched
            assert c.call("git/status", {"repo": str(work)})["behind"] == 1
            pulled = wait_done(c, c.call("git/pull", {"repo": str(work), "ffOnly": True})[
                "jobId"], seen)
            assert pulled["state"] == "succeeded", pulled
            assert (work / "theirs.txt").read_text() == "theirs\n"
            listed = c.call("git/jobs")["jobs"]
            assert [j["kind"] for j in listed] == ["push", "fetch", "pull"]

            # A push the remote refuses: the job fails with git's reason.
            _commit(seed, "race.txt", "x\n")
            git(seed, "push", "-q", "origin", "main")
            _commit(work, "mine.txt", "y\n")
            refused = wait_done(c, c.call("git/push", {"repo": str(work)})["jobId"], seen)
            assert refused["state"] == "failed" and refused["error"]
    finally:
        d.stop()


@pytest.fixture
def http_remote(short_tmp: Path, remotes):
    server = GitHttp(short_tmp).start()
    yield server, f"{server.url}/origin.git"
    server.stop()


def test_a_credential_prompt_is_a_request_any_client_answers(short_tmp, remotes, http_remote):
    server, url = http_remote
    work = remotes["work"]
    git(work, "remote", "set-url", "origin", url)
    d = _daemon(short_tmp).start()
    try:
        with d.client() as c, d.client() as other:
            c.call("workspace/grant", {"path": str(remotes["base"])})
            seen: list[ReceivedNotification] = []
            job = c.call("git/fetch", {"repo": str(work)})
            asked = next_of(c, "git/credentialRequested", seen)
            assert asked["jobId"] == job["jobId"] and asked["kind"] == "username"
            assert "127.0.0.1" in asked["prompt"]
            assert [r["requestId"] for r in other.call("git/credentials/list")["requests"]] == [
                asked["requestId"]]
            # Another client answers.
            other.call("git/credentials/respond", {"requestId": asked["requestId"],
                                                   "value": server.user})
            password = next_of(c, "git/credentialRequested", seen)
            assert password["kind"] == "password"
            other.call("git/credentials/respond", {"requestId": password["requestId"],
                                                   "value": server.password})
            done = wait_done(c, job["jobId"], seen)
            assert done["state"] == "succeeded", done
            answered = [n.params for n in seen if n.method == "git/credentialAnswered"]
            assert [a["outcome"] for a in answered] == ["answered", "answered"]
            assert server.password not in str([n.params for n in seen])  # never sent around
            assert server.password not in d.log()

            # Declined: the job fails at once, saying so.
            job = c.call("git/fetch", {"repo": str(work)})
            asked = next_of(c, "git/credentialRequested", seen)
            c.call("git/credentials/respond", {"requestId": asked["requestId"], "cancel": True})
            done = wait_done(c, job["jobId"], seen)
            assert done["state"] == "failed" and "declined" in done["error"], done
    finally:
        d.stop()


def test_an_unanswered_prompt_times_out_and_the_job_says_why(short_tmp, remotes, http_remote):
    _server, url = http_remote
    work = remotes["work"]
    git(work, "remote", "set-url", "origin", url)
    d = _daemon(short_tmp, "[git]\ncredential_timeout_seconds = 1\n").start()
    try:
        with d.client() as c:
            c.call("workspace/grant", {"path": str(remotes["base"])})
            seen: list[ReceivedNotification] = []
            t0 = time.monotonic()
            job = c.call("git/fetch", {"repo": str(work)})
            done = wait_done(c, job["jobId"], seen, timeout=30)
            assert done["state"] == "failed"
            assert "no answer within 1 s" in done["error"], done
            assert time.monotonic() - t0 < 20
            outcomes = [n.params["outcome"] for n in seen
                        if n.method == "git/credentialAnswered"]
            assert outcomes == ["expired"]
            assert c.call("git/credentials/list")["requests"] == []

            # A job waiting on a prompt can be canceled.
            job = c.call("git/fetch", {"repo": str(work)})
            next_of(c, "git/credentialRequested", seen)
            assert c.call("git/cancel", {"jobId": job["jobId"]})["jobId"] == job["jobId"]
            done = wait_done(c, job["jobId"], seen)
            assert done["state"] == "canceled"
    finally:
        d.stop()


def test_codexctl_git_push_and_answering_a_prompt(short_tmp, remotes, http_remote):
    import re
    import sys

    server, url = http_remote
    work = remotes["work"]
    d = _daemon(short_tmp).start()
    try:
        assert d.ctl("workspace", "add", str(remotes["base"])).returncode == 0
        _commit(work, "cli.txt", "from codexctl\n")
        pushed = d.ctl("git", "push", "--repo", str(work))
        assert pushed.returncode == 0, pushed.stderr
        assert "[push succeeded]" in pushed.stderr
        # Not on a terminal: the prompt is announced, and answered from another codexctl.
        git(work, "remote", "set-url", "origin", url)
        fetch = subprocess.Popen(
            [sys.executable, "-m", "codexd.cli.codexctl", "--socket", str(d.socket), "git",
             "fetch", "--repo", str(work)], env=d.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert fetch.stderr is not None
        for answer in (server.user, server.password):
            line = ""
            while "codexctl git answer" not in line:
                line = fetch.stderr.readline()
                assert line, "codexctl git fetch ended without announcing the prompt"
            request_id = re.search(r"codexctl git answer (\d+)", line).group(1)  # type: ignore[union-attr]
            out = subprocess.run(
                [sys.executable, "-m", "codexd.cli.codexctl", "--socket", str(d.socket), "git",
                 "answer", request_id], env=d.env, input=answer + "\n", capture_output=True,
                text=True, timeout=30, check=False)
            assert out.returncode == 0 and "answered" in out.stdout, out.stderr
        _out, rest = fetch.communicate(timeout=60)  # closes the pipes too
        assert fetch.returncode == 0, rest
        assert "[fetch succeeded]" in rest
    finally:
        d.stop()
