"""The app-server's own method and notification names that codexd itself relies on.

Every method outside codexd's namespaces is forwarded whatever its name; the ones below are
those codexd *calls* or *reads* (codexctl's ``threads``/``ask``, automations, the health probe,
auto-subscription, approvals). Their params and results are the app-server's
(``codex app-server generate-json-schema``), so they stay JSON here, not structs: a CLI
upgrade that renames one breaks only what names it, and this list is where to look.
"""

from __future__ import annotations

# Methods codexd sends upstream (for itself or for codexctl).
THREAD_START = "thread/start"
THREAD_RESUME = "thread/resume"
THREAD_FORK = "thread/fork"
THREAD_READ = "thread/read"
THREAD_LIST = "thread/list"
THREAD_LOADED_LIST = "thread/loaded/list"
TURN_START = "turn/start"
TURN_INTERRUPT = "turn/interrupt"

# Notifications codexd reads.
THREAD_STARTED = "thread/started"
TURN_COMPLETED = "turn/completed"
ITEM_COMPLETED = "item/completed"
ITEM_AGENT_MESSAGE_DELTA = "item/agentMessage/delta"
#: The app-server's resolution of one of its server requests (codexd announces its own).
SERVER_REQUEST_RESOLVED = "serverRequest/resolved"

# Server requests that are yes/no approvals, with the words each uses for yes and no.
COMMAND_APPROVAL = "item/commandExecution/requestApproval"
FILE_CHANGE_APPROVAL = "item/fileChange/requestApproval"
APPROVAL_DECISIONS: dict[str, tuple[str, str]] = {
    COMMAND_APPROVAL: ("accept", "decline"),
    FILE_CHANGE_APPROVAL: ("accept", "decline"),
    "applyPatchApproval": ("approved", "denied"),
    "execCommandApproval": ("approved", "denied"),
    # codexd's own: a provider run's permission prompt (claude's --permission-prompt-tool).
    "run/permission/requestApproval": ("accept", "decline"),
}
