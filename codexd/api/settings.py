"""Handlers for ``settings/*``: one validated settings object, merged and persisted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from codexd.api.registry import handles
from codexd.protocol.settings import (
    SETTINGS_CHANGED,
    SETTINGS_GET,
    SETTINGS_UPDATE,
    Settings,
    SettingsGetParams,
    SettingsResult,
    SettingsUpdateParams,
    merge,
)
from codexd.session import ClientSession
from codexd.store import settings as repo

if TYPE_CHECKING:
    import apsw


@handles(SETTINGS_GET)
async def get(session: ClientSession, _p: SettingsGetParams) -> SettingsResult:
    settings, updated_at = await session.ctx.store.read(repo.load)
    return SettingsResult(settings=settings, updated_at=updated_at)


@handles(SETTINGS_UPDATE)
async def update(session: ClientSession, p: SettingsUpdateParams) -> SettingsResult:
    def apply(conn: apsw.Connection) -> tuple[Settings, str]:
        current, _ = repo.load(conn)
        merged = merge(current, p.patch)
        return merged, repo.save(conn, merged)

    settings, updated_at = await session.ctx.store.write(apply)
    result = SettingsResult(settings=settings, updated_at=updated_at)
    session.ctx.notify.turn_complete_setting = settings.notify_on_turn_complete
    session.ctx.publish(SETTINGS_CHANGED.name, result, exclude=session)
    return result
