"""The JSON Patch the injector answers with (sidecar/injector/patch.py): applied by a real JSON
Patch implementation, it turns any document into any other, and leaves lists' own items alone
when ours are only added around them."""

from __future__ import annotations

from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.injector.patch import diff, pointer, same

KEYS = st.sampled_from(["a", "b", "layers-readiness/wired", "x~y", "", "0", "-"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, 1.0])
    | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400)
@given(JSON, JSON)
def test_the_patch_turns_before_into_after(before: Any, after: Any) -> None:
    assert same(jsonpatch.apply_patch(before, diff(before, after)), after)


@given(st.lists(JSON, max_size=4), st.lists(JSON, max_size=3), st.lists(JSON, max_size=3))
def test_items_added_around_a_list_are_adds(
    middle: list[Any], head: list[Any], tail: list[Any]
) -> None:
    before = {"spec": {"initContainers": middle}}
    after = {"spec": {"initContainers": head + middle + tail}}
    operations = diff(before, after)
    assert all(op["op"] == "add" for op in operations)
    assert same(jsonpatch.apply_patch(before, operations), after)


def test_equal_documents_need_no_patch() -> None:
    document = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web"}]}}
    assert diff(document, {**document}) == []
    # A bool is not the number it equals in Python.
    assert diff({"a": True}, {"a": 1}) == [{"op": "replace", "path": "/a", "value": 1}]
    assert diff([1], [1.0]) == [{"op": "replace", "path": "/0", "value": 1.0}]


def test_pointers_escape_slash_and_tilde() -> None:
    assert pointer(["metadata", "labels", "layers-readiness/wired"]) == (
        "/metadata/labels/layers-readiness~1wired"
    )
    assert pointer(["a~b", 0]) == "/a~0b/0"
