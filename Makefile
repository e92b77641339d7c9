# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench tools release

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(VENV)/.bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

demo: $(VENV)/.runtime
	$(BIN)/layers-sidecar demo

# The image tools are Debian packages; where they cannot be installed, tests/test_image.py says so
# (and fails under CI=true) instead of `make` stopping here.
tools:
	scripts/install-tools prometheus prometheus-alertmanager skopeo curl openssl
	scripts/install-tools buildah podman runc debootstrap \
	  || echo "warning: could not install the image tools (buildah podman runc debootstrap)" >&2

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# dist/: sdist, wheel, chart, image (OCI archive), SBOM and SHA256SUMS; see README, "Releasing
# and hosting your own copy". `make test` makes one and tests/test_release.py reads it back.
release: $(VENV)/.test tools
	$(BIN)/python scripts/release

test: lint tools release
	$(BIN)/pytest

bench: $(VENV)/.bench
	scripts/install-tools prometheus wrk curl jq hyperfine nginx varnish
	$(BIN)/python -m bench
