"""Workspace grants and files/*: real files, real git (for .gitignore) and real ripgrep.

The grant is the security boundary: every refusal below is checked to have touched nothing
outside it."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from codexd.client import Client
from codexd.errors import ErrorCode, RpcError

needs_rg = pytest.mark.skipif(shutil.which("rg") is None,
                              reason="ripgrep is not installed (Debian: ripgrep)")


@pytest.fixture
def tree(short_tmp: Path) -> dict[str, Path]:
    """A project (a git repository with ignored files, hidden files and symlinks) and a
    secret outside it."""
    ws = short_tmp / "project"
    (ws / "src").mkdir(parents=True)
    (ws / "build").mkdir()
    (ws / "docs").mkdir()
    (ws / "src" / "main.py").write_text("print('hello')\n# TODO: retry\n")
    (ws / "src" / "maintenance_notes.txt").write_text("nothing to do\n")
    (ws / "docs" / "manual.md").write_text("# Manual\nTODO write it\n")
    (ws / "build" / "main.o").write_bytes(b"\x7fELF\x00\x01")
    (ws / ".env").write_text("SECRET=1\n")
    (ws / ".gitignore").write_text("build/\n*.log\n")
    (ws / "debug.log").write_text("noise\n")
    outside = short_tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the secret\n")
    os.symlink(outside / "secret.txt", ws / "leak.txt")
    os.symlink(outside, ws / "leakdir")
    os.symlink(ws / "src" / "main.py", ws / "alias.py")
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    return {"ws": ws, "outside": outside}


def refused(c: Client, method: str, params: dict, code: int = ErrorCode.OUTSIDE_WORKSPACE
            ) -> RpcError:
    with pytest.raises(RpcError) as err:
        c.call(method, params)
    assert err.value.code == code, (method, params, err.value.message)
    return err.value


def test_nothing_is_reachable_before_a_grant_and_grants_persist(daemon, tree):
    ws = str(tree["ws"])
    with daemon.client() as c:
        err = refused(c, "files/list", {"path": ws})
        assert "codexctl workspace add" in err.message and err.data["nearestGrant"] is None
    out = daemon.ctl("workspace", "add", ws, "--name", "proj")
    assert out.returncode == 0, out.stderr
    assert daemon.ctl("workspace", "ls").stdout.split()[:3] == ["NAME", "PATH", "REAL"]
    daemon.stop()
    daemon.start()  # grants are stored
    with daemon.client() as c:
        assert [g["name"] for g in c.call("workspace/list")["grants"]] == ["proj"]
        assert c.call("files/stat", {"path": ws})["type"] == "dir"
    out = daemon.ctl("workspace", "rm", ws)
    assert out.returncode == 0 and "revoked" in out.stdout
    with daemon.client() as c:
        refused(c, "files/stat", {"path": ws})
        refused(c, "workspace/grant", {"path": "/"}, ErrorCode.POLICY_DENIED)
        refused(c, "workspace/grant", {"path": "/proc/self"}, ErrorCode.POLICY_DENIED)
        refused(c, "workspace/grant", {"path": str(tree["ws"] / "nope")}, ErrorCode.INVALID_PARAMS)


def _granted(daemon, tree) -> Client:
    c = daemon.client()
    c.call("workspace/grant", {"path": str(tree["ws"])})
    return c


def test_listing_respects_gitignore_hidden_files_and_marks_links(daemon, tree):
    ws = tree["ws"]
    with _granted(daemon, tree) as c:
        listed = c.call("files/list", {"path": str(ws)})
        names = [e["name"] for e in listed["entries"]]
        assert names == ["docs", "src", "alias.py", "leak.txt", "leakdir"]
        assert listed["ignored"] == 2  # build/ and debug.log
        by_name = {e["name"]: e for e in listed["entries"]}
        assert by_name["leak.txt"]["type"] == "symlink"
        assert by_name["leak.txt"]["targetInside"] is False
        assert by_name["alias.py"]["targetInside"] is True
        assert by_name["src"]["path"] == f"{ws}/src"  # the path asked, joined
        everything = c.call("files/list", {"path": str(ws), "respectGitignore": False,
                                           "showHidden": True})
        assert {"build", "debug.log", ".env", ".gitignore"} <= {
            e["name"] for e in everything["entries"]}
        assert ".git" not in {e["name"] for e in everything["entries"]}


def test_paths_that_leave_the_grant_never_pass(daemon, tree):
    ws, outside = tree["ws"], tree["outside"]
    secret = outside / "secret.txt"
    with _granted(daemon, tree) as c:
        cases = [
            ("files/read", {"path": f"{ws}/../outside/secret.txt"}),
            ("files/read", {"path": str(secret)}),
            ("files/read", {"path": f"{ws}/leak.txt"}),
            ("files/read", {"path": f"{ws}/leakdir/secret.txt"}),
            ("files/read", {"path": f"/proc/self/root{secret}"}),
            ("files/list", {"path": f"{ws}/leakdir"}),
            ("files/write", {"path": f"{ws}/leak.txt", "content": "pwned"}),
            ("files/write", {"path": f"{ws}/leakdir/new.txt", "content": "pwned"}),
            ("files/mkdir", {"path": f"{ws}/leakdir/sub"}),
            ("files/rename", {"path": f"{ws}/src/main.py", "to": f"{outside}/main.py"}),
            ("files/rename", {"path": f"{ws}/leakdir/secret.txt", "to": f"{ws}/got.txt"}),
            ("files/delete", {"path": f"{ws}/leakdir/secret.txt"}),
            ("files/search", {"root": str(outside), "query": "secret"}),
            ("files/grep", {"root": f"{ws}/leakdir", "pattern": "secret"}),
        ]
        for method, params in cases:
            err = refused(c, method, params)
            assert err.data["nearestGrant"] == str(ws), (method, params)
        for bad in ("relative/path", f"{ws}/src\x00/main.py", f"{ws}/{'x' * 300}"):
            refused(c, "files/read", {"path": bad}, ErrorCode.INVALID_PARAMS)
    # Nothing outside was read into an answer, written, created, moved or deleted.
    assert secret.read_text() == "the secret\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (ws / "src" / "main.py").exists() and (ws / "leak.txt").is_symlink()


def test_read_write_with_hashes(daemon, tree):
    ws = tree["ws"]
    main = ws / "src" / "main.py"
    with _granted(daemon, tree) as c:
        got = c.call("files/read", {"path": str(main)})
        assert got["encoding"] == "utf8" and got["content"] == main.read_text()
        assert got["hash"] == hashlib.sha256(main.read_bytes()).hexdigest()
        assert c.call("files/stat", {"path": str(main)})["hash"] == got["hash"]
        # Someone else changes the file: the stale write is refused, the file untouched.
        main.write_text("print('theirs')\n")
        err = refused(c, "files/write", {"path": str(main), "content": "mine\n",
                                         "expectedHash": got["hash"]}, ErrorCode.CONFLICT)
        assert err.data["currentHash"] == hashlib.sha256(b"print('theirs')\n").hexdigest()
        assert main.read_text() == "print('theirs')\n"
        os.chmod(main, 0o750)
        fresh = c.call("files/read", {"path": str(main)})["hash"]
        done = c.call("files/write", {"path": str(main), "content": "mine\n",
                                      "expectedHash": fresh})
        assert done["created"] is False and main.read_text() == "mine\n"
        assert (main.stat().st_mode & 0o777) == 0o750  # the mode is kept
        assert not [p for p in main.parent.iterdir() if p.name.startswith(".codexd-")]
        # "" = create only.
        new = ws / "docs" / "new" / "page.md"
        refused(c, "files/write", {"path": str(new), "content": "x"}, ErrorCode.NOT_FOUND)
        made = c.call("files/write", {"path": str(new), "content": "x", "expectedHash": "",
                                      "makeParents": True})
        assert made["created"] is True and new.read_text() == "x"
        refused(c, "files/write", {"path": str(new), "content": "y", "expectedHash": ""},
                ErrorCode.CONFLICT)
        # Binary in and out as base64; a cap truncates.
        blob = bytes(range(256)) * 4
        c.call("files/write", {"path": f"{ws}/blob.bin", "encoding": "base64",
                               "content": base64.b64encode(blob).decode()})
        read = c.call("files/read", {"path": f"{ws}/blob.bin", "maxBytes": 100})
        assert read["encoding"] == "base64" and read["truncated"] is True
        assert base64.b64decode(read["content"]) == blob[:100] and read["size"] == 1024
        # Through a symlink that stays inside: allowed, and the path asked is reported.
        assert c.call("files/read", {"path": f"{ws}/alias.py"})["path"] == f"{ws}/alias.py"


def test_mkdir_delete_rename(daemon, tree):
    ws = tree["ws"]
    with _granted(daemon, tree) as c:
        c.call("files/mkdir", {"path": f"{ws}/a/b", "parents": True})
        refused(c, "files/mkdir", {"path": f"{ws}/a"}, ErrorCode.CONFLICT)
        (ws / "a" / "b" / "f.txt").write_text("f")
        refused(c, "files/delete", {"path": f"{ws}/a"}, ErrorCode.CONFLICT)
        c.call("files/rename", {"path": f"{ws}/a/b/f.txt", "to": f"{ws}/a/g.txt"})
        assert (ws / "a" / "g.txt").read_text() == "f"
        (ws / "a" / "h.txt").write_text("h")
        refused(c, "files/rename", {"path": f"{ws}/a/g.txt", "to": f"{ws}/a/h.txt"},
                ErrorCode.CONFLICT)
        c.call("files/rename", {"path": f"{ws}/a/g.txt", "to": f"{ws}/a/h.txt",
                                "overwrite": True})
        assert (ws / "a" / "h.txt").read_text() == "f"
        c.call("files/delete", {"path": f"{ws}/a", "recursive": True})
        assert not (ws / "a").exists()
        # Deleting a link removes the link, never what it points to.
        c.call("files/delete", {"path": f"{ws}/leakdir"})
        assert not (ws / "leakdir").exists() and (tree["outside"] / "secret.txt").exists()
        refused(c, "files/delete", {"path": str(ws), "recursive": True}, ErrorCode.POLICY_DENIED)
        refused(c, "files/delete", {"path": f"{ws}/nope"}, ErrorCode.NOT_FOUND)


@needs_rg
def test_search_ranks_file_names_and_grep_reports_matches(daemon, tree):
    ws = tree["ws"]
    with _granted(daemon, tree) as c:
        found = c.call("files/search", {"root": str(ws), "query": "main"})
        rels = [h["relative"] for h in found["hits"]]
        assert rels[0] == "src/main.py"  # the file name, not a folder, matched best
        assert "build/main.o" not in rels  # .gitignore respected
        hit = found["hits"][0]
        assert [hit["relative"][i] for i in hit["positions"]] == list("main")
        assert c.call("files/search", {"root": str(ws), "query": "zzz"})["hits"] == []

        grep = c.call("files/grep", {"root": str(ws), "pattern": "TODO"})
        where = sorted((m["relative"], m["line"]) for m in grep["matches"])
        assert where == [("docs/manual.md", 2), ("src/main.py", 2)]
        m = next(m for m in grep["matches"] if m["relative"] == "src/main.py")
        assert m["text"] == "# TODO: retry" and m["submatches"] == [
            {"start": 2, "end": 6, "text": "TODO"}]
        only_py = c.call("files/grep", {"root": str(ws), "pattern": "todo", "glob": "*.py",
                                        "caseSensitive": False})
        assert [x["relative"] for x in only_py["matches"]] == ["src/main.py"]
        capped = c.call("files/grep", {"root": str(ws), "pattern": "o", "limit": 1})
        assert len(capped["matches"]) == 1 and capped["truncated"] is True
        err = refused(c, "files/grep", {"root": str(ws), "pattern": "("},
                      ErrorCode.INVALID_PARAMS)
        assert "unclosed group" in err.message


def test_grants_are_announced(daemon, tree):
    with daemon.client() as watcher, daemon.client() as c:
        c.call("workspace/grant", {"path": str(tree["ws"])})
        note = watcher.next_notification(timeout=5)
        assert note.method == "workspace/changed" and note.params["change"] == "granted"
        assert note.params["grant"]["realPath"] == str(tree["ws"])


def _until(c: Client, method: str, pred, timeout: float = 15):
    import time

    deadline = time.monotonic() + timeout
    while True:
        note = c.next_notification(timeout=max(0.1, deadline - time.monotonic()))
        if note.method == method and pred(note.params):
            return note


def test_watch_reports_changes_survives_a_reconnect_and_sees_git(daemon, tree):
    ws = tree["ws"]
    subprocess.run(["git", "-C", str(ws), "-c", "user.name=T", "-c", "user.email=t@x",
                    "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    with _granted(daemon, tree) as c:
        w = c.call("files/watch", {"path": str(ws)})
        assert w["gitRoot"] == str(ws)
        assert c.call("files/watch", {"path": str(ws)})["watchId"] == w["watchId"]  # shared
        (ws / "src" / "new.py").write_text("x = 1\n")
        note = _until(c, "files/changed", lambda p: any(
            ch["path"] == f"{ws}/src/new.py" for ch in p["changes"]))
        assert note.params["watchId"] == w["watchId"]
        assert {"path": f"{ws}/src/new.py", "kind": "added"} in note.params["changes"]
        assert not any("/.git/" in ch["path"] for ch in note.params["changes"])
        epoch = c.server_info["epoch"]
        seen = c.call("events/replay", {"afterSeq": 0})["events"]  # the seq we last saw
        last_seq = max(e["seq"] for e in seen if e["method"] == "files/changed")
    # The client is gone; the watch is not. What happens meanwhile is replayed.
    (ws / "docs" / "manual.md").write_text("changed while nobody was connected\n")
    subprocess.run(["git", "-C", str(ws), "add", "docs/manual.md"], check=True)
    import time

    time.sleep(1.0)
    with daemon.client() as c:
        replay = c.call("events/replay", {"afterSeq": last_seq, "epoch": epoch})
        assert replay["gap"] is False
        methods = [(e["method"], e["params"]) for e in replay["events"]]
        changed = [p for m, p in methods if m == "files/changed"]
        assert any(ch["path"] == f"{ws}/docs/manual.md" and ch["kind"] == "modified"
                   for p in changed for ch in p["changes"])
        gits = [p for m, p in methods if m == "git/changed"]
        assert gits and "index" in gits[-1]["what"] and gits[-1]["root"] == str(ws)
        # A commit moves HEAD's branch: refs (and the index).
        subprocess.run(["git", "-C", str(ws), "-c", "user.name=T", "-c", "user.email=t@x",
                        "commit", "-q", "-m", "second"], check=True)
        note = _until(c, "git/changed", lambda p: "refs" in p["what"])
        assert note.params["watchId"] == w["watchId"]
        assert [x["watchId"] for x in c.call("files/watches")["watches"]] == [w["watchId"]]
        assert c.call("files/unwatch", {"watchId": w["watchId"]})["stopped"] is True
        assert c.call("files/watches")["watches"] == []
        refused(c, "files/watch", {"path": str(tree["outside"])})
        c.call("files/watch", {"path": str(ws / "src")})
        c.call("workspace/revoke", {"path": str(ws)})  # the grant goes, its watches too
        assert c.call("files/watches")["watches"] == []


def test_a_watch_ends_when_its_folder_is_deleted(daemon, tree):
    import shutil

    ws = tree["ws"]
    with _granted(daemon, tree) as c:
        gone = c.call("files/watch", {"path": str(ws / "docs")})
        kept = c.call("files/watch", {"path": str(ws / "src")})
        shutil.rmtree(ws / "docs")
        note = _until(c, "files/changed", lambda p: p["watchId"] == gone["watchId"] and {
            "path": f"{ws}/docs", "kind": "deleted"} in p["changes"])
        assert note.params["path"] == f"{ws}/docs"
        assert [w["watchId"] for w in c.call("files/watches")["watches"]] == [kept["watchId"]]
        import time

        time.sleep(0.5)  # the watcher restarts without the deleted folder
        (ws / "src" / "still.py").write_text("x\n")
        _until(c, "files/changed", lambda p: p["watchId"] == kept["watchId"])
