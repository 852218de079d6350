"""Automations against a real daemon (no app-server): definitions, files, errors, inbox."""

from __future__ import annotations

import calendar
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
import tomlkit

from codexd.client import Client
from codexd.errors import ErrorCode, RpcError
from tests.helpers.daemon import DaemonProc, make_daemon


def config(base: Path, extra: str = "") -> str:
    return f'[automations]\ncodex_home = "{base / "codex-home"}"\ntimezone = "Europe/Berlin"\n' \
        + extra


@pytest.fixture
def auto(short_tmp: Path):
    (short_tmp / "proj").mkdir()
    d = make_daemon(short_tmp, config=config(short_tmp)).start()
    yield d
    d.stop()
    print("--- daemon log (last 40 lines) ---\n" + "\n".join(d.log().splitlines()[-40:]))


def root(d: DaemonProc) -> Path:
    return d.base / "codex-home" / "automations"


def cron(c: Client, d: DaemonProc, **kw: Any) -> dict[str, Any]:
    params = {"kind": "cron", "prompt": "Summarize the repo", "rrule": "FREQ=DAILY;BYHOUR=9;"
              "BYMINUTE=0", "cwds": [str(d.base / "proj")], **kw}
    return c.call("automation/create", params)  # type: ignore[no-any-return]


def error(c: Client, method: str, params: Any) -> RpcError:
    with pytest.raises(RpcError) as exc:
        c.call(method, params)
    return exc.value


