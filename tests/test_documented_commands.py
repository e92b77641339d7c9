"""Every `kubectl` and `helm` command the documentation tells a user to run, rendered as it would
run: none of them may replace the Secret the same documentation tells the user to create, and a
documented install deploys only what its text says.

The commands are parsed out of README.md, docs/*.md and the chart's README (fenced blocks and
inline code, with `\\` continuations joined). `kubectl apply -k DIR` and `kubectl kustomize DIR |
kubectl apply -f -` are built with `kubectl kustomize`; `kubectl apply -f PATH` reads the files;
`helm install|upgrade --install` of this repository's chart is rendered by Helm's engine with the
command's `--set` values and namespace.
`kubectl create` never replaces an existing object, so it is not a risk and is not rendered.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.k8s import CHART_DIR, ROOT, Obj, kustomize, load_documents, render_chart

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), CHART_DIR / "README.md"]

FENCED = re.compile(r"^ *```[^\n]*\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
CREATE_SECRET = re.compile(r"kubectl (?:-n \S+ )?create secret generic ([a-z0-9.-]+)")


@dataclass
class Command:
    source: str  # file:line-ish, for messages
    text: str


@dataclass
class Rendered:
    command: Command
    objects: list[Obj] = field(default_factory=list)


def command_lines(markdown: str) -> list[str]:
    """Shell lines from fenced blocks (continuations joined) and inline code spans."""
    lines: list[str] = []
    for block in FENCED.findall(markdown):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines.extend(line.strip() for line in joined.splitlines())
    outside = FENCED.sub("", markdown)
    lines.extend(span.strip() for span in INLINE.findall(outside))
    return [line for line in lines if line.startswith(("kubectl ", "helm "))]


def documented_commands() -> list[Command]:
    found = []
    for document in DOCUMENTS:
        for line in command_lines(document.read_text(encoding="utf-8")):
            found.append(Command(str(document.relative_to(ROOT)), line))
    return found


def secrets_the_user_creates() -> set[str]:
    names = set()
    for document in DOCUMENTS:
        names |= set(CREATE_SECRET.findall(document.read_text(encoding="utf-8")))
    return names


def set_value(values: dict[str, Any], dotted: str, raw: str, *, typed: bool = True) -> None:
    """`--set a.b=c` as Helm reads it: true/false and integers are typed, the rest strings
    (`--set-string`: all strings)."""
    value: Any = raw
    if typed and raw in {"true", "false"}:
        value = raw == "true"
    elif typed and re.fullmatch(r"-?\d+", raw):
        value = int(raw)
    *parents, last = dotted.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[last] = value


def render_helm(command: Command) -> list[Obj]:
    words = shlex.split(command.text)
    positional: list[str] = []
    values: dict[str, Any] = {}
    namespace = "default"
    i = 1
    while i < len(words):
        word = words[i]
        if word in {"--set", "--set-string"}:
            key, _, raw = words[i + 1].partition("=")
            set_value(values, key, raw, typed=word == "--set")
            i += 2
        elif word in {"--namespace", "-n"}:
            namespace = words[i + 1]
            i += 2
        elif word in {"--values", "-f"}:
            pytest.fail(f"{command.source}: `{command.text}`: teach this test to read {word}")
        elif word.startswith("-"):
            i += 1  # --install, --create-namespace, --wait: flags without a value
        else:
            positional.append(word)
            i += 1
    # install NAME CHART, or upgrade --install NAME CHART
    assert len(positional) == 3, f"{command.source}: cannot read `{command.text}`"
    verb, release, chart = positional
    assert verb in {"install", "upgrade"}, command
    assert Path(chart).resolve() == CHART_DIR.resolve() or chart.endswith("helm/layers-readiness")
    return [
        o
        for objects in render_chart(values, name=release, namespace=namespace).values()
        for o in objects
    ]


def render(command: Command) -> Rendered | None:
    """The objects a documented command would apply; None when it applies nothing from here."""
    text = command.text
    kustomized = re.match(r"kubectl (?:kustomize|apply -k) (\S+)", text)
    if kustomized:
        directory = kustomized.group(1)
        if "://" in directory or directory.startswith("github.com"):
            return None
        return Rendered(command, kustomize(ROOT / directory))
    applied = re.match(r"kubectl (?:-n \S+ )?apply (?:-n \S+ )?-f (\S+)", text)
    if applied and applied.group(1) != "-" and "://" not in applied.group(1):
        path = ROOT / applied.group(1)
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        return Rendered(command, [o for f in files for o in load_documents(f.read_text())])
    if re.match(r"helm (?:install|upgrade)\b", text):
        return Rendered(command, render_helm(command))
    return None


@pytest.fixture(scope="module")
def rendered() -> list[Rendered]:
    results = [r for c in documented_commands() if (r := render(c)) is not None]
    return results


def test_the_documentation_has_commands_to_check(rendered: list[Rendered]) -> None:
    kinds = {("helm" if r.command.text.startswith("helm") else "kubectl") for r in rendered}
    assert kinds == {"helm", "kubectl"}
    assert len(rendered) >= 5, [r.command.text for r in rendered]
    assert "layers-api-key" in secrets_the_user_creates()


def test_no_documented_command_replaces_the_users_secret(rendered: list[Rendered]) -> None:
    told_to_create = secrets_the_user_creates()
    for result in rendered:
        for obj in result.objects:
            if obj["kind"] == "Secret":
                assert obj["metadata"]["name"] not in told_to_create, (
                    f"{result.command.source}: `{result.command.text}` would replace the Secret "
                    f"{obj['metadata']['name']!r} the user is told to create"
                )


def test_monitoring_install_deploys_only_monitoring(rendered: list[Rendered]) -> None:
    helm = [
        r
        for r in rendered
        if r.command.source == "docs/monitoring.md" and r.command.text.startswith("helm")
    ]
    assert helm
    for result in helm:
        kinds = {o["kind"] for o in result.objects}
        assert kinds <= {"PodMonitor", "PrometheusRule", "ConfigMap"}, (
            f"`{result.command.text}` deploys {sorted(kinds)}: its text promises monitoring only"
        )


def test_no_documented_install_runs_a_placeholder_image_as_ours(rendered: list[Rendered]) -> None:
    """A command that installs the sidecar image must say which one (`image.repository`)."""
    for result in rendered:
        if not result.command.text.startswith("helm"):
            continue
        images = {
            c["image"]
            for o in result.objects
            if o["kind"] in {"Deployment", "Job"}
            for c in [
                *o["spec"]["template"]["spec"].get("initContainers", []),
                *o["spec"]["template"]["spec"]["containers"],
            ]
            if c["name"].startswith("layers-readiness")
        }
        for image in images:
            assert "example/layers-readiness" not in image, (
                f"`{result.command.text}` installs the placeholder image {image}"
            )
