"""Bounding how deeply a JSON text nests, before a recursive decoder sees it (sans-IO).

msgspec (like most JSON decoders) recurses once per array or object level, so a line of a few
kilobytes of ``[`` can exhaust the interpreter's stack. Every line is checked here first:

- fast path: a line with at most ``limit`` opening brackets in all cannot nest deeper (two
  C-speed counts, the only cost for ordinary messages);
- otherwise strings are removed (their brackets do not count), everything but brackets is
  dropped, a run of more openers than levels left is too deep at once, and innermost
  ``[]``/``{}`` pairs are removed one level per round, all with C-speed ``bytes`` operations:
  after ``limit`` rounds anything left nests deeper than ``limit`` (or is unbalanced, which the
  decoder rejects anyway; a deep unbalanced line is caught as ``RecursionError`` there).
"""

from __future__ import annotations

import functools
import re

#: Nesting accepted on the wire: objects and arrays, the envelope itself counts as one level.
#: The same bound as serde_json's default, which the app-server uses.
MAX_DEPTH = 128

_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _outside_strings(line: bytes) -> bytes:
    """``line`` without its JSON strings. Escapes go first (``\\\\`` pairs, then ``\\"``; in
    valid JSON a backslash only ever starts a two-character escape), then every other quote
    opens or closes a string."""
    unescaped = line.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


@functools.cache
def _run(n: int) -> re.Pattern[bytes]:
    return re.compile(rb"[\[{]{%d}" % n)


def too_deep(line: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``line`` nests arrays/objects more than ``limit`` levels deep."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    rest = _outside_strings(line).translate(None, _NOT_BRACKETS)
    for done in range(limit):
        if not rest:
            return False
        # k openers in a row nest k deep on top of the levels already removed: the common
        # attack (``[[[[…``) is caught in one scan instead of ``limit`` rounds.
        if _run(limit - done + 1).search(rest):
            return True
        shorter = _PAIR.sub(b"", rest)  # one scan: pairs it creates wait for the next round
        if len(shorter) == len(rest):
            return False  # unbalanced: not ours to judge, the decoder reports it
        rest = shorter
    return bool(rest)
