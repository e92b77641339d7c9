"""`layers-sidecar inject` as users run it: manifests in, the same documents out, wired."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.injector.wiring import Wiring, wire
from sidecar.testing import clean_env, command
from tests.admission import template_of, workloads
from tests.k8s import K8S_VERSIONS, validate

OTHERS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop-config"},
        "data": {"when": "2024-01-01", "on": "yes"},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    },
]


def run(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("inject", *args),
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=60,
        check=False,
    )


def stream() -> list[dict[str, Any]]:
    """Every kind, with documents of other kinds between them."""
    kinds = workloads()
    return [*kinds[:3], OTHERS[0], *kinds[3:], OTHERS[1]]


def expected(documents: list[dict[str, Any]], options: Wiring) -> list[dict[str, Any]]:
    out = []
    for document in documents:
        if document["kind"] in ("ConfigMap", "Service"):
            out.append(document)
            continue
        wired = json.loads(json.dumps(document))
        template = wire(template_of(document), options)
        if document["kind"] == "Pod":
            wired = template
        elif document["kind"] == "CronJob":
            wired["spec"]["jobTemplate"]["spec"]["template"] = template
        else:
            wired["spec"]["template"] = template
        out.append(wired)
    return out


@pytest.mark.parametrize("mode", ["native", "classic"])
def test_every_kind_is_wired_in_order_others_unchanged_and_idempotent(mode: str) -> None:
    text = yaml.safe_dump_all(stream())
    first = run("--mode", mode, stdin=text)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    documents = list(yaml.safe_load_all(first.stdout))
    assert documents == expected(stream(), Wiring(mode=mode))
    for document in documents:
        for version in K8S_VERSIONS:
            validate(document, version)
    second = run("--mode", mode, stdin=first.stdout)
    assert second.stdout == first.stdout


def test_files_and_stdin_in_the_order_given(tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("# a comment\n" + yaml.safe_dump(workloads()[0]) + "---\n---\n")
    two.write_text(yaml.safe_dump_all(workloads()[4:6]))
    result = run(str(one), "-", str(two), stdin=yaml.safe_dump(OTHERS[0]))
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert kinds == ["Deployment", "ConfigMap", "Job", "CronJob"]


def test_json_in_gives_json_out_and_a_list_has_its_items_wired() -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": workloads()[:2]}
    result = run(stdin=json.dumps(listed))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {**listed, "items": expected(workloads()[:2], Wiring())}


def test_flags_and_variables_reach_the_wiring() -> None:
    result = run(
        "--secret",
        "team-key",
        "--port",
        "7000",
        "--image",
        "mirror.example/lr:1",
        stdin=json.dumps(workloads()[1]),
        LAYERS_INJECT_MODE="classic",
        LAYERS_SIDECAR_INTERVAL="10s",
    )
    assert result.returncode == 0, result.stderr
    want = Wiring(
        mode="classic", secret="team-key", port=7000, image="mirror.example/lr:1", interval="10s"
    )
    assert json.loads(result.stdout) == expected([workloads()[1]], want)[0]


def test_opted_out_templates_pass_unchanged() -> None:
    documents = workloads({"layers-readiness/inject": "false"})
    result = run(stdin=yaml.safe_dump_all(documents))
    assert list(yaml.safe_load_all(result.stdout)) == documents


MALFORMED = {
    "not yaml": ("kind: [", "not YAML"),
    "not json": ('{"kind": ', "not JSON"),
    "a list at the top": ("- a\n- b\n", "a manifest is an object"),
    "a deployment without a template": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n",
        "Deployment/x",
    ),
    "an unusable annotation": (
        yaml.safe_dump_all([OTHERS[0], workloads({"layers-readiness/port": "x"})[0]]),
        "document 2 (Deployment/web)",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_is_exit_2_one_line_and_nothing_on_stdout(name: str) -> None:
    text, problem = MALFORMED[name]
    result = run(stdin=text)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("layers-sidecar inject: ")
    assert problem in lines[0]


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.yaml"))
    assert (result.returncode, result.stdout) == (2, "")
    assert "nope.yaml: No such file or directory" in result.stderr


def test_a_bad_flag_is_exit_2_naming_it() -> None:
    result = run("--mode", "sidecar")
    assert result.returncode == 2
    assert "--mode" in result.stderr
