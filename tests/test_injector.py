"""`layers-sidecar injector` as a process over real HTTPS: AdmissionReviews shaped as the API
server sends them, the patch applied with a real JSON Patch implementation, the result validated
against the Kubernetes schemas and compared with what `inject` makes of the same workload."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import trustme
import yaml

from sidecar.testing import clean_env, command, free_port, sample, wait_for
from tests.admission import admission_review, as_stored, pod_from, template_of, workloads
from tests.k8s import K8S_VERSIONS, validate

INJECT = {"layers-readiness/inject": "true"}
KINDS = [w["kind"] for w in workloads()]


@dataclass
class Injector:
    proc: subprocess.Popen[bytes]
    url: str
    trust: ssl.SSLContext
    stderr: Path
    mode: str = "native"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.trust) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def review(self, review: Any) -> dict[str, Any]:
        status, body = self.request("POST", "/mutate", json.dumps(review).encode())
        assert status == 200, body
        answer: dict[str, Any] = json.loads(body)
        return answer

    def alive(self) -> None:
        assert self.proc.poll() is None, self.stderr.read_text()
        assert self.request("GET", "/livez") == (200, b"ok\n")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def start_injector(tmp: Path, ca: trustme.CA, *args: str) -> Iterator[Injector]:
    cert = ca.issue_cert("127.0.0.1", "injector.layers.svc")
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    stderr = tmp / "injector.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            command(
                "injector",
                "--listen",
                f"127.0.0.1:{port}",
                "--tls-cert-file",
                str(cert_file),
                "--tls-key-file",
                str(key_file),
                *args,
            ),
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    mode = "classic" if "classic" in args else "native"
    injector = Injector(proc, f"https://127.0.0.1:{port}", trust, stderr, mode)

    def up() -> bool:
        assert proc.poll() is None, stderr.read_text()
        return injector.request("GET", "/readyz")[0] == 200

    try:
        wait_for(up, timeout=15, what="the injector to listen")
        yield injector
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module", params=["native", "classic"])
def injector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA
) -> Iterator[Injector]:
    yield from start_injector(
        tmp_path_factory.mktemp(f"injector-{request.param}"), ca, "--mode", request.param
    )


def patch_of(answer: dict[str, Any], uid: str) -> list[dict[str, Any]] | None:
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == uid
    assert response["allowed"] is True
    if "patch" not in response:
        assert "patchType" not in response
        return None
    assert response["patchType"] == "JSONPatch"
    operations: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return operations


def inject(documents: list[dict[str, Any]], *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        command("inject", *args),
        input=yaml.safe_dump_all(documents),
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def ours(spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """What the wiring added to a pod spec, by list."""
    return {
        key: [i for i in spec.get(key) or [] if i["name"].startswith("layers-readiness-")]
        for key in ("initContainers", "containers", "volumes")
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_pod_created_by_its_controller_is_wired_as_inject_wires_its_template(
    injector: Injector, kind: str
) -> None:
    mode = injector.mode
    workload = next(w for w in workloads(INJECT) if w["kind"] == kind)
    pod, namespace = pod_from(workload)
    review = admission_review(pod, namespace)
    operations = patch_of(injector.review(review), review["request"]["uid"])
    assert operations, "an annotated pod must be patched"
    wired = jsonpatch.apply_patch(pod, operations)
    assert pod == pod_from(workload)[0], "the patch applies to a copy"
    for version in K8S_VERSIONS:
        validate(as_stored(wired), version)

    # The workload's own containers, volumes and metadata are exactly as they were.
    for key in ("initContainers", "containers", "volumes"):
        theirs = [i for i in wired["spec"].get(key) or [] if not i["name"].startswith("layers-")]
        assert theirs == (pod["spec"].get(key) or [])
    assert wired["metadata"]["labels"] == {
        **pod["metadata"]["labels"],
        "layers-readiness/wired": "true",
    }
    assert {k: v for k, v in wired["metadata"].items() if k != "labels"} == {
        k: v for k, v in pod["metadata"].items() if k != "labels"
    }

    # What the webhook adds is what `inject` adds to the template the pod came from.
    (injected,) = inject([workload], "--mode", mode)
    assert ours(wired["spec"]) == ours(template_of(injected)["spec"])
    assert template_of(injected)["metadata"]["labels"]["layers-readiness/wired"] == "true"

    # Re-invocation (reinvocationPolicy: IfNeeded) patches nothing.
    again = admission_review(wired, namespace)
    assert patch_of(injector.review(again), again["request"]["uid"]) is None


def test_pods_not_annotated_or_opted_out_are_admitted_unpatched(injector: Injector) -> None:
    for extra in (None, {"layers-readiness/inject": "false"}, {"other": "x"}):
        pod, namespace = pod_from(workloads(extra)[0])
        review = admission_review(pod, namespace)
        assert patch_of(injector.review(review), review["request"]["uid"]) is None


def test_other_requests_are_admitted_unpatched(injector: Injector) -> None:
    pod, namespace = pod_from(workloads(INJECT)[0])
    update = admission_review(pod, namespace)
    update["request"]["operation"] = "UPDATE"
    update["request"]["oldObject"] = pod
    assert patch_of(injector.review(update), update["request"]["uid"]) is None
    binding = admission_review(pod, namespace)
    binding["request"]["subResource"] = "binding"
    assert patch_of(injector.review(binding), binding["request"]["uid"]) is None


def test_an_unusable_annotation_admits_the_pod_unwired_with_a_warning(injector: Injector) -> None:
    pod, namespace = pod_from(workloads({**INJECT, "layers-readiness/port": "http"})[0])
    review = admission_review(pod, namespace)
    answer = injector.review(review)
    assert patch_of(answer, review["request"]["uid"]) is None
    assert "not a port number" in answer["response"]["warnings"][0]


def valid_review() -> dict[str, Any]:
    pod, namespace = pod_from(workloads(INJECT)[0])
    return admission_review(pod, namespace)


def _without_uid() -> Any:
    review = valid_review()
    del review["request"]["uid"]
    return review


def _object_not_an_object() -> Any:
    review = valid_review()
    review["request"]["object"] = "pod"
    return review


def _v1beta1() -> Any:
    review = valid_review()
    review["apiVersion"] = "admission.k8s.io/v1beta1"
    return review


MALFORMED: dict[str, bytes] = {
    "not json": b"{not json",
    "empty": b"",
    "a list": b"[]",
    "no request": json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
    ).encode(),
    "no uid": json.dumps(_without_uid()).encode(),
    "object not an object": json.dumps(_object_not_an_object()).encode(),
    "v1beta1": json.dumps(_v1beta1()).encode(),
    "nesting bomb": b"[" * 200_000 + b"]" * 200_000,
    "invalid utf-8": b'{"apiVersion": "\xff"}',
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_review_is_a_400_and_the_process_lives(injector: Injector, name: str) -> None:
    status, body = injector.request("POST", "/mutate", MALFORMED[name])
    assert status == 400, body
    assert "error" in json.loads(body)
    injector.alive()
    review = valid_review()
    assert patch_of(injector.review(review), review["request"]["uid"])


def test_an_oversized_body_is_refused_unread(injector: Injector) -> None:
    status, _ = injector.request("POST", "/mutate", b"{" + b" " * (4 * 1024 * 1024) + b"}")
    assert status == 413
    injector.alive()


def test_metrics_count_reviews_by_result(injector: Injector) -> None:
    def count(result: str) -> float:
        status, body = injector.request("GET", "/metrics")
        assert status == 200
        return sample(body.decode(), "layers_injector_reviews_total", result=result) or 0.0

    before = {r: count(r) for r in ("patched", "unchanged", "invalid")}
    injector.review(valid_review())
    pod, namespace = pod_from(workloads()[0])
    injector.review(admission_review(pod, namespace))
    injector.request("POST", "/mutate", b"nope")
    assert count("patched") == before["patched"] + 1
    assert count("unchanged") == before["unchanged"] + 1
    assert count("invalid") == before["invalid"] + 1
    _, body = injector.request("GET", "/metrics")
    assert "layers_injector_review_duration_seconds_bucket" in body.decode()
    assert "process_resident_memory_bytes" in body.decode()


def test_plain_http_on_the_https_port_does_not_hurt(injector: Injector) -> None:
    plain = injector.url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(plain + "/livez", timeout=5).close()
    injector.alive()


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path, ca: trustme.CA) -> None:
    for injector in start_injector(tmp_path, ca):
        renewed = trustme.CA()
        cert = renewed.issue_cert("127.0.0.1")
        # As the kubelet updates a Secret volume: new files, then the old names point at them.
        cert.private_key_pem.write_to_path(str(tmp_path / "tls.key.new"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt.new"))
        (tmp_path / "tls.key.new").replace(tmp_path / "tls.key")
        (tmp_path / "tls.crt.new").replace(tmp_path / "tls.crt")
        trust = ssl.create_default_context()
        renewed.configure_trust(trust)

        def served(url: str = injector.url, trust: ssl.SSLContext = trust) -> bool:
            try:
                with urllib.request.urlopen(url + "/livez", context=trust, timeout=2):
                    return True
            except urllib.error.URLError:
                return False

        wait_for(served, timeout=30, what="the renewed certificate to be served")


def test_without_a_certificate_it_refuses_to_start() -> None:
    result = subprocess.run(
        command("injector", "--listen", f"127.0.0.1:{free_port()}"),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "layers-sidecar injector: --tls-cert-file: the API server calls webhooks over HTTPS "
        "only: give --tls-cert-file and --tls-key-file"
    ]
