"""``automation/*`` and ``inbox/*``: scheduled Codex work, its runs, and the inbox it reports to.

Times are Unix milliseconds (as in the desktop's automation.toml).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from codexd.automations.definition import Definition, Kind, MissedPolicy, Status
from codexd.protocol.base import (
    Count,
    Int64,
    NoParams,
    OsPath,
    OsShort,
    Params,
    Struct,
    method,
    notification,
)

AutomationId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=100_000)]
Short = OsShort
Path = OsPath
Limit = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
ItemIds = Annotated[list[Count], msgspec.Meta(min_length=1, max_length=10_000)]


class RunRow(Struct, frozen=True):
    """One run; also its wire form."""

    run_id: int
    automation_id: str
    scheduled_at: int
    trigger: str
    status: str
    created_at: int
    decision: str | None = None
    thread_id: str | None = None
    turn_id: str | None = None
    summary: str | None = None
    error: str | None = None
    started_at: int | None = None
    finished_at: int | None = None
    duration_ms: int | None = None


class InboxItem(Struct, frozen=True):
    item_id: int
    kind: str
    title: str
    body: str
    created_at: int
    automation_id: str | None = None
    run_id: int | None = None
    thread_id: str | None = None
    approval_id: int | None = None
    read_at: int | None = None
    archived_at: int | None = None


class AutomationInfo(Struct, frozen=True):
    automation: Definition
    #: The next scheduled run; absent when paused or the rule has no more occurrences.
    next_run_at: int | None = None
    #: Where its automation.toml lives.
    file: str = ""


class CreateParams(Params, frozen=True):
    kind: Kind
    prompt: Text
    rrule: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    name: Short | None = None
    id: AutomationId | None = None
    status: Status = "ACTIVE"
    timezone: Short | None = None
    cwds: Annotated[list[Path], msgspec.Meta(max_length=64)] = msgspec.field(default_factory=list)
    model: Short | None = None
    reasoning_effort: Short | None = None
    execution_environment: Short | None = None
    target_thread_id: Short | None = None
    missed_policy: MissedPolicy = "runOnce"


class UpdateParams(Params, frozen=True):
    """Fields left out keep their value; ``null`` clears an optional one."""

    automation_id: AutomationId
    kind: Kind | UnsetType = UNSET
    prompt: Text | UnsetType = UNSET
    rrule: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | UnsetType = UNSET
    name: Short | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    timezone: Short | UnsetType = UNSET
    cwds: Annotated[list[Path], msgspec.Meta(max_length=64)] | UnsetType = UNSET
    model: Short | UnsetType | None = UNSET
    reasoning_effort: Short | UnsetType | None = UNSET
    execution_environment: Short | UnsetType | None = UNSET
    target_thread_id: Short | UnsetType | None = UNSET
    missed_policy: MissedPolicy | UnsetType = UNSET


class AutomationRef(Params, frozen=True):
    automation_id: AutomationId


class ListParams(Params, frozen=True):
    status: Status | None = None
    kind: Kind | None = None


class AutomationList(Struct, frozen=True):
    automations: list[AutomationInfo]


class Deleted(Struct, frozen=True, omit_defaults=False):
    automation_id: str
    deleted: bool


class RunResult(Struct, frozen=True):
    run: RunRow


class PreviewParams(Params, frozen=True):
    """Either ``rrule`` (with an optional ``timezone``) or ``automationId``."""

    rrule: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None
    timezone: Short | None = None
    automation_id: AutomationId | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    #: Occurrences after this time (default now).
    after: Int64 | None = None


class Occurrence(Struct, frozen=True):
    at: int
    #: The same instant in the schedule's zone, ISO 8601 with offset.
    local: str


class Preview(Struct, frozen=True, omit_defaults=False):
    timezone: str
    occurrences: list[Occurrence]


class FileIssue(Struct, frozen=True):
    path: str
    message: str


class RescanResult(Struct, frozen=True, omit_defaults=False):
    added: list[str]
    updated: list[str]
    removed: list[str]
    invalid: list[FileIssue]


class RunsParams(Params, frozen=True):
    automation_id: AutomationId | None = None
    limit: Limit = 50


class RunList(Struct, frozen=True):
    runs: list[RunRow]


class InboxListParams(Params, frozen=True):
    unread_only: bool = False
    include_archived: bool = False
    limit: Limit = 100


class InboxList(Struct, frozen=True, omit_defaults=False):
    items: list[InboxItem]
    unread: int


class InboxMarkParams(Params, frozen=True):
    item_ids: ItemIds


class InboxMarked(Struct, frozen=True, omit_defaults=False):
    item_ids: list[int]


Change = Literal["created", "updated", "deleted", "paused", "resumed"]


class AutomationChanged(Struct, frozen=True):
    automation_id: str
    change: Change
    #: The automation after the change (absent when deleted).
    automation: AutomationInfo | None = None
    #: "client", "file" (automation.toml added/edited/removed by hand) or "scheduler".
    source: str = "client"


class RunEvent(Struct, frozen=True):
    run: RunRow
    automation_name: str = ""


class ItemAdded(Struct, frozen=True):
    item: InboxItem


AUTOMATION_CREATE = method("automation/create", CreateParams, AutomationInfo,
                           "Create an automation (also written to its automation.toml).")
AUTOMATION_UPDATE = method("automation/update", UpdateParams, AutomationInfo,
                           "Change some fields of an automation.")
AUTOMATION_GET = method("automation/get", AutomationRef, AutomationInfo, "One automation.")
AUTOMATION_LIST = method("automation/list", ListParams, AutomationList,
                         "Automations, oldest first, optionally by status and kind.")
AUTOMATION_DELETE = method("automation/delete", AutomationRef, Deleted,
                           "Delete an automation, its runs and its automation.toml.")
AUTOMATION_PAUSE = method("automation/pause", AutomationRef, AutomationInfo,
                          "Stop scheduling an automation (status PAUSED).")
AUTOMATION_RESUME = method("automation/resume", AutomationRef, AutomationInfo,
                           "Schedule a paused automation again (status ACTIVE).")
AUTOMATION_RUN_NOW = method("automation/runNow", AutomationRef, RunResult,
                            "Queue a run now, outside the schedule.")
AUTOMATION_PREVIEW = method("automation/preview", PreviewParams, Preview,
                            "The next fire times of an rrule or an automation.")
AUTOMATION_RESCAN = method("automation/rescan", NoParams, RescanResult,
                           "Re-read every automation.toml now (also on SIGHUP and periodically).")
AUTOMATION_RUNS = method("automation/runs", RunsParams, RunList,
                         "Runs, newest first, of one automation or all.")
INBOX_LIST = method("inbox/list", InboxListParams, InboxList,
                    "Inbox items, newest first, with the unread count.")
INBOX_MARK_READ = method("inbox/markRead", InboxMarkParams, InboxMarked,
                         "Mark items read (all or nothing: an unknown id changes none).")
INBOX_ARCHIVE = method("inbox/archive", InboxMarkParams, InboxMarked,
                       "Archive items (hidden from inbox/list unless includeArchived).")

AUTOMATION_CHANGED = notification("automation/changed", AutomationChanged,
                                  "An automation was created, updated, paused, resumed or deleted.")
AUTOMATION_RUN_STARTED = notification("automation/runStarted", RunEvent,
                                      "A run began (it holds a concurrency slot).")
AUTOMATION_RUN_COMPLETED = notification(
    "automation/runCompleted", RunEvent,
    "A run ended: succeeded, failed, skipped or interrupted, with its summary or error.")
INBOX_ITEM_ADDED = notification("inbox/itemAdded", ItemAdded, "A new inbox item.")
