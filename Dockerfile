# syntax=docker/dockerfile:1
#
# layers-readiness: the `layers-sidecar` command in a small, non-root, read-only image.
#
#   docker build -t localhost/layers-readiness:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Add `--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt` behind a TLS-intercepting proxy
# (see the pip step). `podman build` and `buildah bud` take the same arguments. DEBIAN_IMAGE and
# RUNTIME_IMAGE swap the base images for mirrors (or, in the tests, for Debian-made stand-ins).
#
# Two stages. The build stage has pip and a Debian Python; it installs the project and its
# dependencies (wheels only: nothing is compiled) into a virtual environment at /opt/venv.
# The runtime stage is distroless: the same Debian 12 Python 3.11 and nothing else: no shell,
# no package manager, no pip, no compiler. Only /opt/venv is copied across.
#
# Runtime contract (what the Helm chart and deploy/ rely on):
# - runs as the fixed numeric user 65532:65532 (distroless "nonroot"), never root;
# - writes nothing to its root filesystem (bytecode is compiled here, PYTHONDONTWRITEBYTECODE
#   is set), so `readOnlyRootFilesystem: true` works with no emptyDir;
# - needs no capabilities (it listens on 8080, above 1024);
# - ENTRYPOINT is `layers-sidecar`, CMD is `serve`: `args: ["check"]` turns the same image
#   into the init container.

ARG DEBIAN_IMAGE=debian:12-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot

FROM ${DEBIAN_IMAGE} AS build

# Versions are pinned by the base image's Debian release; apt pins would break on every
# point release without making the build more reproducible than the image digest does.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# /usr/bin/python3 is Python 3.11 in Debian 12 and in the distroless runtime alike, so the
# venv's interpreter link stays valid after the copy.
RUN python3 -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar/ sidecar/

# Build our own wheel first, then install it with binary-only dependencies: a dependency
# without a wheel for this platform fails the build instead of needing a compiler.
# The venv's pip and setuptools are removed afterwards: the runtime image needs neither.
#
# Behind a proxy that intercepts TLS, pip needs that proxy's CA. It comes in as an optional
# build secret (`--secret id=ca,src=/path/to/bundle.pem`, Docker BuildKit, Podman and Buildah
# alike): mounted for this one step at /run/secrets/ca and never stored in a layer. The file
# replaces pip's own CA list, so give it a whole bundle (your system's, which trusts the proxy).
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install --only-binary=:all: /tmp/wheels/*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/layers-sidecar --version \
    && rm -rf /tmp/wheels /root/.cache

FROM ${RUNTIME_IMAGE} AS runtime

# Where the image came from, set by whoever builds it (CI passes the tag and the commit):
#   --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD)
ARG SOURCE=""
ARG VERSION=0.0.0-dev
ARG REVISION=0000000000000000000000000000000000000000

LABEL org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.title="layers-readiness" \
      org.opencontainers.image.description="Readiness gate, boot check and Prometheus exporter for a Layers Partner API key" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LAYERS_SIDECAR_LISTEN=0.0.0.0:8080

USER 65532:65532
EXPOSE 8080

ENTRYPOINT ["layers-sidecar"]
CMD ["serve"]
