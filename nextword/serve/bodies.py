"""Reading a request body as JSON within the server's bounds: its size (413 above
``max_body_bytes``, refused while it arrives) and its nesting (400 above ``max_json_depth``,
found before the body is parsed, so a 100,000-level body never reaches the recursive parser)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from nextword.serve.errors import RequestError
from nextword.serve.limits import Limits, over_limit

__all__ = ["json_depth", "parse_json", "read_body"]

# A JSON string: its quotes and everything between, escapes included (unrolled: linear time).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_KEEP = bytes(range(256)).translate(None, b"[]{}")  # every byte but the brackets: deleted


def json_depth(data: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``data`` (0 for a scalar),
    brackets inside strings not counted. Linear in ``len(data)``, without recursion. When
    ``stop_above`` is given and the text has no more opening brackets than that, the count of
    opening brackets is returned instead (a bound of the depth, enough to know it is not above)."""
    opening = data.count(b"[") + data.count(b"{")
    if stop_above is not None and opening <= stop_above:
        return opening
    brackets = _STRING.sub(b'""', data).translate(None, _KEEP)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def parse_json(data: bytes, limits: Limits) -> Any:
    """``data`` parsed as JSON, after its nesting was checked against ``limits.max_json_depth``.

    Raises:
        RequestError: 400 for a body nested too deeply (naming the limit) or not valid JSON.
    """
    limit = limits.max_json_depth
    depth = json_depth(data, stop_above=limit)
    if depth > limit:
        raise over_limit("max_json_depth", limit, f"the request body nests arrays and objects {depth} deep")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # not reachable within the depth limit; kept as a 400 all the same
        raise over_limit("max_json_depth", limit, "the request body nests too deeply") from None


async def read_body(declared: str | None, chunks: AsyncIterator[bytes], limits: Limits) -> bytes:
    """The whole body, refused with a 413 naming ``max_body_bytes`` as soon as its declared
    length (``Content-Length``) or the bytes received pass the limit."""
    limit = limits.max_body_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise over_limit("max_body_bytes", limit, f"the request body has {int(declared)} bytes", status=413)
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise over_limit("max_body_bytes", limit, "the request body is larger", status=413)
    return bytes(data)
