"""An automation's definition, and its ``automation.toml`` file in the Codex desktop's format.

The file lives at ``$CODEX_HOME/automations/<id>/automation.toml`` and carries the desktop's keys
(``version = 1``, ``id``, ``kind``, ``name``, ``prompt``, ``status``, ``rrule``, ``model``,
``reasoning_effort``, ``execution_environment``, ``cwds`` (older files: ``cwd``),
``target_thread_id``, ``created_at``/``updated_at`` in Unix ms) plus two of codexd's own:
``timezone`` (IANA; absent = the daemon's zone) and ``missed_policy`` (``runOnce``|``skip``).
Keys codexd does not know are kept when codexd rewrites a file it did not create.

Writes are atomic (temp file in the same folder, fsync, rename). Everything here is synchronous
file I/O: callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import tomlkit
import tomlkit.exceptions

from codexd import fsutil
from codexd.automations import schedule

Kind = Literal["cron", "heartbeat"]
Status = Literal["ACTIVE", "PAUSED"]
MissedPolicy = Literal["runOnce", "skip"]
KINDS = ("cron", "heartbeat")
STATUSES = ("ACTIVE", "PAUSED")
MISSED_POLICIES = ("runOnce", "skip")
EFFORTS = ("minimal", "low", "medium", "high", "xhigh", "none")
FILE_NAME = "automation.toml"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_PROMPT = 100_000


class InvalidDefinition(ValueError):
    """A definition (from a client or a file) is not usable; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Definition(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What an automation is. Also its wire form (camelCase) inside ``Automation``."""

    id: str
    kind: Kind
    name: str
    prompt: str
    status: Status = "ACTIVE"
    rrule: str
    timezone: str
    cwds: list[str] = msgspec.field(default_factory=list)
    model: str | None = None
    reasoning_effort: str | None = None
    execution_environment: str | None = None
    target_thread_id: str | None = None
    missed_policy: MissedPolicy = "runOnce"
    created_at: int
    updated_at: int


def check(d: Definition, *, now_ms: int, min_interval_seconds: float,
          cwds_must_exist: bool) -> schedule.Schedule:
    """Validate everything but the id's uniqueness; returns the parsed schedule.

    Raises:
        InvalidDefinition: naming the field and the problem.
    """
    if not ID_RE.match(d.id):
        raise InvalidDefinition(f"invalid id {d.id!r}: letters, digits, '.', '_' and '-' only, "
                                "at most 128", "id")
    if not d.prompt.strip():
        raise InvalidDefinition("the prompt is empty", "prompt")
    if len(d.prompt) > MAX_PROMPT:
        raise InvalidDefinition(f"the prompt is longer than {MAX_PROMPT} characters", "prompt")
    if not d.name.strip():
        raise InvalidDefinition("the name is empty", "name")
    if d.reasoning_effort is not None and d.reasoning_effort not in EFFORTS:
        raise InvalidDefinition(f"reasoning_effort must be one of {', '.join(EFFORTS)}",
                                "reasoningEffort")
    if d.kind == "heartbeat" and not d.target_thread_id:
        raise InvalidDefinition("a heartbeat automation wakes an existing thread: give "
                                "targetThreadId (the thread to continue)", "targetThreadId")
    if d.kind == "cron" and not d.cwds:
        raise InvalidDefinition("a cron automation starts a new thread each run: give at least "
                                "one working directory in cwds", "cwds")
    for cwd in d.cwds:
        if not os.path.isabs(cwd):
            raise InvalidDefinition(f"cwd {cwd!r} is not an absolute path", "cwds")
        if cwds_must_exist and not os.path.isdir(cwd):
            raise InvalidDefinition(f"cwd {cwd!r} does not exist or is not a directory", "cwds")
    return check_schedule(d.rrule, tz_name=d.timezone, anchor_ms=d.created_at, now_ms=now_ms,
                          min_interval_seconds=min_interval_seconds)


def check_schedule(rrule: str, *, tz_name: str, anchor_ms: int, now_ms: int,
                   min_interval_seconds: float) -> schedule.Schedule:
    """Parse a schedule the way automation/create would accept it (preview uses this too, so
    it refuses exactly what create refuses). Raises InvalidDefinition."""
    try:
        sched = schedule.parse(rrule, tz_name=tz_name, anchor_ms=anchor_ms)
    except schedule.ScheduleError as exc:
        field = "timezone" if "time zone" in str(exc) else "rrule"
        raise InvalidDefinition(str(exc), field) from None
    gap = sched.min_gap_seconds(now_ms, samples=12)
    if gap is not None and gap < min_interval_seconds:
        raise InvalidDefinition(
            f"the rrule fires every {gap:g} s; the minimum interval is {min_interval_seconds:g} s "
            "(automations.min_interval_seconds)", "rrule")
    return sched


# ------------------------------------------------------------------------------------ files


def automation_dir(root: Path, automation_id: str) -> Path:
    return root / automation_id


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_toml(d: Definition, previous: bytes | None = None) -> bytes:
    """The file for ``d``; keys of ``previous`` (a hand-written file) that codexd does not own
    are kept, and so are its comments."""
    doc: Any = tomlkit.document()
    if previous is not None:
        try:
            doc = tomlkit.parse(previous.decode("utf-8"))
        except (tomlkit.exceptions.TOMLKitError, UnicodeDecodeError):
            doc = tomlkit.document()
        doc.pop("cwd", None)  # superseded by cwds
    values: dict[str, Any] = {
        "version": 1, "id": d.id, "kind": d.kind, "name": d.name, "prompt": d.prompt,
        "status": d.status, "rrule": d.rrule, "timezone": d.timezone,
        "missed_policy": d.missed_policy, "cwds": list(d.cwds), "model": d.model,
        "reasoning_effort": d.reasoning_effort,
        "execution_environment": d.execution_environment,
        "target_thread_id": d.target_thread_id, "created_at": d.created_at,
        "updated_at": d.updated_at,
    }
    for key, value in values.items():
        if value is None:
            doc.pop(key, None)
        elif key == "prompt" and "\n" in value:
            doc[key] = tomlkit.string(value, multiline=True)
        else:
            doc[key] = value
    return tomlkit.dumps(doc).encode("utf-8")


def from_toml(data: bytes, path: Path, *, default_tz: str, now_ms: int) -> Definition:
    """Read a file's definition (the id defaults to its folder's name).

    Raises:
        InvalidDefinition: the file cannot be parsed or lacks what an automation needs.
    """
    try:
        # Reading needs no round-trip fidelity: the stdlib parser is several times faster.
        doc: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidDefinition("the file is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDefinition(f"not valid TOML: {exc}") from None
    folder = path.parent.name
    version = doc.get("version", 1)
    if version != 1:
        raise InvalidDefinition(f"version {version!r} is not supported (only 1)", "version")
    file_id = doc.get("id", folder)
    if file_id != folder:
        raise InvalidDefinition(f"id {file_id!r} does not match its folder {folder!r}", "id")
    if "cwds" not in doc and isinstance(doc.get("cwd"), str):
        doc["cwds"] = [doc["cwd"]]
    prompt = doc.get("prompt")
    raw = {
        "id": file_id,
        "kind": doc.get("kind"),
        "name": doc.get("name") or (prompt.strip().splitlines()[0][:60]
                                    if isinstance(prompt, str) and prompt.strip() else ""),
        "prompt": prompt,
        "status": doc.get("status", "ACTIVE"),
        "rrule": doc.get("rrule"),
        "timezone": doc.get("timezone") or default_tz,
        "cwds": doc.get("cwds", []),
        "model": doc.get("model"),
        "reasoningEffort": doc.get("reasoning_effort"),
        "executionEnvironment": doc.get("execution_environment"),
        "targetThreadId": doc.get("target_thread_id"),
        "missedPolicy": doc.get("missed_policy", "runOnce"),
        "createdAt": doc.get("created_at", now_ms),
        "updatedAt": doc.get("updated_at", now_ms),
    }
    for required in ("kind", "prompt", "rrule"):
        if raw[required] is None:
            raise InvalidDefinition(f"missing key {required!r}", required)
    try:
        return msgspec.convert(raw, Definition)
    except msgspec.ValidationError as exc:
        raise InvalidDefinition(_snake(str(exc))) from None


def _snake(msg: str) -> str:
    # "Expected `str`, got `int` - at `$.targetThreadId`" → name the file's key instead.
    def repl(m: re.Match[str]) -> str:
        return "key `" + re.sub(r"([A-Z])", lambda c: "_" + c.group(1).lower(), m.group(1)) + "`"
    return re.sub(r"at `\$\.([A-Za-z]+)[^`]*`", repl, msg)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_atomic(path, data, prefix=".automation.")


def remove_dir(root: Path, automation_id: str) -> None:
    """Delete an automation's folder: its file, leftovers of interrupted writes, the folder."""
    folder = automation_dir(root, automation_id)
    for child in (folder.iterdir() if folder.is_dir() else ()):
        if child.name == FILE_NAME or child.name.startswith(".automation."):
            child.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the user keeps other files there: leave the folder
        folder.rmdir()


