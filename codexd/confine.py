"""Which params of which methods are paths, for confining clients to workspace grants.

One table for codexd's own methods and for the app-server's (forwarded unchanged, so their
params are read here, never rewritten). A confined client (one that authenticated with a token,
or any client when ``workspaces.confine_local`` is set) gets ``-32070`` for a path outside every
grant, before the request goes anywhere. ``files/*`` and ``git/*`` check their paths themselves,
for every client. A key ending in ``[]`` is a list of paths; ``.`` goes into an object.
"""

from __future__ import annotations

from typing import Any

import msgspec

#: Forwarded app-server methods (their JSON params).
FORWARDED_PATHS: dict[str, tuple[str, ...]] = {
    "thread/start": ("cwd",),
    "thread/resume": ("cwd",),
    "thread/fork": ("cwd",),
    "turn/start": ("cwd",),
    "command/exec": ("cwd",),
    "review/start": ("cwd",),
    "fs/readFile": ("path",),
    "fs/writeFile": ("path",),
    "fs/readDirectory": ("path",),
    "fs/getMetadata": ("path",),
    "fs/createDirectory": ("path",),
    "fs/remove": ("path",),
    "fs/copy": ("sourcePath", "destinationPath"),
    "fs/watch": ("path",),
    "fuzzyFileSearch": ("roots[]",),
    "fuzzyFileSearch/sessionStart": ("roots[]",),
}

#: Forwarded methods that run somewhere even without a path: the app-server's own cwd
#: (``appserver.cwd``, else the home folder) must then be inside a grant.
DEFAULT_CWD = frozenset({"thread/start", "command/exec"})

#: codexd's own methods (their decoded params, as wire JSON).
OWN_PATHS: dict[str, tuple[str, ...]] = {
    "terminal/create": ("cwd",),
    "run/start": ("cwd",),
    "run/rerun": ("overrides.cwd",),
    "conversation/create": ("cwd",),
    "profile/save": ("defaults.cwd",),
    "automation/create": ("cwds[]",),
    "automation/update": ("cwds[]",),
}


def paths_in(method: str, params: msgspec.Raw | None, *, own: bool) -> list[str] | None:
    """The paths ``params`` name for ``method`` (None: the method takes none). Malformed
    params yield what can be read; the method's own validation reports the rest."""
    keys = (OWN_PATHS if own else FORWARDED_PATHS).get(method)
    if keys is None:
        return None
    try:
        obj = msgspec.json.decode(params) if params is not None else {}
    except msgspec.DecodeError:
        return []
    found: list[str] = []
    for key in keys:
        found += _values(obj, key)
    return found


def _values(obj: Any, key: str) -> list[str]:
    many = key.endswith("[]")
    for part in key.removesuffix("[]").split("."):
        if not isinstance(obj, dict):
            return []
        obj = obj.get(part)
    if many:
        return [v for v in obj if isinstance(v, str)] if isinstance(obj, list) else []
    return [obj] if isinstance(obj, str) else []
