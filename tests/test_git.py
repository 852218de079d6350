"""git/* against real repositories built here with the real git CLI."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from codexd.client import Client
from codexd.errors import ErrorCode, RpcError

LINES = "".join(f"line {i}\n" for i in range(1, 21))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(short_tmp: Path) -> Path:
    r = short_tmp / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.name", "Test")
    git(r, "config", "user.email", "test@example.com")
    (r / "lines.txt").write_text(LINES)
    (r / "keep.txt").write_text("keep\n")
    (r / "gone.txt").write_text("gone\n")
    (r / "old.txt").write_text("a file to rename\n" * 5)
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "init")
    return r


@pytest.fixture
def c(daemon, repo) -> Client:
    client = daemon.client()
    client.call("workspace/grant", {"path": str(repo.parent)})
    yield client
    client.close()


def test_status_reports_every_file_state(c, repo, short_tmp):
    (repo / "lines.txt").write_text(LINES.replace("line 1\n", "LINE 1\n"))  # unstaged
    (repo / "keep.txt").write_text("kept\n")
    git(repo, "add", "keep.txt")  # staged
    (repo / "gone.txt").unlink()  # deleted in the work tree
    git(repo, "mv", "old.txt", "new.txt")  # renamed
    (repo / "added.txt").write_text("added\n")
    git(repo, "add", "added.txt")  # added
    (repo / "untracked.txt").write_text("?\n")
    st = c.call("git/status", {"repo": str(repo), "lineCounts": True})
    assert st["isRepository"] and st["branch"] == "main" and st["head"]
    files = {f["path"]: f for f in st["files"]}
    assert (files["lines.txt"]["index"], files["lines.txt"]["worktree"]) == (".", "M")
    assert (files["lines.txt"]["added"], files["lines.txt"]["deleted"]) == (1, 1)
    assert (files["keep.txt"]["index"], files["keep.txt"]["worktree"]) == ("M", ".")
    assert files["keep.txt"]["stagedAdded"] == 1
    assert files["gone.txt"]["worktree"] == "D"
    assert files["new.txt"]["kind"] == "renamed" and files["new.txt"]["origPath"] == "old.txt"
    assert files["added.txt"]["index"] == "A"
    assert files["untracked.txt"]["kind"] == "untracked"
    # Without lineCounts, the work tree's counts are left out (they cost a second walk).
    quick = {f["path"]: f for f in c.call("git/status", {"repo": str(repo)})["files"]}
    assert quick["lines.txt"]["added"] is None and quick["keep.txt"]["stagedAdded"] == 1
    # From a folder inside the work tree, the same repository.
    (repo / "sub").mkdir()
    assert c.call("git/status", {"repo": str(repo / "sub")})["root"] == str(repo)
    # Not a repository: a normal answer.
    plain = short_tmp / "plain"
    plain.mkdir()
    assert c.call("git/status", {"repo": str(plain)}) == {
        "isRepository": False, "root": str(plain), "branch": None, "head": None,
        "detached": False, "upstream": None, "ahead": 0, "behind": 0, "files": [],
        "inProgress": None, "stashes": 0}


def test_conflicts_and_merge_in_progress(c, repo):
    git(repo, "switch", "-q", "-c", "other")
    (repo / "keep.txt").write_text("theirs\n")
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "switch", "-q", "main")
    (repo / "keep.txt").write_text("ours\n")
    git(repo, "commit", "-q", "-am", "ours")
    subprocess.run(["git", "-C", str(repo), "merge", "-q", "other"], capture_output=True,
                   check=False)
    st = c.call("git/status", {"repo": str(repo)})
    assert st["inProgress"] == "merge"
    conflicted = [f for f in st["files"] if f["kind"] == "unmerged"]
    assert [(f["path"], f["index"], f["worktree"]) for f in conflicted] == [
        ("keep.txt", "U", "U")]


def _two_hunk_change(repo: Path) -> str:
    changed = LINES.replace("line 2\n", "LINE 2\n").replace("line 18\n", "LINE 18\n")
    (repo / "lines.txt").write_text(changed)
    return changed


def test_hunks_stage_unstage_and_discard_exactly(c, repo):
    changed = _two_hunk_change(repo)
    diff = c.call("git/diff", {"repo": str(repo), "context": 1})
    [f] = diff["files"]
    assert f["path"] == "lines.txt" and len(f["hunks"]) == 2
    first, second = f["hunks"]
    assert "-line 2" in first["lines"] and "+LINE 2" in first["lines"]
    ok = c.call("git/applyHunk", {"repo": str(repo), "path": str(repo / "lines.txt"),
                                  "patch": first["patch"], "action": "stage"})
    assert ok["ok"]
    # The index has the first change only; the work tree still has both.
    assert git(repo, "show", ":lines.txt") == LINES.replace("line 2\n", "LINE 2\n")
    assert (repo / "lines.txt").read_text() == changed
    staged = c.call("git/diff", {"repo": str(repo), "staged": True, "context": 1})
    [staged_hunk] = staged["files"][0]["hunks"]
    c.call("git/applyHunk", {"repo": str(repo), "path": str(repo / "lines.txt"),
                             "patch": staged_hunk["patch"], "action": "unstage"})
    assert git(repo, "show", ":lines.txt") == LINES
    # Discard the second hunk from the work tree: the first stays.
    c.call("git/applyHunk", {"repo": str(repo), "path": str(repo / "lines.txt"),
                             "patch": second["patch"], "action": "discard"})
    assert (repo / "lines.txt").read_text() == LINES.replace("line 2\n", "LINE 2\n")
    assert git(repo, "diff", "--cached") == ""


def test_a_stale_hunk_is_refused_and_changes_nothing(c, repo):
    _two_hunk_change(repo)
    first = c.call("git/diff", {"repo": str(repo), "context": 1})["files"][0]["hunks"][0]
    (repo / "lines.txt").write_text(LINES.replace("line 2\n", "line two\n"))  # edited since
    with pytest.raises(RpcError) as err:
        c.call("git/applyHunk", {"repo": str(repo), "path": str(repo / "lines.txt"),
                                 "patch": first["patch"], "action": "discard"})
    assert err.value.code == ErrorCode.CONFLICT and "no longer applies" in err.value.message
    assert (repo / "lines.txt").read_text() == LINES.replace("line 2\n", "line two\n")
    with pytest.raises(RpcError) as err:  # a patch for another file than `path`
        c.call("git/applyHunk", {"repo": str(repo), "path": str(repo / "keep.txt"),
                                 "patch": first["patch"], "action": "stage"})
    assert err.value.code == ErrorCode.INVALID_PARAMS


def test_commit_log_show_and_file_versions(c, repo):
    (repo / "keep.txt").write_text("kept\n")
    c.call("git/stage", {"repo": str(repo), "paths": [str(repo / "keep.txt")]})
    versions = c.call("git/fileDiff", {"repo": str(repo), "path": str(repo / "keep.txt"),
                                       "staged": True})
    assert (versions["before"], versions["after"]) == ("keep\n", "kept\n")
    done = c.call("git/commit", {"repo": str(repo), "message": "Keep it\n\nWith a body."})
    assert done["branch"] == "main" and done["commit"] == git(repo, "rev-parse",
                                                               "HEAD").strip()
    commits = c.call("git/log", {"repo": str(repo), "maxCount": 2})["commits"]
    assert [x["subject"] for x in commits] == ["Keep it", "init"]
    assert commits[0]["body"] == "With a body." and commits[0]["authorName"] == "Test"
    only = c.call("git/log", {"repo": str(repo), "path": str(repo / "lines.txt")})["commits"]
    assert [x["subject"] for x in only] == ["init"]
    shown = c.call("git/show", {"repo": str(repo), "commit": "HEAD"})
    assert shown["commit"]["subject"] == "Keep it"
    assert [f["path"] for f in shown["files"]] == ["keep.txt"]
    with pytest.raises(RpcError) as err:
        c.call("git/commit", {"repo": str(repo), "message": "nothing"})
    assert err.value.code == ErrorCode.CONFLICT and "nothing" in err.value.message
    with pytest.raises(RpcError) as err:
        c.call("git/show", {"repo": str(repo), "commit": "no-such-ref"})
    assert err.value.code == ErrorCode.INVALID_PARAMS
    # Unstage and revert.
    (repo / "keep.txt").write_text("changed again\n")
    c.call("git/stage", {"repo": str(repo), "paths": [str(repo / "keep.txt")]})
    c.call("git/unstage", {"repo": str(repo), "paths": [str(repo / "keep.txt")]})
    assert git(repo, "diff", "--cached") == "" and git(repo, "diff") != ""
    c.call("git/revert", {"repo": str(repo), "paths": [str(repo / "keep.txt")]})
    assert (repo / "keep.txt").read_text() == "kept\n"


def test_branches_stash_and_worktrees(c, repo):
    c.call("git/branch/create", {"repo": str(repo), "name": "feature", "checkout": True})
    (repo / "feature.txt").write_text("f\n")
    git(repo, "add", "feature.txt")
    git(repo, "commit", "-q", "-m", "feature work")
    branches = {b["name"]: b for b in c.call("git/branches", {"repo": str(repo)})["branches"]}
    assert branches["feature"]["current"] and not branches["main"]["current"]
    rng = c.call("git/rangeDiff", {"repo": str(repo), "base": "main", "head": "feature"})
    assert [(f["path"], f["status"]) for f in rng["files"]] == [("feature.txt", "added")]
    c.call("git/branch/checkout", {"repo": str(repo), "name": "main"})
    c.call("git/branch/rename", {"repo": str(repo), "name": "feature", "to": "greeting"})
    with pytest.raises(RpcError) as err:  # not merged: -d refuses, -D (unmerged) does not
        c.call("git/branch/delete", {"repo": str(repo), "name": "greeting"})
    assert err.value.code == ErrorCode.CONFLICT
    c.call("git/branch/delete", {"repo": str(repo), "name": "greeting", "unmerged": True})
    assert "greeting" not in git(repo, "branch")

    (repo / "keep.txt").write_text("wip\n")
    (repo / "scratch.txt").write_text("scratch\n")
    c.call("git/stash/push", {"repo": str(repo), "message": "wip", "includeUntracked": True})
    assert (repo / "keep.txt").read_text() == "keep\n" and not (repo / "scratch.txt").exists()
    [stash] = c.call("git/stash/list", {"repo": str(repo)})["stashes"]
    assert stash["index"] == 0 and "wip" in stash["message"]
    c.call("git/stash/pop", {"repo": str(repo)})
    assert (repo / "keep.txt").read_text() == "wip\n" and (repo / "scratch.txt").exists()
    assert c.call("git/stash/list", {"repo": str(repo)})["stashes"] == []

    tree = repo.parent / "review"
    c.call("git/worktree/add", {"repo": str(repo), "path": str(tree), "newBranch": "review"})
    listed = c.call("git/worktree/list", {"repo": str(repo)})["worktrees"]
    assert [(w["path"], w["branch"]) for w in listed] == [(str(repo), "main"),
                                                         (str(tree), "review")]
    assert c.call("git/status", {"repo": str(tree)})["branch"] == "review"
    c.call("git/worktree/remove", {"repo": str(repo), "path": str(tree)})
    assert not tree.exists()


def test_repositories_outside_grants_are_refused(daemon, repo, short_tmp):
    with daemon.client() as c:
        inner = repo / "sub"
        inner.mkdir()
        c.call("workspace/grant", {"path": str(inner)})  # a folder inside, not the work tree
        with pytest.raises(RpcError) as err:
            c.call("git/status", {"repo": str(inner)})
        assert err.value.code == ErrorCode.OUTSIDE_WORKSPACE
        c.call("workspace/grant", {"path": str(repo)})
        with pytest.raises(RpcError) as err:
            c.call("git/stage", {"repo": str(repo), "paths": ["/etc/hostname"]})
        assert err.value.code == ErrorCode.OUTSIDE_WORKSPACE
        with pytest.raises(RpcError) as err:
            c.call("git/worktree/add", {"repo": str(repo), "path": str(short_tmp / "x")})
        assert err.value.code == ErrorCode.OUTSIDE_WORKSPACE
        assert not (short_tmp / "x").exists()


def test_codexctl_git_commands(daemon, repo):
    daemon.ctl("workspace", "add", str(repo))
    (repo / "lines.txt").write_text(LINES.replace("line 3\n", "LINE 3\n"))
    out = daemon.ctl("git", "status", str(repo))
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0] == f"{repo}: on main"
    assert rows[1].split()[:3] == ["STAGED", "WORK", "TREE"]
    assert rows[2].split() == ["modified", "lines.txt", "+1", "-1"]
    diff = daemon.ctl("git", "diff", "--repo", str(repo))
    assert "+LINE 3" in diff.stdout
    log = daemon.ctl("git", "log", "--repo", str(repo))
    assert log.stdout.splitlines()[1].split()[-1] == "init"


def test_a_running_codex_turn_holds_off_changes_to_its_work_tree(bridge):
    """git/* refuses to change the index or files under a Codex turn in progress (-32010,
    data.busy) unless force; reads go on."""
    from tests.fake_model import message
    from tests.helpers.bridge import start_thread, start_turn, until, wait_ready

    ws = bridge.workspace
    git(ws, "init", "-q", "-b", "main")
    (ws / "a.txt").write_text("a\n")
    bridge.model.script([message("done")])
    release = bridge.model.hold()
    with bridge.client() as c:
        wait_ready(c)
        c.call("workspace/grant", {"path": str(ws)})
        thread_id = start_thread(c, ws)
        start_turn(c, thread_id, "take your time")
        deadline = time.monotonic() + 30
        while not bridge.model.requests:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(RpcError) as err:
            c.call("git/stage", {"repo": str(ws), "paths": [str(ws / "a.txt")]})
        assert err.value.code == ErrorCode.CONFLICT
        assert err.value.data["busy"] == f"a Codex turn on thread {thread_id}"
        assert c.call("git/status", {"repo": str(ws)})["isRepository"]  # reads go on
        release.set()
        until(c, lambda n: n.method == "turn/completed")
        assert c.call("git/stage", {"repo": str(ws), "paths": [str(ws / "a.txt")]})["ok"]