@dataclass(frozen=True, slots=True)
class Scanned:
    """One file seen by a scan: its bytes' digest and either a definition or a problem."""

    path: Path
    digest: str
    stat_key: tuple[int, int]
    definition: Definition | None
    problem: str | None


def scan(root: Path, known: dict[Path, tuple[int, int]], *, default_tz: str,
         now_ms: int) -> tuple[list[Scanned], set[str], bool]:
    """List ``root``: files whose (mtime_ns, size) differ from ``known`` are read and parsed.

    Returns (changed files, ids of every folder holding an automation.toml, whether ``root``
    exists).
    """
    if not root.is_dir():
        return [], set(), False
    changed: list[Scanned] = []
    present: set[str] = set()
    with os.scandir(root) as it:
        entries = [e for e in it if e.is_dir() and not e.name.startswith(".")]
    for entry in entries:
        path = Path(entry.path) / FILE_NAME
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        except OSError:
            continue
        present.add(entry.name)
        key = (st.st_mtime_ns, st.st_size)
        if known.get(path) == key:
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            changed.append(Scanned(path, "", key, None, f"cannot read: {exc.strerror}"))
            continue
        try:
            d = from_toml(data, path, default_tz=default_tz, now_ms=now_ms)
            changed.append(Scanned(path, digest(data), key, d, None))
        except InvalidDefinition as exc:
            changed.append(Scanned(path, digest(data), key, None, str(exc)))
    return changed, present, True
