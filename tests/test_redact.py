"""The redaction rules, one by one (docs/protocol.md, run/event)."""

from __future__ import annotations

import json

import pytest

from codexd.runs.redact import MASK, redact


@pytest.mark.parametrize(("text", "secret"), [
    ("key sk-proj-" + "a1B2c3D4e5" * 3, "sk-proj-"),
    ("anthropic sk-ant-api03-" + "Zz9" * 10, "sk-ant-"),
    ("gh token ghp_" + "A1b2C3d4E5" * 4, "ghp_"),
    ("slack xoxb-123456789012-abcdefABCDEF", "xoxb-"),
    ("aws AKIAIOSFODNN7EXAMPLE", "AKIA"),
    ("google AIza" + "Sy" + "B" * 33, "AIza"),
    ("curl -H 'Authorization: Bearer eyJhbGciOi.payload.sig'", "eyJhbGciOi"),
    ("password=hunter2hunter2", "hunter2"),
    ('{"api_key": "abcdef123456"}', "abcdef123456"),
    ("blob Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A5Ng==", "Zm9vYmFy"),
])
def test_secret_shapes_are_masked(text: str, secret: str):
    out = redact(text)
    assert secret not in out and MASK in out


def test_known_tokens_are_masked_verbatim_anywhere():
    assert redact("it is plainword123 here", ["plainword123"]) == f"it is {MASK} here"


@pytest.mark.parametrize("text", [
    "thread 01a20027-c781-73b3-8b2d-b5c5924b1d50",            # ids stay (hex + dashes)
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",         # hashes stay
    "/usr/local/lib/python3.11/site-packages/some_module_name",  # paths stay
    "the token was rejected",                                   # words stay
])
def test_ordinary_text_is_left_alone(text: str):
    assert redact(text) == text


def test_redacting_json_text_keeps_it_json():
    doc = {"text": "Authorization: Bearer abcdefghijkl", "nested": {"token": "s3cr3tvalue"},
           "n": 1}
    out = json.loads(redact(json.dumps(doc)))
    assert out["n"] == 1 and "abcdefghijkl" not in out["text"]
    assert out["nested"]["token"] == MASK
