"""A JSON Patch (RFC 6902) from one JSON document to another: what the webhook answers with.

Small on purpose: objects are compared key by key; a list that only gained items before and
after its old ones (our init containers go first, a classic sidecar and our volume last) gets
one `add` per new item, so the workload's own entries are never rewritten; any other changed
list is replaced whole. Applying the result to `before` gives exactly `after`.
"""

from __future__ import annotations

from typing import Any


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: Python's `==` takes True for 1 and 1.0 for 1, which JSON does not."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def pointer(path: list[str | int]) -> str:
    """A JSON Pointer (RFC 6901); `/` and `~` in a key (`layers-readiness/wired`) escaped."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _list_ops(before: list[Any], after: list[Any], path: list[str | int]) -> list[dict[str, Any]]:
    if len(before) == len(after):
        ops: list[dict[str, Any]] = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            ops.extend(_diff(old, new, [*path, index]))
        return ops
    for start in range(len(after) - len(before) + 1):
        if same(after[start : start + len(before)], before):
            head = [
                {"op": "add", "path": pointer([*path, index]), "value": after[index]}
                for index in range(start)
            ]
            tail = [
                {"op": "add", "path": pointer(path) + "/-", "value": item}
                for item in after[start + len(before) :]
            ]
            return head + tail
    return [{"op": "replace", "path": pointer(path), "value": after}]


def _diff(before: Any, after: Any, path: list[str | int]) -> list[dict[str, Any]]:
    if same(before, after):
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        ops: list[dict[str, Any]] = []
        for key in before:
            if key not in after:
                ops.append({"op": "remove", "path": pointer([*path, key])})
        for key, value in after.items():
            if key not in before:
                ops.append({"op": "add", "path": pointer([*path, key]), "value": value})
            else:
                ops.extend(_diff(before[key], value, [*path, key]))
        return ops
    if isinstance(before, list) and isinstance(after, list):
        return _list_ops(before, after, path)
    return [{"op": "replace", "path": pointer(path), "value": after}]


def diff(before: Any, after: Any) -> list[dict[str, Any]]:
    """The operations that turn `before` into `after` ([] when they are equal)."""
    return _diff(before, after, [])
