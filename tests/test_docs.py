"""The docs are part of the contract: they must list exactly what the code defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from codexd import config
from codexd.api import ROUTES
from codexd.errors import ErrorCode
from codexd.protocol import METHODS, NOTIFICATIONS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _sections(text: str, part: str) -> dict[str, str]:
    body = text.split(f"\n## {part}\n", 1)[1].split("\n## ", 1)[0]
    chunks = re.split(r"^### `([^`]+)`\n", body, flags=re.M)
    return dict(zip(chunks[1::2], chunks[2::2], strict=True))


def _example_lines(section: str, arrow: str) -> list[bytes]:
    return [line[2:].strip().encode() for line in section.splitlines()
            if line.startswith(arrow + " ")]


class _Envelope(msgspec.Struct):
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"null")
    result: msgspec.Raw = msgspec.Raw(b"")


def test_every_method_is_documented_with_a_valid_example():
    sections = _sections((DOCS / "protocol.md").read_text(), "Methods")
    assert set(sections) == set(METHODS), "docs/protocol.md and the method registry differ"
    for name, section in sections.items():
        spec = METHODS[name]
        (request,) = _example_lines(section, "→")
        env = msgspec.json.decode(request, type=_Envelope)
        assert env.method == name
        spec.decode_params(env.params)  # raises if the example's params are invalid
        (response,) = _example_lines(section, "←")
        env = msgspec.json.decode(response, type=_Envelope)
        assert bytes(env.result), name
        msgspec.json.decode(env.result, type=spec.result)


def test_every_notification_is_documented_with_a_valid_example():
    sections = _sections((DOCS / "protocol.md").read_text(), "Notifications")
    assert set(sections) == set(NOTIFICATIONS)
    for name, section in sections.items():
        (line,) = _example_lines(section, "←") or _example_lines(section, "→")
        env = msgspec.json.decode(line, type=_Envelope)
        assert env.method == name
        params = b"{}" if bytes(env.params) == b"null" else env.params
        msgspec.json.decode(params, type=NOTIFICATIONS[name].params)


def test_every_method_has_a_handler():
    assert set(ROUTES) == set(METHODS)


def test_error_code_table_matches_the_enum():
    text = (DOCS / "protocol.md").read_text()
    rows = re.findall(r"^\| (-\d+) \| ([A-Z_]+) \|", text, flags=re.M)
    assert {(int(code), name) for code, name in rows} == {(e.value, e.name) for e in ErrorCode}
    assert all(-32768 <= e.value <= -32000 for e in ErrorCode)


def test_every_config_key_is_documented_with_its_default():
    text = (DOCS / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+(?:\.[a-z_]+)+)` \| `([^`]*)` \|", text,
                          flags=re.M))
    keys = config.documented_keys()
    assert set(rows) == set(keys), "docs/configuration.md and config.Config differ"
    for key, default in keys.items():
        shown = msgspec.json.encode(default).decode() if not isinstance(default, str) \
            else f'"{default}"'
        assert rows[key] == shown.lower(), f"{key}: documented {rows[key]}, code has {shown}"


def test_readme_starts_with_the_two_commands():
    readme = (DOCS.parent / "README.md").read_text()
    first_block = readme.split("```", 2)[1]
    assert "make run" in first_block and "make test" in first_block


def test_appserver_state_table_matches_the_code():
    from codexd.appserver.states import TABLE

    text = (DOCS / "appserver-states.md").read_text().split("## Transitions", 1)[1]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \|$", text, flags=re.M)
    documented = {(a, b, c) for a, b, c in rows if a != "from"}
    assert documented == {(s.value, i.value, t.value) for (s, i), t in TABLE.items()}


def test_run_state_table_matches_the_code():
    from codexd.runs.states import INPUT_FOR, TABLE, RunState

    text = (DOCS / "run-states.md").read_text().split("## Transitions", 1)[1]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \|$", text, flags=re.M)
    documented = {(a, b, c) for a, b, c in rows if a != "from"}
    assert documented == {(s.value, i.value, t.value) for (s, i), t in TABLE.items()}
    # Every status is reached by exactly the input INPUT_FOR names (the store relies on it).
    assert {t: i for (_s, i), t in TABLE.items()} == INPUT_FOR
    assert set(INPUT_FOR) == set(RunState)


def test_the_store_refuses_a_run_status_edge_not_in_the_table(tmp_path):
    import pytest

    from codexd.protocol.runs import RunRequest
    from codexd.statemachine import BadTransition
    from codexd.store import Store
    from codexd.store import runs as repo

    store = Store.open(tmp_path / "t.db")
    req = RunRequest(provider="codex", prompt="p", cwd="/tmp", priority=0, timeout_seconds=60,
                     max_retries=0, retry_backoff_ms=1000, auto_approve=False)
    store.write_sync(lambda c: repo.insert(c, "run_x", req, conversation_id=None,
                                           rerun_of=None, session_id=None))
    with pytest.raises(BadTransition):
        store.write_sync(lambda c: repo.update(c, "run_x", status="succeeded"))
    assert store.write_sync(lambda c: repo.update(c, "run_x", status="running")).status == \
        "running"
    store.close()


def test_the_index_opens_the_protocol_and_lists_the_registry_by_namespace():
    text = (DOCS / "protocol.md").read_text()
    assert text.index("\n## Index\n") < text.index("\n## Methods\n")
    body = text.split("\n## Index\n", 1)[1].split("\n## ", 1)[0]
    methods: dict[str, str] = {}
    notes: dict[str, str] = {}
    for row in re.findall(r"^\| (.+) \|$", body, flags=re.M)[1:]:  # after the header
        namespace, in_methods, in_notes = (cell.strip() for cell in row.split(" | "))
        for names, into in ((in_methods, methods), (in_notes, notes)):
            for name, anchor in re.findall(r"\[`([^`]+)`\]\(#([^)]+)\)", names):
                assert anchor == name.replace("/", "").lower(), name  # GitHub's heading anchor
                into[name] = namespace.strip("`")

    def namespace(name: str) -> str:
        return name.split("/", 1)[0] if "/" in name else "(session)"

    assert methods == {name: namespace(name) for name in METHODS}
    assert notes == {name: namespace(name) for name in NOTIFICATIONS}


def test_the_roles_section_is_the_roles_table():
    from codexd import roles

    text = (DOCS / "protocol.md").read_text()
    body = text.split("\n### Roles\n", 1)[1].split("\n## ", 1)[0]
    observer = body.split("- **observer**:", 1)[1].split("- **approver**", 1)[0]
    approver = body.split("- **approver**:", 1)[1].split("\n- **", 1)[0]
    pairing = body.split("- **pairing**:", 1)[1].split("\n- **", 1)[0]
    own_obs, forwarded = observer.split("of the app-server's methods only these reads:", 1)
    names = lambda chunk: set(re.findall(r"`([^`]+)`", chunk))  # noqa: E731
    assert names(own_obs) - {"readOnly: true"} == set(roles.OBSERVER_METHODS)
    assert names(forwarded) == set(roles.FORWARDED_READS)
    assert names(approver) == set(roles.APPROVER_METHODS - roles.OBSERVER_METHODS)
    assert names(pairing) - {"?pair=<code>", "token/pair"} == set(roles.PAIRING_METHODS)
    assert set(METHODS) >= roles.APPROVER_METHODS and not roles.FORWARDED_READS & set(METHODS)


def test_the_checked_in_schema_is_the_generated_one():
    """docs/schema/ is `codexd schema` output: regenerated here, it must not differ (run
    `.venv/bin/codexd schema` after changing the protocol)."""
    import jsonschema

    from codexd import schema

    built = schema.build()
    for name, doc in built.items():
        path = DOCS / "schema" / name
        assert path.read_bytes() == schema.render(doc), f"{path} is stale: run `codexd schema`"
    jsonschema.Draft202012Validator.check_schema(built["codexd.schema.json"])
    index = built["index.json"]
    assert {m["name"] for m in index["methods"]} == set(METHODS)
    assert {n["name"] for n in index["notifications"]} == set(NOTIFICATIONS)
    assert {e["code"] for e in index["errors"]} == {int(e) for e in ErrorCode}


def test_the_protocol_examples_validate_against_the_schema():
    """Every example in docs/protocol.md, checked by the JSON Schema a frontend generates its
    types from (as well as by the structs, above)."""
    import jsonschema

    from codexd import schema

    built = schema.build()
    root = built["codexd.schema.json"]
    index = built["index.json"]

    def validator(ref: str) -> jsonschema.protocols.Validator:
        return jsonschema.Draft202012Validator({"$ref": ref, "$defs": root["$defs"]})

    sections = _sections((DOCS / "protocol.md").read_text(), "Methods")
    for m in index["methods"]:
        section = sections[m["name"]]
        (request,) = _example_lines(section, "→")
        params = json.loads(request).get("params")
        if params is not None:
            validator(m["params"]).validate(params)
        (response,) = _example_lines(section, "←")
        validator(m["result"]).validate(json.loads(response)["result"])
    notes = _sections((DOCS / "protocol.md").read_text(), "Notifications")
    for n in index["notifications"]:
        (line,) = _example_lines(notes[n["name"]], "←") or _example_lines(notes[n["name"]], "→")
        params = json.loads(line).get("params") or {}
        target = root["$defs"][n["params"].rsplit("/", 1)[1]]
        while "$ref" in target:
            target = root["$defs"][target["$ref"].rsplit("/", 1)[1]]
        own = target.get("properties", {})
        # codexd's stamps (seq, epoch) ride in the params of every numbered notification.
        params = {k: v for k, v in params.items() if k not in ("seq", "epoch") or k in own}
        validator(n["params"]).validate(params)
