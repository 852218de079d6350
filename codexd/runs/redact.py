"""Redaction of secrets from run output, applied before anything is stored or sent.

Rules (docs/protocol.md lists them for users):

1. every token stored with ``secret/set`` is replaced wherever it appears, verbatim;
2. well-known API key shapes: ``sk-…`` (OpenAI, Anthropic ``sk-ant-…``), GitHub ``ghp_…``/
   ``gho_…``/``github_pat_…``, Slack ``xox?-…``, AWS ``AKIA…``, Google ``AIza…``;
3. ``Bearer <token>`` and ``Basic <token>`` credentials;
4. values of secret-looking keys (``api_key=…``, ``"token": "…"``, ``password: …``,
   ``Authorization: …``);
5. long high-entropy strings: 32+ characters of a base64/url-safe alphabet with letters and
   digits and more than 4.2 bits of entropy per character (pure hex is left alone: hashes, ids).

Replacements never contain quotes or backslashes and no rule matches one, so redacting the text
of a JSON document leaves it valid JSON.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

MASK = "[REDACTED]"

_SHAPES = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_\-]{35})")
_AUTH = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{8,}")
_KEYED = re.compile(
    r"(?i)((?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|secret|password|passwd"
    r"|authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?)(?!(?i:bearer|basic)\s)([^\s\"'\\,;]{6,})")
_LONG = re.compile(r"[A-Za-z0-9+/_\-]{32,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F\-]+")


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _long(m: re.Match[str]) -> str:
    s = m.group(0)
    if _HEX.fullmatch(s) or not (any(c.isdigit() for c in s) and any(c.isalpha() for c in s)):
        return s
    return MASK if _entropy(s) > 4.2 else s


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret it holds replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, MASK)
    text = _SHAPES.sub(MASK, text)
    text = _AUTH.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _KEYED.sub(lambda m: m.group(1) + (m.group(2) if m.group(2) == MASK else MASK), text)
    return _LONG.sub(_long, text)
