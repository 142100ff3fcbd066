"""A request body as the API takes it: JSON as RFC 8259 defines it, nested no deeper than fan-out and deliver can parse.

Python's json module reads NaN, Infinity and -Infinity, which are not JSON, and stops with a
RecursionError near 1,000 levels; the functions' parser (pydantic's) stops near 200. A body is
checked here before anything parses it for the route, so every accepted request can be processed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from herald.models.domain import MAX_DATA_DEPTH

NOT_JSON_CONSTANTS = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class BodyProblem:
    field: str  # dotted, as the API's errors name fields; "body" for the body as a whole
    message: str
    not_json: bool  # the body is not JSON per RFC 8259 (a 400), rather than JSON the route refuses (a 422)


class _Constant(float):
    """A NaN or Infinity the parser met, remembering how it was written."""

    written: str

    def __new__(cls, written: str) -> _Constant:
        constant = super().__new__(cls, written)
        constant.written = written
        return constant


def depth_of(value: Any, stop_past: int | None = None) -> int:
    """Levels of objects and arrays in `value`, itself included: 0 for a scalar, 1 for {} or {"a": 1}.

    Iterative: a value nested past Python's recursion limit is measured, not crashed on. With
    `stop_past`, it stops once the depth is past that (a value built in Python may even be circular).
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending and (stop_past is None or deepest <= stop_past):
        item, level = pending.pop()
        children: Any = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level + 1)
        pending.extend((child, level + 1) for child in children)
    return deepest


def body_problems(text: str) -> list[BodyProblem]:
    """What makes this body one the API must refuse before parsing it for a route; [] if nothing does.

    A body that is not JSON at all is left to the route's parser, which answers 400 naming `body`.
    """
    try:
        document = json.loads(text, parse_constant=_Constant)
    except RecursionError:
        return [_too_deep(name) for name in _deep_members_by_scan(text)]
    except ValueError:
        return []
    problems = [
        BodyProblem(path, f"{constant.written} is not a JSON number (RFC 8259)", not_json=True)
        for path, constant in _constants(document, "")
    ]
    members = document.items() if isinstance(document, dict) else [("body", document)]
    problems.extend(_too_deep(name) for name, value in members if depth_of(value) > MAX_DATA_DEPTH)
    return problems


def _too_deep(field: str) -> BodyProblem:
    return BodyProblem(field, f"must nest at most {MAX_DATA_DEPTH} levels of objects and arrays", not_json=False)


def _constants(value: Any, path: str) -> Iterator[tuple[str, _Constant]]:
    pending: list[tuple[Any, str]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, _Constant):
            yield where or "body", item
        elif isinstance(item, dict):
            pending.extend((child, f"{where}.{key}" if where else str(key)) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, f"{where}.{index}" if where else str(index)) for index, child in enumerate(item))


def _deep_members_by_scan(text: str) -> list[str]:
    """The top-level members nested deeper than the limit, read off the text: the body is too deep to parse.

    Tracks strings (and their escapes) so brackets inside them do not count; the root is "body"
    when it is not an object.
    """
    depth = 0
    in_string = escaped = expecting_key = capturing = False
    key: list[str] = []
    member = "body"
    deep: dict[str, None] = {}
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
                if capturing:
                    member, capturing = _decoded("".join(key)), False
                continue
            if capturing:
                key.append(character)
            continue
        if character == '"':
            in_string, capturing, key = True, depth == 1 and expecting_key, []
        elif character in "{[":
            depth += 1
            if depth == 1:
                expecting_key = character == "{"
                member = "body" if character == "[" else member
            if depth - 1 > MAX_DATA_DEPTH or (member == "body" and depth > MAX_DATA_DEPTH):
                deep[member] = None
        elif character in "}]":
            depth -= 1
        elif depth == 1 and character == ",":
            expecting_key = True
        elif depth == 1 and character == ":":
            expecting_key = False
    return list(deep) or ["body"]


def _decoded(raw_key: str) -> str:
    try:
        decoded: str = json.loads(f'"{raw_key}"')
    except ValueError:
        return raw_key
    return decoded
