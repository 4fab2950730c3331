# syntax=docker/dockerfile:1
# schemagate container image.
#
#   docker build -t ghcr.io/schemagate/schemagate:0.1.0 .
#
# Two stages on the same base, pinned by exact tag (pin a digest as well where your build
# can resolve one: FROM python:3.11.11-slim-bookworm@sha256:...). The builder compiles
# the pure core with mypyc into a wheel of this project (setup.py) and makes a virtualenv
# at /opt/venv holding exactly the dependencies pinned, with their hashes, in
# requirements.lock (`make lock` keeps it and requirements-build.lock current with
# pyproject.toml); the final stage copies only that venv, which has no pip and no
# compiler. The venv's interpreter is a symlink to /usr/local/bin/python3.11, so both
# stages must use the same base image.
#
# The base is an ARG so that a build without registry access can name a local image
# with the same layout (the end-to-end tier builds one with debootstrap); the default is
# the public image.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# mypyc's C compiler, in the builder only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context),
# and the lock files.
COPY requirements.lock requirements-build.lock pyproject.toml setup.py README.md ./
COPY webhook ./webhook
COPY certs ./certs

# Every dependency and build tool is downloaded once, each file checked against its
# hash. The wheel is built in a build venv holding both locks, without build isolation,
# so the build's tools are pinned too and mypyc type-checks against the same libraries
# `make lint` does. Then a venv without pip, filled by the builder's pip (--python):
# the locked dependencies, then the wheel with no dependency resolution at all. Bytecode
# is compiled here, with hashes instead of timestamps, because the running container
# cannot write it (read-only root filesystem).
RUN python -m pip download --require-hashes --only-binary :all: --dest /deps \
      -r requirements.lock -r requirements-build.lock \
 && python -m venv /build \
 && /build/bin/pip install --no-index --find-links /deps \
      --no-deps --require-hashes --only-binary :all: -r requirements.lock -r requirements-build.lock \
 && SCHEMAGATE_COMPILE=1 /build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-index --find-links /deps \
      --no-deps --require-hashes --only-binary :all: -r requirements.lock \
 && python -m pip --python /opt/venv/bin/python install --no-deps /wheels/*.whl \
 && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash /opt/venv/lib


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="schemagate" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook for database schema migrations under GitOps" \
      org.opencontainers.image.licenses="Apache-2.0"

# PYTHONDONTWRITEBYTECODE: never try to write __pycache__ (the root filesystem is
# read-only in the pod); PYTHONUNBUFFERED: logs reach kubectl logs at once.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Nothing is installed with apt: no curl, no shell tools. The slim base still has
# /bin/sh and Debian's coreutils, which cannot be removed from it; the server uses none
# of them (probes are HTTPS checks by kubelet, not exec commands).
COPY --from=builder /opt/venv /opt/venv

# The standard library's bytecode, compiled once at build time for the same reason; then
# the base image's own pip goes (the venv has none either), so nothing in the running
# image can install a package. Removed as files, wherever the base keeps it: a base
# whose pip came from its distribution's packages refuses `pip uninstall`. (`python` is
# the venv's by now, PATH above; the base's interpreter is named in full.)
RUN python -m compileall -q --invalidation-mode unchecked-hash /usr/local/lib/python3.11 \
 && /usr/local/bin/python3.11 -c "import pathlib, pip, shutil; p = pathlib.Path(pip.__file__).parent; [shutil.rmtree(d) for d in (p, *p.parent.glob('pip-*.dist-info'))]" \
 && rm -f /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.11 \
 && ! /usr/local/bin/python3.11 -c "import pip" \
 && ! python -c "import pip"

# Numeric UID:GID, so Kubernetes can check runAsNonRoot without an /etc/passwd entry.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/opt/venv/bin/schemagate"]
CMD ["serve"]
