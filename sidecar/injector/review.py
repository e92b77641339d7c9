"""An AdmissionReview in, the AdmissionReview to answer out: pure, no I/O.

Every well-formed review is answered `allowed: true` with its `uid` (the injector never refuses
a pod). A Pod annotated `layers-readiness/inject: "true"` and not yet wired gets a base64
JSONPatch computed from the pod before and after `wire`; a re-invocation (the pod already wired)
gets none. A review that is not one (wrong apiVersion or kind, no uid, a request that is not an
object) raises ReviewError, which the HTTP edge turns into a 400. A pod whose annotations cannot
be used is admitted unwired, with a warning the user sees in kubectl's output.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .patch import diff
from .wiring import Wiring, WiringError, opted_in, wire

API_VERSION: Final = "admission.k8s.io/v1"

# What a review's answer was, for the requests-by-result counter.
PATCHED: Final = "patched"
UNCHANGED: Final = "unchanged"
UNWIRABLE: Final = "unwirable"
INVALID: Final = "invalid"
ERROR: Final = "error"
RESULTS: Final = (PATCHED, UNCHANGED, UNWIRABLE, INVALID, ERROR)


class ReviewError(ValueError):
    """Not an AdmissionReview this webhook can answer; `str()` is one line for the caller."""


@dataclass(frozen=True)
class Answer:
    review: dict[str, Any]
    result: str


def _is_pod_create(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    resource = request.get("resource")
    return (
        isinstance(kind, Mapping)
        and kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and (not isinstance(resource, Mapping) or resource.get("resource", "pods") == "pods")
        and not request.get("subResource")
        and request.get("operation", "CREATE") == "CREATE"
    )


def _response(uid: str, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True, **fields},
    }


def answer(review: Any, options: Wiring) -> Answer:
    """The answer to one AdmissionReview (as parsed JSON); ReviewError when it is not one."""
    if not isinstance(review, dict):
        raise ReviewError("the body is not a JSON object")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise ReviewError(f"not an AdmissionReview of {API_VERSION}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("the review has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("the request has no uid")
    pod = request.get("object")
    if not _is_pod_create(request) or pod is None:
        return Answer(_response(uid), UNCHANGED)
    if not isinstance(pod, dict):
        raise ReviewError("request.object is not an object")
    try:
        if not opted_in(pod):
            return Answer(_response(uid), UNCHANGED)
        wired = wire(pod, options)
    except WiringError as error:
        warning = f"layers-readiness: pod left unwired: {error}"
        return Answer(_response(uid, warnings=[warning[:256]]), UNWIRABLE)
    operations = diff(pod, wired)
    if not operations:
        return Answer(_response(uid), UNCHANGED)
    patch = base64.b64encode(json.dumps(operations, separators=(",", ":")).encode()).decode()
    return Answer(_response(uid, patchType="JSONPatch", patch=patch), PATCHED)
