"""Who may call what: the roles of a device token, in one table.

A client on a Unix socket of the same user is an ``operator`` (it could run anything as that user
anyway). A WebSocket client has its token's role:

- ``observer``: reads — status, lists, gets, subscriptions, replay, read-only terminal attach, and
  the app-server methods in :data:`FORWARDED_READS`;
- ``approver``: an observer that also answers approvals (and server requests sent to it) and
  marks inbox items;
- ``operator``: everything.

A codexd method or a forwarded app-server method not named here is operator-only, so a method
added later is safe until someone decides otherwise. docs/protocol.md ("Roles") shows this table
and a test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["pairing", "observer", "approver", "operator"]
#: ``pairing`` is no token's role: a device connected with a pairing code may only
#: ``initialize`` and ``token/claim`` its own token.
ROLES: tuple[Role, ...] = ("pairing", "observer", "approver", "operator")
#: The roles a token can have.
TokenRole = Literal["observer", "approver", "operator"]
TOKEN_ROLES: tuple[TokenRole, ...] = ("observer", "approver", "operator")
#: What a pairing connection may call.
PAIRING_METHODS = frozenset({"initialize", "token/claim"})
_RANK = {role: i for i, role in enumerate(ROLES)}

#: codexd's own methods an observer may call.
OBSERVER_METHODS = frozenset({
    "initialize", "daemon/status", "daemon/health", "daemon/metrics", "daemon/appServer/status",
    "client/visibility",
    "atom/get", "atom/list", "settings/get",
    "events/subscribe", "events/unsubscribe", "events/replay", "thread/unsubscribe",
    "approval/list",
    "terminal/list", "terminal/attach", "terminal/detach",  # attach: read-only unless operator
    "automation/list", "automation/get", "automation/runs", "automation/preview", "inbox/list",
    "run/get", "run/list", "run/events", "run/export", "run/artifacts", "run/subscribe",
    "queue/list",
    "conversation/list", "conversation/get", "profile/list", "provider/capabilities",
    "secret/has", "token/ticket",  # a ticket carries at most the caller's own role
    # Reading inside workspace grants (what a review pane shows); writing is an operator's.
    "workspace/list", "files/list", "files/stat", "files/read", "files/search", "files/grep",
    "files/watches",
    "git/status", "git/diff", "git/fileDiff", "git/rangeDiff", "git/log", "git/branches",
    "git/worktree/list", "git/show", "git/stash/list",
})

#: ...and what an approver may call besides.
APPROVER_METHODS = OBSERVER_METHODS | frozenset({
    "approval/respond", "inbox/markRead", "inbox/archive",
})

#: The app-server's methods that only read state an observer may see. Files (``fs/*``), the
#: account and the config are not here: they stay operator-only.
FORWARDED_READS = frozenset({
    "thread/list", "thread/read", "thread/loaded/list", "thread/items/list",
    "thread/turns/list", "thread/attachment/list", "thread/goal/get", "threadSection/list",
    "model/list", "modelProvider/list", "modelProvider/capabilities/read", "skills/list",
    "app/list", "app/read", "plugin/list", "plugin/read", "plugin/installed",
    "mcpServerStatus/list", "experimentalFeature/list", "permissionProfile/list", "hooks/list",
})


def needed(method: str, *, own: bool) -> Role:
    """The least role that may call ``method`` (``own``: codexd answers it itself)."""
    if own:
        if method in PAIRING_METHODS:
            return "pairing"
        if method in OBSERVER_METHODS:
            return "observer"
        return "approver" if method in APPROVER_METHODS else "operator"
    return "observer" if method in FORWARDED_READS else "operator"


def audited(method: str, *, own: bool) -> bool:
    """Whether a token holder's call is written to the audit trail: whatever only an operator
    may do, and answering approvals."""
    return method == "approval/respond" or needed(method, own=own) == "operator"


def allows(role: Role, needs: Role) -> bool:
    return _RANK[role] >= _RANK[needs]
