"""Schema migrations as a ``PRAGMA user_version`` ladder.

``MIGRATIONS[n]`` takes a database at version ``n`` to ``n + 1``. Each step runs in its own
transaction together with the version bump, so a crash leaves the database at a whole version.
Steps are append-only: once released, a step's SQL is never edited (tests open a checked-in
version-1 database to keep that promise).
"""

from __future__ import annotations

import apsw

from codexd.errors import SchemaTooNew

MIGRATIONS: list[str] = [
    # 0 -> 1: persisted atoms.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE atoms (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('atom_revision', 0);
    """,
    # 1 -> 2: the settings object (one row) and a record of daemon starts and stops.
    """
    CREATE TABLE settings (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE daemon_runs (
        id         INTEGER PRIMARY KEY,
        pid        INTEGER NOT NULL,
        version    TEXT NOT NULL,
        started_at TEXT NOT NULL,
        stopped_at TEXT
    );
    """,
    # 2 -> 3: durable server requests from the app-server (approvals, questions, tool calls).
    """
    CREATE TABLE approvals (
        id          INTEGER PRIMARY KEY,
        generation  INTEGER NOT NULL,
        upstream_id TEXT NOT NULL,
        method      TEXT NOT NULL,
        thread_id   TEXT,
        turn_id     TEXT,
        params      TEXT NOT NULL,
        status      TEXT NOT NULL
                    CHECK (status IN ('pending', 'resolved', 'expired', 'timedOut')),
        result      TEXT,
        resolved_by TEXT,
        reason      TEXT,
        created_at  TEXT NOT NULL,
        resolved_at TEXT
    );
    CREATE INDEX approvals_by_status ON approvals (status, thread_id);
    INSERT INTO meta (key, value) VALUES ('appserver_generation', 0);
    """,
    # 3 -> 4: automations (definitions mirrored to automation.toml), their runs, the inbox.
    """
    CREATE TABLE automations (
        id          TEXT PRIMARY KEY,
        definition  TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('ACTIVE', 'PAUSED')),
        next_run_at INTEGER,
        file_digest TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE automation_runs (
        id            INTEGER PRIMARY KEY,
        automation_id TEXT NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
        scheduled_at  INTEGER NOT NULL,
        trigger       TEXT NOT NULL CHECK (trigger IN ('schedule', 'missed', 'manual')),
        status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                                                      'failed', 'skipped', 'interrupted')),
        decision      TEXT,
        daemon_run    INTEGER,
        thread_id     TEXT,
        turn_id       TEXT,
        summary       TEXT,
        error         TEXT,
        created_at    INTEGER NOT NULL,
        started_at    INTEGER,
        finished_at   INTEGER,
        UNIQUE (automation_id, scheduled_at)
    );
    CREATE INDEX automation_runs_by_status ON automation_runs (status);
    CREATE TABLE inbox_items (
        id            INTEGER PRIMARY KEY,
        kind          TEXT NOT NULL,
        title         TEXT NOT NULL,
        body          TEXT NOT NULL,
        automation_id TEXT,
        run_id        INTEGER,
        thread_id     TEXT,
        approval_id   INTEGER,
        dedupe_key    TEXT UNIQUE,
        created_at    INTEGER NOT NULL,
        read_at       INTEGER,
        archived_at   INTEGER
    );
    CREATE INDEX inbox_items_unread ON inbox_items (archived_at, read_at, id);
    """,
    # 4 -> 5: provider runs (codex exec, claude -p), their events, conversations, profiles.
    """
    CREATE TABLE conversations (
        id          TEXT PRIMARY KEY,
        provider    TEXT NOT NULL,
        title       TEXT NOT NULL,
        session_id  TEXT,
        defaults    TEXT NOT NULL,
        archived    INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        id              TEXT PRIMARY KEY,
        provider        TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                                            'failed', 'canceled', 'interrupted')),
        request         TEXT NOT NULL,
        priority        INTEGER NOT NULL,
        attempt         INTEGER NOT NULL DEFAULT 0,
        conversation_id TEXT REFERENCES conversations (id),
        session_id      TEXT,
        rerun_of        TEXT,
        exit_code       INTEGER,
        reason          TEXT,
        error           TEXT,
        result_text     TEXT,
        last_seq        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER,
        started_at      INTEGER,
        finished_at     INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX runs_by_status ON runs (status, created_at);
    CREATE INDEX runs_by_conversation ON runs (conversation_id, created_at);
    CREATE TABLE run_events (
        run_id TEXT NOT NULL,
        seq    INTEGER NOT NULL,
        type   TEXT NOT NULL,
        data   TEXT NOT NULL,
        at     INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE profiles (
        name       TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 5 -> 6: the processes codexd started and has not reaped yet (to find the ones a killed
    # daemon left behind), and paused run-queue lanes.
    """
    CREATE TABLE child_processes (
        pid         INTEGER PRIMARY KEY,
        start_ticks INTEGER,
        kind        TEXT NOT NULL,
        unit_id     TEXT NOT NULL,
        daemon_run  INTEGER,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE queue_lanes (
        provider  TEXT PRIMARY KEY,
        paused_at INTEGER NOT NULL,
        reason    TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 6 -> 7: per-device tokens for the WebSocket listener (only a hash of the secret is
    # kept), and the audit trail of what token holders did.
    """
    CREATE TABLE audit_log (
        id         INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        token_id   TEXT NOT NULL,
        token_name TEXT NOT NULL,
        remote     TEXT NOT NULL,
        method     TEXT NOT NULL,
        outcome    TEXT NOT NULL
    );
    CREATE INDEX audit_log_at ON audit_log (at);
    CREATE TABLE device_tokens (
        token_id     TEXT PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        role         TEXT NOT NULL,
        secret_hash  TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER
    ) WITHOUT ROWID;
    """,
    # 7 -> 8: workspace grants, the folders files/*, git/* and token holders may work in.
    """
    CREATE TABLE workspace_grants (
        real_path  TEXT PRIMARY KEY,
        path       TEXT NOT NULL,
        name       TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 8 -> 9: what each installed provider CLI offers, probed once per binary (path, mtime,
    # size); the status is re-assessed from the flags at every load.
    """
    CREATE TABLE capability_snapshots (
        path             TEXT PRIMARY KEY,
        provider         TEXT NOT NULL,
        mtime_ns         INTEGER NOT NULL,
        size             INTEGER NOT NULL,
        version          TEXT,
        flags            TEXT NOT NULL,
        permission_modes TEXT NOT NULL,
        checked_at       INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 9 -> 10: a lane paused by a usage limit resumes by itself at resume_at; a run resumed
    # after a limit counts it apart from its retries.
    """
    ALTER TABLE queue_lanes ADD COLUMN resume_at INTEGER;
    ALTER TABLE runs ADD COLUMN limit_resumes INTEGER NOT NULL DEFAULT 0;
    """,
    # 10 -> 11: what a finished run produced (its final message, structured output, the diff
    # of the files it changed), for run/artifacts and exports.
    """
    CREATE TABLE run_artifacts (
        run_id     TEXT NOT NULL,
        kind       TEXT NOT NULL,
        name       TEXT NOT NULL,
        media_type TEXT NOT NULL,
        content    TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, kind, name)
    );
    """,
    # 11 -> 12: interactive provider sessions (session/start) are runs too: their mode, and
    # the terminal they run in while open.
    """
    ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'exec';
    ALTER TABLE runs ADD COLUMN terminal_id TEXT;
    """,
    # 12 -> 13: runs on a fleet (the temporal executor): the attempt each event belongs to,
    # the worker of a run's latest attempt, and per dispatched run its workflow, the token its
    # events are read with, and how far they were read (attempt, event, workflow notes).
    """
    ALTER TABLE run_events ADD COLUMN attempt INTEGER;
    ALTER TABLE runs ADD COLUMN worker TEXT;
    CREATE TABLE run_remote (
        run_id      TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        workflow_id TEXT NOT NULL,
        token       TEXT NOT NULL,
        attempt     INTEGER NOT NULL DEFAULT 0,
        received    INTEGER NOT NULL DEFAULT 0,
        notes       INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: apsw.Connection, *, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the schema up to ``target``; returns (version before, version after).

    Raises:
        SchemaTooNew: the database was written by a newer codexd; nothing is changed.
    """
    before = user_version(conn)
    if before > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {before} is newer than this codexd understands "
            f"(up to {SCHEMA_VERSION}); upgrade codexd or point --state-dir elsewhere"
        )
    for version in range(before, target):
        with conn:
            conn.execute(MIGRATIONS[version])
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return before, max(before, target)
