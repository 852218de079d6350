"""``audit/*``: what token holders did."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import Params, Struct, method


class AuditListParams(Params, frozen=True):
    token_name: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100


class AuditEntry(Struct, frozen=True, omit_defaults=False):
    id: int
    at: int
    token_id: str
    token_name: str
    remote: str
    method: str
    #: "ok" or the error code of the answer.
    outcome: str


class AuditList(Struct, frozen=True):
    entries: list[AuditEntry]


AUDIT_LIST = method("audit/list", AuditListParams, AuditList,
                    "What token holders did (operator calls, approval answers), newest first.")
