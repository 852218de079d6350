"""Provider runs, their events, conversations and profiles in SQLite. Times are Unix ms."""

from __future__ import annotations

import time
from typing import Any

import apsw
import msgspec

from codexd.protocol.runs import Conversation, Options, Profile, Run, RunEvent, RunRequest
from codexd.runs import states

_req_dec = msgspec.json.Decoder(RunRequest)
_opt_dec = msgspec.json.Decoder(Options)
_enc = msgspec.json.Encoder()


def now_ms() -> int:
    return int(time.time() * 1000)


_COLS = ("id, status, request, attempt, created_at, last_seq, conversation_id, session_id, "
         "rerun_of, exit_code, reason, error, result_text, next_attempt_at, started_at, "
         "finished_at, limit_resumes, mode, terminal_id, worker")


def _run(r: Any) -> Run:
    return Run(run_id=r[0], status=r[1], request=_req_dec.decode(r[2]), attempt=r[3],
               created_at=r[4], last_seq=r[5], conversation_id=r[6], session_id=r[7],
               rerun_of=r[8], exit_code=r[9], reason=r[10], error=r[11], result_text=r[12],
               next_attempt_at=r[13], started_at=r[14], finished_at=r[15],
               limit_resumes=r[16], mode=r[17], terminal_id=r[18], worker=r[19])


def insert(conn: apsw.Connection, run_id: str, req: RunRequest, *, conversation_id: str | None,
           rerun_of: str | None, session_id: str | None, mode: str = "exec") -> Run:
    r = conn.execute(
        f"INSERT INTO runs (id, provider, status, request, priority, conversation_id, rerun_of, "
        f"session_id, created_at, mode) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?) "
        f"RETURNING {_COLS}",
        (run_id, req.provider, _enc.encode(req).decode(), req.priority, conversation_id,
         rerun_of, session_id, now_ms(), mode)).fetchone()
    return _run(r)


