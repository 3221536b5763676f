"""Reading JSON without `import json`.

Every pyrunc command reads a JSON file (state.json, or config.json for create), and
`import json` costs more than the rest of `pyrunc start`: json.decoder compiles regular
expressions at import. The C scanner behind json.loads needs none of that; where it is
missing (another Python implementation), fall back to json.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _ScanContext:
    """What CPython's C JSON scanner reads from its owner: plain JSON, nothing hooked."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(lambda name: float(name.replace("Infinity", "inf")))
    memo: dict[str, str] = {}


def loads(text: str) -> Any:
    """json.loads: the same values, ValueError (with the offset) for malformed text."""
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip())
    try:
        value, end = make_scanner(_ScanContext)(text, start)
    except StopIteration as e:
        raise ValueError(f"malformed JSON at offset {e.value}") from None
    finally:
        _ScanContext.memo.clear()
    if text[end:].strip():
        raise ValueError(f"extra data at offset {end}")
    return value
