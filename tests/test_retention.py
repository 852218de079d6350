"""Retention on a real daemon: a large planted history (200,000 run events across 2,000 runs,
inbox items, approvals, automation runs, audit entries), `codexctl gc --dry-run` counting it,
`codexctl gc` deleting exactly what the policies say while another client's calls keep being
answered, and the database file shrinking."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import apsw

from codexd.paths import DB_NAME
from codexd.store.db import iso_time
from tests.helpers.daemon import DaemonProc, make_daemon

DAY = 86_400_000
RUNS_OLD, RUNS_NEW, EVENTS_PER_RUN = 1500, 500, 100


def _plant(db: Path, automation_id: str) -> None:
    now = int(time.time() * 1000)
    old, recent = now - 40 * DAY, now - DAY
    conn = apsw.Connection(str(db))
    payload = json.dumps({"text": "x" * 180})
    with conn:
        for i in range(RUNS_OLD + RUNS_NEW):
            at = old if i < RUNS_OLD else recent
            status = ("succeeded", "failed", "canceled", "interrupted")[i % 4]
            conn.execute("INSERT INTO runs (id, provider, status, request, priority, created_at, "
                         "started_at, finished_at) VALUES (?, 'codex', ?, '{}', 0, ?, ?, ?)",
                         (f"run{i:05d}", status, at, at, at + 1000))
            conn.executemany("INSERT INTO run_events (run_id, seq, type, data, at) VALUES "
                             "(?, ?, 'output', ?, ?)",
                             [(f"run{i:05d}", s, payload, at) for s in range(EVENTS_PER_RUN)])
            conn.execute("INSERT INTO run_artifacts (run_id, kind, name, media_type, content, "
                         "created_at) VALUES (?, 'message', 'final.md', 'text/markdown', 'x', ?)",
                         (f"run{i:05d}", at))
        for i in range(500):  # 300 archived long ago, 100 archived lately, 100 never archived
            archived = now - 40 * DAY if i < 300 else now - 5 * DAY if i < 400 else None
            conn.execute("INSERT INTO inbox_items (kind, title, body, created_at, archived_at) "
                         "VALUES ('run', 't', 'b', ?, ?)", (old, archived))
        for i in range(500):  # 400 answered 100 days ago, 50 still pending, 50 answered lately
            status = "pending" if 400 <= i < 450 else "resolved"
            when = iso_time((now - (DAY if i >= 450 else 100 * DAY)) / 1000)
            conn.execute("INSERT INTO approvals (generation, upstream_id, method, params, status, "
                         "created_at, resolved_at) VALUES (1, ?, 'item/x', '{}', ?, ?, ?)",
                         (str(i), status, when, None if status == "pending" else when))
        for i in range(300):
            conn.execute("INSERT INTO automation_runs (automation_id, scheduled_at, trigger, "
                         "status, created_at) VALUES (?, ?, 'schedule', 'succeeded', ?)",
                         (automation_id, old + i * 60_000, old))
        for i in range(210):
            conn.execute("INSERT INTO audit_log (at, token_id, token_name, remote, method, "
                         "outcome) VALUES (?, 't', 'n', 'r', 'm', 'ok')",
                         (now - (200 * DAY if i < 200 else DAY),))
    conn.close()


def _counts(db: Path) -> dict[str, int]:
    conn = apsw.Connection(str(db))
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in ("runs", "run_events", "run_artifacts", "inbox_items", "approvals",
                          "automation_runs", "audit_log")}
    finally:
        conn.close()


def _size(db: Path) -> int:
    return sum(os.stat(p).st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def test_retention_deletes_what_the_policies_say_and_the_file_shrinks(short_tmp: Path):
    d: DaemonProc = make_daemon(short_tmp).start()
    out = d.ctl("auto", "new", "--name", "nightly", "--rrule", "FREQ=DAILY;BYHOUR=3",
                "--cwd", str(short_tmp), "--json", "--", "tidy up")
    assert out.returncode == 0, out.stderr
    automation_id = json.loads(out.stdout)["automation"]["id"]
    d.stop()
    db = d.state_dir / DB_NAME
    _plant(db, automation_id)
    before = _counts(db)
    assert before["run_events"] == 200_000
    homes = d.state_dir / "codex-homes"  # isolated CODEX_HOMEs: an old run's, a recent one's
    for name in ("run00000", f"run{RUNS_OLD + 1:05d}", "profile-fast"):
        (homes / name).mkdir(parents=True)
        (homes / name / "auth.json").write_text("{}")
    d.start()

    dry = d.ctl("gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = {t["name"]: t for t in json.loads(dry.stdout)["tables"]}
    assert {k: v["eligible"] for k, v in plan.items()} == {
        "run_events": RUNS_OLD * EVENTS_PER_RUN, "run_artifacts": RUNS_OLD, "runs": RUNS_OLD,
        "inbox_items": 300,
        "approvals": 400, "automation_runs": 100, "audit_log": 200, "codex_homes": 1}
    assert all(t["deleted"] == 0 for t in plan.values())
    assert "30 days" in plan["runs"]["rule"] and "inboxRetentionDays" in plan["inbox_items"]["rule"]
    assert _counts(db) == before  # a dry run deletes nothing

    # Another client keeps calling while the pass runs: every call is answered.
    answered, failures = [0], []
    stop = threading.Event()

    def other_client() -> None:
        with d.client() as c:
            while not stop.is_set():
                try:
                    c.call("atom/set", {"key": "soak/k", "value": answered[0]})
                    answered[0] += 1
                except Exception as exc:  # any failure is what the test counts
                    failures.append(repr(exc))

    t = threading.Thread(target=other_client)
    t.start()
    size_before = _size(db)
    try:
        run = d.ctl("gc", "--json", timeout=300)
    finally:
        stop.set()
        t.join(30)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert {x["name"]: x["deleted"] for x in result["tables"]} == {
        k: v["eligible"] for k, v in plan.items()}
    assert failures == [] and answered[0] > 0
    # The deleted run's CODEX_HOME went with it; a live run's and a profile's stay.
    assert sorted(p.name for p in homes.iterdir()) == ["profile-fast", f"run{RUNS_OLD + 1:05d}"]
    human = d.ctl("gc")
    assert human.returncode == 0 and "deleted 0 rows" in human.stdout
    d.stop()

    after = _counts(db)
    assert after == {"runs": RUNS_NEW, "run_events": RUNS_NEW * EVENTS_PER_RUN,
                     "run_artifacts": RUNS_NEW, "inbox_items": 200, "approvals": 100,
                     "automation_runs": 200, "audit_log": 10}
    # The pages came back to the file system: three quarters of the events went, and the file
    # is well under half of what it was.
    assert result["bytesAfter"] < result["bytesBefore"] * 0.5, result
    assert _size(db) < size_before * 0.5


def test_the_daemon_applies_retention_by_itself(short_tmp: Path):
    from tests.helpers import eventually, log_events

    d = make_daemon(short_tmp, config="[retention]\ninterval_minutes = 0.02\n").start()
    d.stop()
    db = d.state_dir / DB_NAME
    conn = apsw.Connection(str(db))
    old = int(time.time() * 1000) - 400 * DAY
    with conn:
        conn.execute("INSERT INTO audit_log (at, token_id, token_name, remote, method, outcome) "
                     "VALUES (?, 't', 'n', 'r', 'm', 'ok')", (old,))
    conn.close()
    d.start()
    try:
        eventually(lambda: _counts(db)["audit_log"] == 0, 20, what="the background pass")
        # The pass logs once its last batch is committed: the line may trail the delete.
        passes = eventually(lambda: log_events(d.log_path, "retention_pass"), 20,
                            what="the pass's log line")
        assert passes[-1]["deleted"] == {"audit_log": 1}
    finally:
        d.stop()


def test_a_database_from_before_retention_is_converted_once(tmp_path: Path):
    from codexd.store import Store

    path = tmp_path / "old.db"
    conn = apsw.Connection(str(path))  # what an older codexd left: auto_vacuum off
    conn.execute("CREATE TABLE keep (v TEXT)")
    conn.execute("INSERT INTO keep VALUES ('still here')")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0  # type: ignore[index]
    conn.close()
    store = Store.open(path)
    try:
        assert store.write_sync(lambda c: c.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2
        assert store.write_sync(lambda c: c.execute("SELECT v FROM keep").fetchall()) == [
            ("still here",)]
    finally:
        store.close()
