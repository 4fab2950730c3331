#!/usr/bin/env bash
# What every test tier needs on a fresh Debian 12 machine, installed only where missing
# (run by `make test` and the tier targets; a no-op in well under a second when all is
# there):
#   component, reliability: PostgreSQL and MariaDB servers (throwaway instances), and a
#         C compiler and Python's headers for the core compiled as the image compiles it;
#   e2e: etcd and Go 1.19 to build the control plane from Debian's kubernetes source;
#   node: containerd, runc, the CNI plugins, iproute2 and iptables for a real node, and
#         debootstrap, buildah and busybox-static to build its images.
# Then the control plane binaries, built once and cached (tests/e2e/build-control-plane.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  postgresql mariadb-server gcc libc6-dev python3.11-dev
  etcd-server etcd-client golang-1.19-go golang-github-modern-go-reflect2-dev openssl curl
  containerd runc containernetworking-plugins iproute2 iptables
  debootstrap buildah busybox-static
)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "make test: the test tiers need these Debian packages: ${missing[*]}" >&2
    echo "  install them as root (apt-get install ${missing[*]}) or run make test as root" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian bookworm packages no kubectl: it is part of the machine, as for `make deploy`.
if ! command -v kubectl >/dev/null; then
  echo "make test: kubectl (with kustomize) is needed and is not on PATH" >&2
  exit 1
fi
bash tests/e2e/build-control-plane.sh
