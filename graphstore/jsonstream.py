"""JSON values built from ijson events within a nesting depth and a string length, checked as they stream.

ijson's `kvitems` builds a prefix string per event (quadratic in the depth: 100,000 nested lists took
over 20 GB), and Python's `json` recurses; here only `basic_parse` events are read, and a value nested
too deep or a string too long stops the build before anything larger is made.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ijson

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT64_TOO_LARGE = "integer too large (beyond the 64-bit range -2^63 .. 2^63 - 1)"
_PY_BACKEND = ijson.get_backend("python")  # exact big integers (yajl2_c stops at "integer overflow")


class JsonLimitError(Exception):
    """A value past a limit: the top-level field of the record it is in, and the problem."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


@dataclass
class Where:
    """Where the reader is: the sample (top-level key) and the record's field being read, for errors."""

    sample_id: str | None = None
    field: str = "<record>"


def too_long(what: str, length: int, max_chars: int) -> str:
    """The problem of a string or key past the length limit."""
    return f"a {what} of {length:,} characters is longer than the limit of {max_chars:,}"


def _check_scalar(event: str, value: Any, where: Where, max_chars: int) -> None:
    if event == "string":
        if len(value) > max_chars:
            raise JsonLimitError(where.field, too_long("string", len(value), max_chars))
    elif event == "number" and value.__class__ is int and not INT64_MIN <= value <= INT64_MAX:
        raise JsonLimitError(where.field, INT64_TOO_LARGE)


def build_value(events: Iterator[tuple[str, Any]], where: Where, max_depth: int, max_chars: int) -> Any:
    """The next JSON value of `events` (ijson basic_parse events), with at most `max_depth` nested containers.

    Sets `where.field` to each top-level key as it is read (the field a later error names).
    """
    event, value = next(events)
    if event != "start_map" and event != "start_array":
        _check_scalar(event, value, where, max_chars)
        return value
    root: Any = {} if event == "start_map" else []
    stack, top, key = [root], root, None
    for event, value in events:
        if event == "map_key":
            if len(value) > max_chars:
                raise JsonLimitError(where.field, too_long("key", len(value), max_chars))
            key = value
            if len(stack) == 1:
                where.field = value
        elif event == "start_map" or event == "start_array":
            if len(stack) >= max_depth:
                raise JsonLimitError(where.field, f"nested deeper than {max_depth} levels")
            new: Any = {} if event == "start_map" else []
            if top.__class__ is dict:
                top[key] = new
            else:
                top.append(new)
            stack.append(new)
            top = new
        elif event == "end_map" or event == "end_array":
            stack.pop()
            if not stack:
                return root
            top = stack[-1]
        else:
            _check_scalar(event, value, where, max_chars)
            if top.__class__ is dict:
                top[key] = value
            else:
                top.append(value)
    raise ijson.IncompleteJSONError("the input ends inside a value")


def object_items(f: Any, where: Where, max_depth: int, max_chars: int) -> Iterator[tuple[str, Any]]:
    """(key, value) of the one JSON object in binary file `f`, each value built by `build_value`."""
    events = ijson.basic_parse(f, use_float=True)
    event, _ = next(events, (None, None))
    if event != "start_map":
        raise ijson.JSONError("the input is not one JSON object")
    for event, value in events:
        if event == "end_map":
            break
        where.sample_id, where.field = value, "<record>"
        yield value, build_value(events, where, max_depth, max_chars)
    where.sample_id, where.field = None, "<record>"
    for _ in events:  # the parser reports trailing content after the object
        pass


def line_value(line: bytes, where: Where, max_depth: int, max_chars: int) -> Any:
    """One JSON Lines record built by `build_value` with exact big integers (slow: for lines orjson refused)."""
    return build_value(_PY_BACKEND.basic_parse(io.BytesIO(line), use_float=True), where, max_depth, max_chars)


def top_level_value(line: bytes, key: str) -> Any:
    """The scalar value of `key` in the JSON object on `line`, skipping nested values in O(1) memory; None if absent."""
    depth, want = 0, False
    try:
        for event, value in _PY_BACKEND.basic_parse(io.BytesIO(line), use_float=True):
            if event == "start_map" or event == "start_array":
                depth += 1
                want = False
            elif event == "end_map" or event == "end_array":
                depth -= 1
            elif want:
                return value
            elif depth == 1 and event == "map_key":
                want = value == key
    except ijson.JSONError:
        pass
    return None


def check_tree(record: dict, max_depth: int, max_chars: int) -> JsonLimitError | None:
    """The first limit a parsed record breaks (depth, string length, 64-bit integers), or None."""
    for field, value in record.items():
        if len(field) > max_chars:
            return JsonLimitError("<record>", too_long("key", len(field), max_chars))
        stack = [(value, 1)]  # (value, depth of the container holding it)
        while stack:
            v, depth = stack.pop()
            cls = v.__class__
            if cls is str:
                if len(v) > max_chars:
                    return JsonLimitError(field, too_long("string", len(v), max_chars))
            elif cls is int:
                if not INT64_MIN <= v <= INT64_MAX:
                    return JsonLimitError(field, INT64_TOO_LARGE)
            elif cls is list or cls is dict:
                if depth + 1 > max_depth:
                    return JsonLimitError(field, f"nested deeper than {max_depth} levels")
                if cls is dict:
                    longest = max(map(len, v), default=0)
                    if longest > max_chars:
                        return JsonLimitError(field, too_long("key", longest, max_chars))
                    v = v.values()
                stack.extend((x, depth + 1) for x in v)
    return None


def first_value_event(f: Any) -> str | None:
    """The event of the first value in the JSON object `f` starts with ('start_map', 'string', ...), or None."""
    try:
        events = _PY_BACKEND.basic_parse(f, use_float=True)
        if next(events)[0] == "start_map" and next(events)[0] == "map_key":
            return next(events)[0]
    except (ijson.JSONError, StopIteration, UnicodeDecodeError):
        pass
    return None
