"""`layers-sidecar inject`: Kubernetes manifests in, the same documents out, pod templates wired.

Documents keep their order; kinds without a pod template pass through as they came (re-written,
so comments and key order of the YAML are not kept, but every field is). JSON in gives JSON out
(one document per line group when there are several); anything else gives a YAML stream. All
input is read and wired before anything is written: a malformed document anywhere means exit 2,
one line on stderr and nothing on stdout, never half a stream.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

import yaml

from ..settings import Settings
from .options import wiring_of
from .wiring import Wiring, WiringError, wire

# Where each kind keeps its pod template; a Pod is its own template.
TEMPLATE_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}
EXIT_MALFORMED: Final = 2


class ManifestError(ValueError):
    """Input that cannot be read or wired; `str()` is the one line shown."""


class _Loader(yaml.SafeLoader):
    """YAML as Kubernetes reads it for our purpose: timestamps stay strings, so that what is
    written back (as YAML or JSON) is what was read."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Source:
    name: str
    text: str


def _is_json(text: str) -> bool:
    return text.lstrip().startswith(("{", "["))


def _documents(source: Source) -> list[Any]:
    if _is_json(source.text):
        decoder = json.JSONDecoder()
        documents: list[Any] = []
        index, text = 0, source.text
        try:
            while True:
                while index < len(text) and text[index].isspace():
                    index += 1
                if index == len(text):
                    return documents
                document, index = decoder.raw_decode(text, index)
                documents.append(document)
        except json.JSONDecodeError as error:
            raise ManifestError(f"{source.name}: not JSON: {error}") from None
    try:
        return [doc for doc in yaml.load_all(source.text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ManifestError(f"{source.name}: not YAML{at}: {problem}") from None


def _template_of(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = document
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _set_template(document: dict[str, Any], path: tuple[str, ...], template: Any) -> None:
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = template


def inject_document(document: Any, options: Wiring) -> Any:
    """One document, its pod template (or, for a List, its items') wired; others unchanged."""
    if not isinstance(document, dict):
        raise WiringError("a manifest is an object with apiVersion and kind")
    kind = document.get("kind")
    if kind == "List" and isinstance(document.get("items"), list):
        return {**document, "items": [inject_document(item, options) for item in document["items"]]}
    if not isinstance(kind, str) or kind not in TEMPLATE_PATHS:
        return document
    path = TEMPLATE_PATHS[kind]
    if not path:
        return wire(document, options)
    template = _template_of(document, path)
    if not isinstance(template, dict):
        raise WiringError(f"{'.'.join(path)} is missing or not an object")
    wired = json.loads(json.dumps(document))  # a deep copy; manifests are JSON's data model
    _set_template(wired, path, wire(template, options))
    return wired


def _name(document: Any) -> str:
    if not isinstance(document, dict):
        return type(document).__name__
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{document.get('kind')}/{name}"


def inject_sources(sources: Sequence[Source], options: Wiring) -> str:
    """Every document of every source, wired, as one text; ManifestError for malformed input."""
    out: list[Any] = []
    all_json = bool(sources) and all(_is_json(source.text) for source in sources)
    for source in sources:
        for number, document in enumerate(_documents(source), start=1):
            try:
                out.append(inject_document(document, options))
            except WiringError as error:
                where = f"{source.name}: document {number} ({_name(document)})"
                raise ManifestError(f"{where}: {error}") from None
    if all_json:
        return "".join(json.dumps(document, indent=2) + "\n" for document in out)
    return yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False, width=1 << 30)


def read_sources(files: Iterable[str], stdin: TextIO) -> list[Source]:
    names = list(files) or ["-"]
    sources = []
    for name in names:
        if name == "-":
            sources.append(Source("<stdin>", stdin.read()))
            continue
        try:
            with open(name, encoding="utf-8") as file:
                sources.append(Source(name, file.read()))
        except (OSError, UnicodeDecodeError) as error:
            problem = getattr(error, "strerror", None) or str(error)
            raise ManifestError(f"{name}: {problem}") from None
    return sources


def run_inject(
    files: Sequence[str],
    options: Wiring,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        text = inject_sources(read_sources(files, stdin), options)
    except ManifestError as error:
        print(f"layers-sidecar inject: {error}", file=stderr)
        return EXIT_MALFORMED
    stdout.write(text)
    return 0


def run_inject_command(settings: Settings, files: Sequence[str]) -> int:
    """`layers-sidecar inject [FILE ...]`: the wiring the settings describe, over the files."""
    return run_inject(files, wiring_of(settings))