def wait_until(pred: Any, what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def test_create_writes_the_desktop_file_and_announces_it(auto):
    with auto.client() as watcher, auto.client() as c:
        info = cron(c, auto, name="Morning summary", model="gpt-5", reasoningEffort="high")
        a = info["automation"]
        assert a["id"].startswith("morning-summary-") and a["status"] == "ACTIVE"
        assert a["timezone"] == "Europe/Berlin" and a["missedPolicy"] == "runOnce"
        path = root(auto) / a["id"] / "automation.toml"
        assert info["file"] == str(path)
        doc = tomlkit.parse(path.read_text()).unwrap()
        assert doc["version"] == 1 and doc["id"] == a["id"] and doc["kind"] == "cron"
        assert doc["status"] == "ACTIVE" and doc["rrule"] == "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"
        assert doc["cwds"] == [str(auto.base / "proj")] and doc["model"] == "gpt-5"
        assert doc["reasoning_effort"] == "high" and doc["created_at"] == a["createdAt"]
        # Next run: 09:00 Berlin, in the future, within a day.
        preview = c.call("automation/preview", {"automationId": a["id"], "count": 1})
        assert preview["occurrences"][0]["at"] == info["nextRunAt"]
        assert "T09:00:00+0" in preview["occurrences"][0]["local"]
        assert 0 < info["nextRunAt"] - time.time() * 1000 <= 86_400_000
        note = watcher.next_notification(timeout=5)
        assert note.method == "automation/changed"
        assert note.params["change"] == "created" and note.params["automationId"] == a["id"]
        assert c.call("automation/get", {"automationId": a["id"]}) == info
        assert c.call("automation/list")["automations"] == [info]


def test_update_pause_resume_delete(auto):
    with auto.client() as c:
        a = cron(c, auto)["automation"]
        aid = a["id"]
        path = root(auto) / aid / "automation.toml"
        # A hand-added comment and an unknown key survive codexd's rewrite.
        path.write_text("# my notes\n" + path.read_text() + 'color = "blue"\n')
        c.call("automation/rescan")
        up = c.call("automation/update", {"automationId": aid, "rrule": "FREQ=WEEKLY;BYDAY=SA;"
                                          "BYHOUR=7;BYMINUTE=15", "model": "o3"})
        assert up["automation"]["rrule"].startswith("FREQ=WEEKLY")
        assert up["automation"]["model"] == "o3"
        local = c.call("automation/preview", {"automationId": aid, "count": 1})["occurrences"]
        assert "T07:15:00+0" in local[0]["local"]
        text = path.read_text()
        assert text.startswith("# my notes") and 'color = "blue"' in text and "FREQ=WEEKLY" in text
        cleared = c.call("automation/update", {"automationId": aid, "model": None})
        assert cleared["automation"]["model"] is None and "model" not in path.read_text()

        paused = c.call("automation/pause", {"automationId": aid})
        assert paused["automation"]["status"] == "PAUSED" and "nextRunAt" not in paused
        assert 'status = "PAUSED"' in path.read_text()
        assert c.call("automation/list", {"status": "ACTIVE"})["automations"] == []
        resumed = c.call("automation/resume", {"automationId": aid})
        assert resumed["automation"]["status"] == "ACTIVE" and resumed["nextRunAt"] > 0

        assert c.call("automation/delete", {"automationId": aid}) == {"automationId": aid,
                                                                      "deleted": True}
        assert not path.exists() and not path.parent.exists()
        assert error(c, "automation/get", {"automationId": aid}).code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(("params", "field", "text"), [
    ({"rrule": "FREQ=SOMETIMES"}, "rrule", "invalid rrule"),
    ({"rrule": "FREQ=MINUTELY;INTERVAL=1;BYSECOND=0,30"}, "rrule", "minimum interval"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ({"cwds": ["/no/such/folder"]}, "cwds", "does not exist"),
    ({"cwds": ["relative/path"]}, "cwds", "not an absolute path"),
    ({"cwds": []}, "cwds", "at least one working directory"),
    ({"kind": "heartbeat", "cwds": []}, "targetThreadId", "heartbeat"),
    ({"prompt": "   "}, "prompt", "empty"),
    ({"reasoningEffort": "maximal"}, "reasoningEffort", "reasoning_effort"),
    ({"id": "../escape"}, "id", "invalid id"),
    ({"kind": "daily"}, "kind", "Invalid enum value"),
    ({"missedPolicy": "sometimes"}, "missedPolicy", "Invalid enum value"),
])
def test_bad_definitions_are_refused_with_the_field(auto, params, field, text):
    with auto.client() as c:
        base = {"kind": "cron", "prompt": "p", "rrule": "FREQ=DAILY",
                "cwds": [str(auto.base / "proj")]}
        err = error(c, "automation/create", {**base, **params})
        assert err.code == ErrorCode.INVALID_PARAMS, err
        assert (err.data or {}).get("field") == field and text in err.message, err
        assert c.call("automation/list")["automations"] == []
        assert not root(auto).exists() or not any(root(auto).iterdir())


def test_ids_unknown_and_taken(auto):
    with auto.client() as c:
        cron(c, auto, id="mine")
        assert error(c, "automation/create", {
            "kind": "cron", "prompt": "p", "rrule": "FREQ=DAILY", "id": "mine",
            "cwds": [str(auto.base / "proj")]}).code == ErrorCode.CONFLICT
        for method in ("automation/get", "automation/pause", "automation/delete",
                       "automation/runNow", "automation/runs"):
            err = error(c, method, {"automationId": "nope"})
            assert err.code == ErrorCode.NOT_FOUND and "codexctl auto ls" in err.message
        assert error(c, "automation/update", {"automationId": "mine"}).code == \
            ErrorCode.INVALID_PARAMS
        assert error(c, "automation/preview", {}).code == ErrorCode.INVALID_PARAMS
        assert error(c, "automation/preview", {"rrule": "FREQ=NEVER"}).data == {"field": "rrule"}


def test_hand_written_files_are_picked_up_and_broken_ones_reported(auto):
    with auto.client() as c:
        folder = root(auto) / "by-hand"
        folder.mkdir(parents=True)
        # The desktop's older single-cwd form, no timezone (the daemon's default applies).
        (folder / "automation.toml").write_text(
            'version = 1\nid = "by-hand"\nkind = "cron"\nname = "By hand"\n'
            'prompt = "Check the build"\nstatus = "ACTIVE"\n'
            'rrule = "RRULE:FREQ=WEEKLY;BYHOUR=9;BYMINUTE=0;BYDAY=MO,TU,WE,TH,FR"\n'
            f'cwd = "{auto.base / "proj"}"\ncreated_at = 1700000000000\n'
            'updated_at = 1700000000000\n')
        broken = root(auto) / "broken"
        broken.mkdir()
        (broken / "automation.toml").write_text('kind = "cron"\nprompt = "x"\n')
        result = c.call("automation/rescan")
        assert result["added"] == ["by-hand"] and result["removed"] == []
        (bad,) = result["invalid"]
        assert bad["path"] == str(broken / "automation.toml") and "rrule" in bad["message"]
        got = c.call("automation/get", {"automationId": "by-hand"})["automation"]
        assert got["cwds"] == [str(auto.base / "proj")] and got["timezone"] == "Europe/Berlin"
        items = c.call("inbox/list")["items"]
        assert [i["kind"] for i in items] == ["automationInvalid"]
        assert str(broken / "automation.toml") in items[0]["body"]
        # Reported once per content, not at every rescan.
        c.call("automation/rescan")
        assert len(c.call("inbox/list")["items"]) == 1

        # An edit by hand, picked up on SIGHUP.
        path = folder / "automation.toml"
        path.write_text(path.read_text().replace('prompt = "Check the build"',
                                                 'prompt = "Check the nightly build"'))
        auto.signal(signal.SIGHUP)
        wait_until(lambda: c.call("automation/get", {"automationId": "by-hand"})
                   ["automation"]["prompt"] == "Check the nightly build", "edit not picked up")
        # Removing the file by hand deletes the automation.
        path.unlink()
        assert c.call("automation/rescan")["removed"] == ["by-hand"]
        assert c.call("automation/list")["automations"] == []
    log = auto.log()
    assert "automation_file_invalid" in log and "missing key 'rrule'" in log


def test_periodic_rescan(short_tmp):
    (short_tmp / "proj").mkdir()
    d = make_daemon(short_tmp, config=config(short_tmp, "rescan_seconds = 0.5\n")).start()
    try:
        folder = root(d) / "periodic"
        folder.mkdir(parents=True)
        (folder / "automation.toml").write_text(
            'kind = "heartbeat"\nprompt = "go on"\nrrule = "FREQ=HOURLY"\n'
            'target_thread_id = "thr_1"\n')
        with d.client() as c:
            wait_until(lambda: c.call("automation/list")["automations"], "never picked up")
    finally:
        d.stop()


def test_inbox_read_and_archive_are_all_or_nothing(auto):
    with auto.client() as c:
        for name in ("one", "two"):
            folder = root(auto) / name
            folder.mkdir(parents=True)
            (folder / "automation.toml").write_text("not = toml = at all")
        c.call("automation/rescan")
        items = c.call("inbox/list")["items"]
        assert len(items) == 2 and c.call("inbox/list")["unread"] == 2
        ids = [i["itemId"] for i in items]
        err = error(c, "inbox/markRead", {"itemIds": [ids[0], 999]})
        assert err.code == ErrorCode.NOT_FOUND and err.data == {"itemIds": [999]}
        assert c.call("inbox/list", {"unreadOnly": True})["unread"] == 2  # nothing changed
        assert c.call("inbox/markRead", {"itemIds": [ids[0]]}) == {"itemIds": [ids[0]]}
        assert [i["itemId"] for i in c.call("inbox/list", {"unreadOnly": True})["items"]] == \
            [ids[1]]
        c.call("inbox/archive", {"itemIds": [ids[1]]})
        assert [i["itemId"] for i in c.call("inbox/list")["items"]] == [ids[0]]
        assert len(c.call("inbox/list", {"includeArchived": True})["items"]) == 2
        assert error(c, "inbox/archive", {"itemIds": []}).code == ErrorCode.INVALID_PARAMS


def test_a_due_run_without_an_app_server_fails_clearly_and_reports(auto):
    with auto.client() as c:
        start = time.gmtime(time.time() + 2)
        dtstart = time.strftime("%Y%m%dT%H%M%SZ", start)
        a = cron(c, auto, rrule=f"DTSTART:{dtstart}\nRRULE:FREQ=DAILY")["automation"]
        seen = []
        while len([n for n in seen if n.method == "automation/runCompleted"]) < 1:
            seen.append(c.next_notification(timeout=15))
        methods = [n.method for n in seen]
        assert methods.index("automation/runStarted") < methods.index("automation/runCompleted")
        done = next(n for n in seen if n.method == "automation/runCompleted").params["run"]
        assert done["status"] == "failed" and done["trigger"] == "schedule"
        assert "appserver.enabled = false" in done["error"]
        assert done["scheduledAt"] == calendar.timegm(start) * 1000
        items = wait_until(lambda: c.call("inbox/list")["items"], "no inbox item")
        assert items[0]["kind"] == "runFailed" and items[0]["runId"] == done["runId"]
        (run,) = c.call("automation/runs", {"automationId": a["id"]})["runs"]
        assert run["status"] == "failed" and run["durationMs"] >= 0


def test_definitions_and_runs_survive_a_restart(short_tmp):
    (short_tmp / "proj").mkdir()
    d = make_daemon(short_tmp, config=config(short_tmp)).start()
    with d.client() as c:
        a = cron(c, d)["automation"]
        run = c.call("automation/runNow", {"automationId": a["id"]})["run"]
        wait_until(lambda: c.call("automation/runs", {"automationId": a["id"]})["runs"][0]
                   ["status"] == "failed", "the manual run did not finish")
    d.stop()
    d.start()
    try:
        with d.client() as c:
            assert c.call("automation/get", {"automationId": a["id"]})["automation"] == a
            (again,) = c.call("automation/runs", {"automationId": a["id"]})["runs"]
            assert again["runId"] == run["runId"] and again["trigger"] == "manual"
    finally:
        d.stop()


@pytest.mark.parametrize("policy", ["runOnce", "skip"])
def test_runs_missed_while_down_follow_the_policy(short_tmp, policy):
    (short_tmp / "proj").mkdir()
    d = make_daemon(short_tmp, config=config(short_tmp)).start()
    with d.client() as c:
        a = cron(c, d, rrule="DTSTART:20260101T000000Z\nRRULE:FREQ=MINUTELY",
                 missedPolicy=policy)["automation"]
    d.stop()
    # As a daemon that stopped three and a half minutes ago would have left it.
    now = int(time.time() * 1000)
    conn = apsw.Connection(str(d.state_dir / "codexd.db"))
    conn.execute("UPDATE automations SET next_run_at = ?", (now // 60_000 * 60_000 - 180_000,))
    conn.close()
    d.start()
    try:
        with d.client() as c:
            runs = wait_until(lambda: [r for r in c.call("automation/runs",
                                                         {"automationId": a["id"]})["runs"]
                                       if r["status"] in ("failed", "skipped")], "no run")
            (run,) = runs
            assert run["trigger"] == "missed"
            # 3 min 30 s down: the occurrences 3 min ago, 2, 1 and this minute's (or 5 when the
            # clock crossed a minute meanwhile), decided once.
            assert re.match(r"[45] scheduled runs missed \(first due ", run["decision"]), run
            if policy == "skip":
                assert run["status"] == "skipped" and "missed_policy = skip" in run["decision"]
            else:
                assert run["status"] == "failed" and "running once now" in run["decision"]
            # The next run is in the future again.
            assert c.call("automation/get", {"automationId": a["id"]})["nextRunAt"] > now
    finally:
        d.stop()
    assert "automation_runs_missed" in d.log()


def test_codexctl_auto_and_inbox(auto):
    proj = str(auto.base / "proj")
    out = auto.ctl("auto", "new", "--cwd", proj, "--rrule", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0",
                   "--name", "daily", "--json", "--", "Say hello")
    assert out.returncode == 0, out.stderr
    aid = json.loads(out.stdout)["automation"]["id"]
    ls = auto.ctl("auto", "ls")
    assert aid in ls.stdout and "daily" in ls.stdout and "ACTIVE" in ls.stdout
    assert json.loads(auto.ctl("auto", "ls", "--json").stdout)["automations"][0]["automation"][
        "id"] == aid
    show = auto.ctl("auto", "show", aid)
    assert "Say hello" in show.stdout and "next run" in show.stdout
    assert auto.ctl("auto", "edit", aid, "--prompt", "Say bye").returncode == 0
    assert "Say bye" in auto.ctl("auto", "show", aid).stdout
    prev = auto.ctl("auto", "preview", "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0", "--count",
                    "3", "--tz", "America/New_York")
    assert prev.returncode == 0 and prev.stdout.count("T09:00:00-0") == 3, prev.stdout
    assert auto.ctl("auto", "pause", aid).returncode == 0
    assert "PAUSED" in auto.ctl("auto", "ls").stdout
    assert auto.ctl("auto", "resume", aid).returncode == 0
    run = auto.ctl("auto", "run", aid, "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["run"]["trigger"] == "manual"
    bad = auto.ctl("auto", "new", "--cwd", proj, "--rrule", "FREQ=BOGUS", "--", "x")
    assert bad.returncode == 1 and "invalid rrule" in bad.stderr
    assert auto.ctl("auto", "show", "nope").returncode == 1
    wait_until(lambda: "daily: failed" in auto.ctl("inbox").stdout, "no inbox item")
    items = json.loads(auto.ctl("inbox", "ls", "--json").stdout)["items"]
    item_id = str(items[0]["itemId"])
    assert auto.ctl("inbox", "read", item_id).returncode == 0
    assert json.loads(auto.ctl("inbox", "ls", "--unread", "--json").stdout)["items"] == []
    assert auto.ctl("inbox", "archive", item_id).returncode == 0
    assert json.loads(auto.ctl("inbox", "--json").stdout)["items"] == []
    assert auto.ctl("auto", "rm", aid).returncode == 0
    assert json.loads(auto.ctl("auto", "ls", "--json").stdout)["automations"] == []
