"""User settings shared by every frontend (``settings/*``).

The settings object is validated (types, enums, ranges) and persisted in the store. An update is a
merge: fields present in ``patch`` replace the stored value, ``null`` resets a field to its
default, absent fields are kept.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from codexd.protocol.base import Params, Struct, method, notification

ReasoningEffort = Literal["minimal", "low", "medium", "high", "xhigh"]
SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]
ApprovalPolicy = Literal["never", "on-request", "on-failure"]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
RetentionDays = Annotated[int, msgspec.Meta(ge=1, le=3650)]


class Settings(Struct, frozen=True, forbid_unknown_fields=True):
    """The settings object. Every field, its type and default are listed in docs/protocol.md."""

    default_model: ModelName | None = None
    default_reasoning_effort: ReasoningEffort | None = None
    default_sandbox: SandboxMode = "workspace-write"
    default_approval_policy: ApprovalPolicy = "on-request"
    notify_on_turn_complete: bool = True
    inbox_retention_days: RetentionDays = 30


class SettingsPatch(Params, frozen=True):
    default_model: ModelName | UnsetType | None = UNSET
    default_reasoning_effort: ReasoningEffort | UnsetType | None = UNSET
    default_sandbox: SandboxMode | UnsetType | None = UNSET
    default_approval_policy: ApprovalPolicy | UnsetType | None = UNSET
    notify_on_turn_complete: bool | UnsetType | None = UNSET
    inbox_retention_days: RetentionDays | UnsetType | None = UNSET


class SettingsUpdateParams(Params, frozen=True):
    patch: SettingsPatch


class SettingsResult(Struct, frozen=True):
    settings: Settings
    updated_at: str | None


class SettingsGetParams(Params, frozen=True):
    pass


def merge(current: Settings, patch: SettingsPatch) -> Settings:
    """Apply ``patch`` to ``current``: values replace, ``None`` resets to the default."""
    defaults = Settings()
    changes = {}
    for name in SettingsPatch.__struct_fields__:
        value = getattr(patch, name)
        if value is UNSET:
            continue
        changes[name] = getattr(defaults, name) if value is None else value
    return msgspec.structs.replace(current, **changes)


SETTINGS_GET = method("settings/get", SettingsGetParams, SettingsResult, "Read the settings.")
SETTINGS_UPDATE = method(
    "settings/update", SettingsUpdateParams, SettingsResult, "Merge a patch into the settings."
)
SETTINGS_CHANGED = notification(
    "settings/changed", SettingsResult, "The settings were updated by another client."
)
