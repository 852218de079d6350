"""``approval/*``: durable server requests (approvals, questions) from the app-server."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from codexd.protocol.base import Count, Params, Struct, method, notification

ApprovalStatus = Literal["pending", "resolved", "expired", "timedOut"]


class Approval(Struct, frozen=True):
    approval_id: int
    method: str
    status: ApprovalStatus
    params: msgspec.Raw
    created_at: str
    thread_id: str | None = None
    turn_id: str | None = None
    #: The answer, once there is one: absent (left off the wire) before.
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    resolved_by: str | None = None
    resolved_at: str | None = None
    reason: str | None = None


class ApprovalListParams(Params, frozen=True):
    status: ApprovalStatus | None = None
    thread_id: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100


class ApprovalList(Struct, frozen=True):
    approvals: list[Approval]


class ApprovalRespondParams(Params, frozen=True):
    approval_id: Count
    result: msgspec.Raw


class ApprovalRespondResult(Struct, frozen=True):
    approval_id: int
    status: ApprovalStatus


class ServerRequestResolved(Struct, frozen=True):
    request_id: int
    approval_id: int
    status: ApprovalStatus
    thread_id: str | None = None
    resolved_by: str | None = None
    reason: str | None = None


class AnswerRejected(Struct, frozen=True):
    request_id: int
    approval_id: int
    message: str


APPROVAL_LIST = method(
    "approval/list", ApprovalListParams, ApprovalList,
    "Server requests (newest first), filtered by status and thread.",
)
APPROVAL_RESPOND = method(
    "approval/respond", ApprovalRespondParams, ApprovalRespondResult,
    "Answer a pending server request; the first answer wins.",
)
SERVER_REQUEST_RESOLVED = notification(
    "serverRequest/resolved", ServerRequestResolved,
    "A server request was answered, expired or timed out (requestId = approvalId).",
)
SERVER_REQUEST_ANSWER_REJECTED = notification(
    "serverRequest/answerRejected", AnswerRejected,
    "To the client alone: its answer to a server request had the wrong shape and was not "
    "sent upstream; the request is still pending.",
)
