"""The sans-IO JSON-RPC core: framing, classification, encoding. No I/O, no trio."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from codexd.errors import ErrorCode
from codexd.rpc import (
    BadMessage,
    ErrorResponse,
    LineFramer,
    Notification,
    OversizedLine,
    Request,
    Response,
    RpcConnection,
)

RPC_DIR = Path(__file__).resolve().parent.parent / "codexd" / "rpc"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts, prev = [], 0
    for p in points:
        parts.append(data[prev:p])
        prev = p
    parts.append(data[prev:])
    return parts


lines_strategy = st.lists(
    st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20
)


@given(lines=lines_strategy, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
       limit=st.integers(min_value=1, max_value=30))
def test_any_split_of_the_stream_gives_the_same_lines(lines, cuts, limit):
    stream = b"".join(line + b"\n" for line in lines)
    whole = LineFramer(limit).feed(stream)
    framer = LineFramer(limit)
    pieces: list[bytes | OversizedLine] = []
    for part in _split(stream, cuts):
        pieces.extend(framer.feed(part))
    assert pieces == whole
    # And the result is what the lines say: blank lines dropped, long ones reported once.
    expected = []
    for line in lines:
        body = line[:-1] if line.endswith(b"\r") else line
        if len(body) > limit:
            expected.append(OversizedLine(limit))
        elif body:
            expected.append(body)
    assert whole == expected


@given(messages=st.lists(st.dictionaries(st.sampled_from(["a", "b", "ü"]), st.integers()),
                         min_size=1, max_size=10),
       cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=20))
def test_any_split_gives_the_same_messages(messages, cuts):
    conn = RpcConnection(max_message_bytes=1 << 20)
    stream = b"".join(
        conn.send_notification("x/y", m) if i % 2 else conn.send_request("x/z", m)[1]
        for i, m in enumerate(messages)
    )
    receiver = RpcConnection(max_message_bytes=1 << 20)
    events = []
    for part in _split(stream, cuts):
        events.extend(receiver.receive_data(part))
    assert len(events) == len(messages)
    for i, (ev, m) in enumerate(zip(events, messages, strict=True)):
        assert isinstance(ev, Notification if i % 2 else Request)
        assert msgspec.json.decode(ev.params) == m


def test_oversized_line_is_reported_without_buffering_it_whole():
    framer = LineFramer(1000)
    out = framer.feed(b"x" * 600)
    assert out == [] and framer.buffered == 600
    out = framer.feed(b"x" * 600)
    assert out == [OversizedLine(1000)]
    assert framer.buffered == 0
    for _ in range(100):  # 100 MB more of the same line: nothing kept
        assert framer.feed(b"x" * 1_000_000) == []
        assert framer.buffered == 0
    assert framer.feed(b"xx\n{}\n") == [b"{}"]


def test_classification():
    c = RpcConnection(max_message_bytes=1000)

    def one(line: bytes):
        (ev,) = c.receive_data(line + b"\n")
        return ev

    ev = one(b'{"jsonrpc":"2.0","id":1,"method":"a/b","params":{"k":1}}')
    assert ev == Request(1, "a/b", msgspec.Raw(b'{"k":1}'))
    ev = one(b'{"id":"x","method":"a/b"}')  # "jsonrpc" may be omitted (app-server style)
    assert isinstance(ev, Request) and ev.id == "x" and ev.params is None
    assert isinstance(one(b'{"method":"n"}'), Notification)

    for line, code in [
        (b"{nope", ErrorCode.PARSE_ERROR),
        (b'{"method":"a","id":1,"x":"\xff"}', ErrorCode.PARSE_ERROR),
        (b"[1,2]", ErrorCode.INVALID_REQUEST),
        (b"42", ErrorCode.INVALID_REQUEST),
        (b'{"id":1}', ErrorCode.INVALID_REQUEST),
        (b'{"id":1,"method":7}', ErrorCode.INVALID_REQUEST),
        (b'{"jsonrpc":"1.0","id":3,"method":"a"}', ErrorCode.INVALID_REQUEST),
        (b'{"id":true,"method":"a"}', ErrorCode.INVALID_REQUEST),
        (b'{"id":null,"method":"a"}', ErrorCode.INVALID_REQUEST),
    ]:
        ev = one(line)
        assert isinstance(ev, BadMessage), line
        assert ev.code == code, line
        reply = msgspec.json.decode(ev.reply)
        assert reply["jsonrpc"] == "2.0"
        assert reply["error"]["code"] == code
        assert reply["id"] == (3 if b'"id":3' in line else None)

    batch = one(b'[{"id":1,"method":"a"}]')
    assert "batch" in batch.message


def test_request_response_round_trip_and_id_matching():
    client = RpcConnection(max_message_bytes=1000, send_jsonrpc_member=False)
    server = RpcConnection(max_message_bytes=1000)
    rid, data = client.send_request("m", {"a": 1})
    assert b'"jsonrpc"' not in data
    (req,) = server.receive_data(data)
    assert isinstance(req, Request)
    resp = server.send_response(req.id, {"ok": True})
    assert msgspec.json.decode(resp) == {"jsonrpc": "2.0", "id": rid, "result": {"ok": True}}
    (ev,) = client.receive_data(resp)
    assert isinstance(ev, Response) and ev.method == "m"
    assert client.pending_requests == 0
    # A response nobody asked for is reported, never answered.
    (ev,) = client.receive_data(resp)
    assert isinstance(ev, BadMessage) and ev.reply is None
    rid2, _ = client.send_request("m2")
    (ev,) = client.receive_data(server.send_error(rid2, -32000, "boom", {"d": 1}))
    assert isinstance(ev, ErrorResponse) and ev.error.code == -32000 and ev.error.data == {"d": 1}


def test_rpc_core_imports_no_io_libraries():
    banned = {"trio", "apsw", "structlog", "socket", "asyncio", "trio_websocket"}
    for path in RPC_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
    # And transitively, at run time.
    code = ("import sys, codexd.rpc; bad = {'trio','apsw','structlog'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\u00e9'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet='[]{}"\\k', max_size=3), inner, max_size=3),
    max_leaves=400,
)


@given(_json_values, st.integers(min_value=1, max_value=12))
def test_depth_check_agrees_with_the_real_depth(value, limit):
    from codexd.rpc.depth import too_deep

    line = json.dumps(value).encode()
    assert too_deep(line, limit) == (_depth(value) > limit)


def test_depth_check_on_the_hostile_shapes():
    from codexd.rpc.depth import MAX_DEPTH, too_deep

    assert too_deep(b"[" * 100_000 + b"]" * 100_000)
    assert too_deep(b"[[[[]" * 40_000 + b"]" * 120_000)
    assert not too_deep(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    # Brackets inside strings (escaped quotes and backslashes too) do not count.
    assert not too_deep(b'["' + b"[" * 1000 + b'\\\\", "\\"' + b"{" * 1000 + b'"]')
    # Deep but unbalanced: the decoder's RecursionError is caught and reported the same way.
    conn = RpcConnection(max_message_bytes=1 << 20)
    bad = conn.decode_message(b'{"id":1,"method":"x","params":' + b"[" * 50_000 + b"}")
    assert isinstance(bad, BadMessage)


def test_every_integer_a_client_sends_is_bounded_to_64_bits():
    import msgspec.inspect as mi

    import codexd.api  # noqa: F401 - registers every method
    from codexd.protocol import METHODS

    unbounded: list[str] = []
    seen: set[type] = set()

    def walk(t: object, path: str) -> None:
        if isinstance(t, mi.IntType):
            if t.le is None or t.le > 2**63 - 1 or t.ge is None or t.ge < -(2**63):
                unbounded.append(path)
        elif isinstance(t, mi.StructType):
            if t.cls not in seen:
                seen.add(t.cls)
                for f in t.fields:
                    walk(f.type, f"{t.cls.__name__}.{f.name}")
        elif isinstance(t, mi.UnionType):
            for x in t.types:
                walk(x, path)
        elif isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            walk(t.item_type, path + "[]")
        elif isinstance(t, mi.DictType):
            walk(t.value_type, path + "{}")

    for spec in METHODS.values():
        walk(mi.type_info(spec.params), spec.name)
    assert unbounded == [], "use protocol.base.Int64 or Count for these"


def test_no_wire_type_puts_raw_json_in_a_union():
    """msgspec cannot decode ``Raw | None`` (it fails at run time, on the client side): every
    type a client decodes must avoid it."""
    import msgspec.inspect as mi

    from codexd.protocol import METHODS, NOTIFICATIONS

    bad: list[str] = []
    seen: set[type] = set()

    def walk(t: mi.Type, where: str) -> None:
        if isinstance(t, mi.UnionType):
            if any(isinstance(x, mi.RawType) for x in t.types):
                bad.append(where)
            for x in t.types:
                walk(x, where)
        elif isinstance(t, mi.StructType):
            if t.cls in seen:
                return
            seen.add(t.cls)
            for f in t.fields:
                walk(f.type, f"{t.cls.__name__}.{f.name}")
        elif isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            walk(t.item_type, where)
        elif isinstance(t, mi.DictType):
            walk(t.value_type, where)
        elif isinstance(t, mi.Metadata):
            walk(t.type, where)

    types = [s.result for s in METHODS.values()] + [s.params for s in METHODS.values()] + [
        n.params for n in NOTIFICATIONS.values()]
    for t in types:
        walk(mi.type_info(t), t.__name__)
    assert bad == []