def get(conn: apsw.Connection, run_id: str) -> Run | None:
    r = conn.execute(f"SELECT {_COLS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return _run(r) if r else None


def update(conn: apsw.Connection, run_id: str, **fields: Any) -> Run | None:
    """Change a run's columns; a ``status`` change must be an edge of :mod:`runs.states`."""
    if "status" in fields:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        states.check(str(row[0]), str(fields["status"]))
    cols = ", ".join(f"{k} = ?" for k in fields)
    r = conn.execute(f"UPDATE runs SET {cols} WHERE id = ? RETURNING {_COLS}",
                     (*fields.values(), run_id)).fetchone()
    return _run(r) if r else None


def list_(conn: apsw.Connection, *, status: str | None, provider: str | None,
          conversation_id: str | None, limit: int, before: tuple[int, str] | None,
          mode: str | None = None) -> list[Run]:
    where: list[str] = []
    args: list[Any] = []
    for col, value in (("status", status), ("provider", provider),
                       ("conversation_id", conversation_id), ("mode", mode)):
        if value is not None:
            where.append(f"{col} = ?")
            args.append(value)
    if before is not None:
        where.append("(created_at, id) < (?, ?)")
        args += list(before)
    sql = f"SELECT {_COLS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    return [_run(r) for r in conn.execute(sql, (*args, limit))]


def by_status(conn: apsw.Connection, statuses: tuple[str, ...]) -> list[Run]:
    marks = ",".join("?" * len(statuses))
    return [_run(r) for r in conn.execute(
        f"SELECT {_COLS} FROM runs WHERE status IN ({marks}) ORDER BY created_at, id", statuses)]


def count_queued(conn: apsw.Connection) -> int:
    r = conn.execute("SELECT count(*) FROM runs WHERE status = 'queued'").fetchone()
    return int(r[0]) if r else 0


#: run id, seq, type, redacted JSON data, at (ms), attempt (None: not during an attempt)
EventRow = tuple[str, int, str, str, int, int | None]


def add_events(conn: apsw.Connection, rows: list[EventRow]) -> None:
    conn.executemany("INSERT INTO run_events (run_id, seq, type, data, at, attempt) "
                     "VALUES (?, ?, ?, ?, ?, ?)", rows)
    last: dict[str, int] = {}
    for run_id, seq, *_ in rows:
        last[run_id] = max(seq, last.get(run_id, 0))
    conn.executemany("UPDATE runs SET last_seq = max(last_seq, ?) WHERE id = ?",
                     [(seq, run_id) for run_id, seq in last.items()])


def events(conn: apsw.Connection, run_id: str, after_seq: int, limit: int) -> list[RunEvent]:
    return [RunEvent(run_id=run_id, seq=r[0], type=r[1], data=msgspec.Raw(r[2].encode()), at=r[3],
                     attempt=r[4])
            for r in conn.execute("SELECT seq, type, data, at, attempt FROM run_events WHERE "
                                  "run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                                  (run_id, after_seq, limit))]


# ------------------------------------------------------------------- runs on a fleet

Remote = tuple[str, str, int, int, int]  # workflow id, token, attempt, received, notes


def remote_put(conn: apsw.Connection, run_id: str, workflow_id: str, token: str) -> Remote:
    """A new dispatch of the run: its workflow and token; nothing read yet."""
    conn.execute("INSERT INTO run_remote (run_id, workflow_id, token, created_at) VALUES "
                 "(?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET workflow_id = excluded."
                 "workflow_id, token = excluded.token, attempt = 0, received = 0, notes = 0, "
                 "created_at = excluded.created_at", (run_id, workflow_id, token, now_ms()))
    return workflow_id, token, 0, 0, 0


def remote_get(conn: apsw.Connection, run_id: str) -> Remote | None:
    r = conn.execute("SELECT workflow_id, token, attempt, received, notes FROM run_remote "
                     "WHERE run_id = ?", (run_id,)).fetchone()
    return (r[0], r[1], r[2], r[3], r[4]) if r else None


def remote_drop(conn: apsw.Connection, run_id: str) -> None:
    """The dispatch is over (its workflow is done)."""
    conn.execute("DELETE FROM run_remote WHERE run_id = ?", (run_id,))


def remote_cursor(conn: apsw.Connection, run_id: str, attempt: int, received: int,
                  notes: int) -> None:
    conn.execute("UPDATE run_remote SET attempt = ?, received = ?, notes = ? WHERE run_id = ?",
                 (attempt, received, notes, run_id))


# ------------------------------------------------------------------------ conversations

_CONV = "id, provider, title, archived, created_at, updated_at, session_id, defaults"


def _conv(r: Any, runs: list[str] | None = None) -> Conversation:
    return Conversation(conversation_id=r[0], provider=r[1], title=r[2], archived=bool(r[3]),
                        created_at=r[4], updated_at=r[5], session_id=r[6],
                        defaults=_opt_dec.decode(r[7]), runs=runs)


def conv_insert(conn: apsw.Connection, conv_id: str, provider: str, title: str,
                defaults: Options) -> Conversation:
    now = now_ms()
    r = conn.execute(
        f"INSERT INTO conversations (id, provider, title, defaults, created_at, updated_at) "
        f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_CONV}",
        (conv_id, provider, title, _enc.encode(defaults).decode(), now, now)).fetchone()
    return _conv(r)


def conv_get(conn: apsw.Connection, conv_id: str, *,
             with_runs: bool = False) -> Conversation | None:
    r = conn.execute(f"SELECT {_CONV} FROM conversations WHERE id = ?", (conv_id,)).fetchone()
    if not r:
        return None
    runs = None
    if with_runs:
        runs = [x[0] for x in conn.execute(
            "SELECT id FROM runs WHERE conversation_id = ? ORDER BY created_at, id", (conv_id,))]
    return _conv(r, runs)


def conv_update(conn: apsw.Connection, conv_id: str, **fields: Any) -> Conversation | None:
    fields["updated_at"] = now_ms()
    cols = ", ".join(f"{k} = ?" for k in fields)
    r = conn.execute(f"UPDATE conversations SET {cols} WHERE id = ? RETURNING {_CONV}",
                     (*fields.values(), conv_id)).fetchone()
    return _conv(r) if r else None


def conv_list(conn: apsw.Connection, *, include_archived: bool,
              provider: str | None) -> list[Conversation]:
    sql = f"SELECT {_CONV} FROM conversations WHERE 1"
    args: list[Any] = []
    if not include_archived:
        sql += " AND archived = 0"
    if provider:
        sql += " AND provider = ?"
        args.append(provider)
    return [_conv(r) for r in conn.execute(sql + " ORDER BY updated_at DESC, id", args)]


# ----------------------------------------------------------------------------- profiles


def profile_save(conn: apsw.Connection, name: str, defaults: Options) -> Profile:
    now = now_ms()
    conn.execute("INSERT INTO profiles (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT "
                 "(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                 (name, _enc.encode(defaults).decode(), now))
    return Profile(name=name, defaults=defaults, updated_at=now)


def profile_get(conn: apsw.Connection, name: str) -> Profile | None:
    r = conn.execute("SELECT value, updated_at FROM profiles WHERE name = ?", (name,)).fetchone()
    return Profile(name=name, defaults=_opt_dec.decode(r[0]), updated_at=r[1]) if r else None


def profile_list(conn: apsw.Connection) -> list[Profile]:
    return [Profile(name=r[0], defaults=_opt_dec.decode(r[1]), updated_at=r[2])
            for r in conn.execute("SELECT name, value, updated_at FROM profiles ORDER BY name")]


def profile_delete(conn: apsw.Connection, name: str) -> bool:
    conn.execute("DELETE FROM profiles WHERE name = ?", (name,))
    return conn.changes() > 0


# ---------------------------------------------------------------------------- queue lanes


def lane_pause(conn: Any, provider: str, reason: str, at: int,
               resume_at: int | None = None) -> None:
    """Pause a lane; ``resume_at``: it resumes by itself then (a usage limit's reset)."""
    conn.execute("INSERT INTO queue_lanes (provider, paused_at, reason, resume_at) "
                 "VALUES (?, ?, ?, ?) ON CONFLICT (provider) DO UPDATE SET "
                 "reason = excluded.reason, resume_at = excluded.resume_at",
                 (provider, at, reason, resume_at))


def lane_resume(conn: Any, provider: str | None) -> None:
    if provider is None:
        conn.execute("DELETE FROM queue_lanes")
    else:
        conn.execute("DELETE FROM queue_lanes WHERE provider = ?", (provider,))


def lanes_paused(conn: Any) -> dict[str, str]:
    return {str(p): str(r) for p, r in
            conn.execute("SELECT provider, reason FROM queue_lanes ORDER BY provider")}


def lanes_resume_at(conn: Any) -> dict[str, int]:
    """Lanes that resume by themselves: provider → when (Unix ms)."""
    return {str(p): int(t) for p, t in conn.execute(
        "SELECT provider, resume_at FROM queue_lanes WHERE resume_at IS NOT NULL")}


# ----------------------------------------------------------------------------- artifacts


def put_artifacts(conn: Any, run_id: str, items: list[tuple[str, str, str, str]]) -> None:
    """(kind, name, media type, content) of a run's artifacts; an attempt's replace earlier."""
    at = now_ms()
    conn.execute("DELETE FROM run_artifacts WHERE run_id = ?", (run_id,))
    for kind, name, media_type, content in items:
        conn.execute("INSERT INTO run_artifacts (run_id, kind, name, media_type, content, "
                     "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (run_id, kind, name, media_type, content, at))


def artifacts(conn: Any, run_id: str) -> list[tuple[str, str, str, str, int]]:
    return [(str(k), str(n), str(m), str(c), int(t)) for k, n, m, c, t in conn.execute(
        "SELECT kind, name, media_type, content, created_at FROM run_artifacts "
        "WHERE run_id = ? ORDER BY kind, name", (run_id,))]
