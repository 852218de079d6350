"""The protocol as data: JSON Schema (draft 2020-12) of every codexd method's params and result,
every notification and every error code, generated from the msgspec structs of
:mod:`codexd.protocol` (never written by hand), plus an index of the methods.

``codexd schema --out DIR`` writes:

* ``codexd.schema.json``: one schema document whose ``$defs`` hold every type; each method has
  ``<Method>Params`` / ``<Method>Result`` aliases and each notification ``<Notification>Params``
  (e.g. ``GitStatusParams``), so generators name things after the wire;
* ``index.json``: methods (namespace, role needed, codexd's own), notifications, error codes;
* with ``--appserver``, ``appserver/``: the pinned ``codex app-server generate-json-schema``
  output for the forwarded methods, kept apart (it is the app-server's, not codexd's).

docs/schema/ holds the checked-in copy; a test regenerates it and fails when it is stale.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from codexd import __version__
from codexd.errors import ErrorCode
from codexd.protocol import METHODS, NOTIFICATIONS
from codexd.roles import needed

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{name}"


def _wire_name(method: str) -> str:
    """``git/worktree/list`` → ``GitWorktreeList``; ``initialize`` → ``Initialize``."""
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[/_]", method) if p)


def _short(qualified: str) -> str:
    """msgspec's module-qualified name for a clash (``codexd.protocol.runs.RunEvent``) →
    ``runs_RunEvent`` (the aliases named after methods stay free)."""
    module, _, name = qualified.rpartition(".")
    return f"{module.rpartition('.')[2]}_{name}"


def _rename(obj: Any, names: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                name = v[len("#/$defs/"):]
                out[k] = "#/$defs/" + names.get(name, name)
            else:
                out[k] = _rename(v, names)
        return out
    if isinstance(obj, list):
        return [_rename(v, names) for v in obj]
    return obj


def build() -> dict[str, Any]:
    """filename → JSON document."""
    methods = sorted(METHODS.values(), key=lambda m: m.name)
    notes = sorted(NOTIFICATIONS.values(), key=lambda n: n.name)
    types: list[Any] = []
    for m in methods:
        types += [m.params, m.result]
    types += [n.params for n in notes]
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    names = {k: _short(k) for k in components if "." in k}
    defs: dict[str, Any] = {names.get(k, k): _rename(v, names) for k, v in components.items()}
    it = iter([_rename(r, names) for r in refs])

    def alias(name: str, ref: dict[str, Any], what: str) -> str:
        """``name`` for the type ``ref`` points at (the type itself when it has that name)."""
        target = ref["$ref"][len("#/$defs/"):]
        if target != name:
            assert name not in defs, f"schema name clash: {name}"
            defs[name] = {"description": what, "$ref": ref["$ref"]}
        return f"#/$defs/{name}"

    method_index = []
    for m in methods:
        params, result = next(it), next(it)
        base = _wire_name(m.name)
        method_index.append({
            "name": m.name, "namespace": m.name.split("/", 1)[0] if "/" in m.name else "",
            "summary": m.summary,
            "params": alias(f"{base}Params", params, f"Params of {m.name}."),
            "result": alias(f"{base}Result", result, f"Result of {m.name}."),
            "role": needed(m.name, own=True), "owner": "codexd"})
    note_index = []
    for n in notes:
        params = next(it)
        base = _wire_name(n.name)
        note_index.append({"name": n.name,
                           "namespace": n.name.split("/", 1)[0] if "/" in n.name else "",
                           "summary": n.summary,
                           "params": alias(f"{base}Notification", params,
                                           f"Params of the {n.name} notification.")})
    errors = [{"code": int(e), "name": e.name} for e in ErrorCode]
    defs["ErrorCode"] = {"description": "Every JSON-RPC error code codexd answers with.",
                         "enum": [e["code"] for e in errors],
                         "x-enum-names": [e["name"] for e in errors]}
    schema = {"$schema": DIALECT, "$id": "https://codexd.dev/schema/codexd.schema.json",
              "title": "codexd protocol", "description": f"codexd {__version__}: every "
              "method's params and result, every notification, every error code.",
              "$defs": dict(sorted(defs.items()))}
    index = {"protocol": "codexd", "version": __version__, "schema": "codexd.schema.json",
             "methods": method_index, "notifications": note_index, "errors": errors,
             "forwarded": "Any other method goes to the app-server unchanged; its schema is "
                          "`codex app-server generate-json-schema` (codexd schema --appserver)."}
    return {"codexd.schema.json": schema, "index.json": index}


def render(doc: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
