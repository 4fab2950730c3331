#!/usr/bin/env bash
# build-control-plane.sh — obtain etcd + kube-apiserver + kube-controller-manager for the e2e tier,
# using ONLY Debian's package archive (apt):
#   - etcd-server (etcd 3.4.23) and Go 1.19 (golang-1.19-go) as binary packages;
#   - the full upstream Kubernetes v1.20.2 source (with vendor/), shipped by Debian bookworm as the
#     source package "kubernetes" (kubernetes_1.20.5+really1.20.2.orig.tar.gz, 34 MB).
#
# Usage: build-control-plane.sh [component ...]   (default: kube-apiserver kube-controller-manager)
# Env:   SCHEMAGATE_CP_CACHE  cache root                 [${HOME}/.cache/schemagate/control-plane]
#        K8S_REBUILD=1        rebuild even when the binaries are present and of the right version
# Layout under the cache root: bin/ (the binaries), build/ (source, apt state), gocache/ (Go build
# cache: a rebuild with a warm cache takes ~20 s instead of ~5-8 min).
#
# Exits 0 at once when every binary is present and reports Kubernetes v1.20.2 and etcd is installed.
# Concurrent runs are serialised with a lock; the second one then finds the binaries and exits.
# The pitfalls handled below are explained in the comments at each step.
set -euo pipefail

CACHE=${SCHEMAGATE_CP_CACHE:-${HOME}/.cache/schemagate/control-plane}
WORK=$CACHE/build
OUT=$CACHE/bin
COMPONENTS=("$@")
[ ${#COMPONENTS[@]} -gt 0 ] || COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
SRCVER=1.20.5+really1.20.2-1.1+deb12u1 # Debian bookworm's kubernetes source version
K8SVER=v1.20.2
PACKAGES=(golang-1.19-go golang-github-modern-go-reflect2-dev etcd-server etcd-client openssl)

log() { echo "[build-control-plane] $*"; }

up_to_date() {
  [ "${K8S_REBUILD:-0}" = 1 ] && return 1
  command -v etcd >/dev/null || return 1
  local c
  for c in "${COMPONENTS[@]}"; do
    [ -x "$OUT/$c" ] || return 1
    [ "$("$OUT/$c" --version 2>/dev/null)" = "Kubernetes $K8SVER" ] || return 1
  done
}

mkdir -p "$CACHE" "$WORK" "$OUT"
exec 9>"$CACHE/.build.lock"
flock 9 # another build of the same cache finishes first; we then find its binaries
if up_to_date; then
  log "up to date: ${COMPONENTS[*]} ($K8SVER) in $OUT, $(etcd --version | head -1)"
  exit 0
fi
T0=$SECONDS

# 1. binary packages: etcd 3.4.23, Go 1.19, reflect2 v1.0.2 source (fixes a Go >= 1.18 runtime crash
#    of the vendored v1.0.1). Only what is missing is installed; a fresh machine's empty package
#    lists are refreshed once.
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# 2. the Kubernetes source package, via a private apt config with a deb-src line (the system's
#    sources stay untouched): a deb-src twin of the machine's own first Debian archive entry.
if ! ls "$WORK"/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  log "fetching source package kubernetes=$SRCVER"
  APTD=$WORK/apt
  mkdir -p "$APTD/lists/partial" "$APTD/cache/archives/partial"
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "no Debian archive found in the apt sources" >&2; exit 1; }
  echo "deb-src $uri bookworm main" >"$APTD/sources.list"
  APTOPT=(-o Dir::Etc::SourceList="$APTD/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o Dir::State::Lists="$APTD/lists" -o Dir::Cache="$APTD/cache" -o APT::Sandbox::User=root)
  apt-get "${APTOPT[@]}" update >/dev/null
  (cd "$WORK" && apt-get "${APTOPT[@]}" source --download-only "kubernetes=$SRCVER" >/dev/null)
fi
SRC=$WORK/gopath/src/k8s.io/kubernetes
if [ ! -d "$SRC/cmd/kube-apiserver" ]; then
  log "unpacking the source into $SRC"
  rm -rf "$WORK/gopath/src/k8s.io"
  mkdir -p "$WORK/gopath/src/k8s.io"
  tar -xzf "$WORK"/kubernetes_*.orig.tar.gz -C "$WORK/gopath/src/k8s.io"
  mv "$WORK"/gopath/src/k8s.io/kubernetes-1.20.2 "$SRC"
  # vendored reflect2 v1.0.1 breaks json-iterator at run time with Go >= 1.18 -> Debian's v1.0.2
  rm -rf "$SRC/vendor/github.com/modern-go/reflect2"
  mkdir -p "$SRC/vendor/github.com/modern-go/reflect2"
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
    /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$SRC/vendor/github.com/modern-go/reflect2/"
fi

# 3. build in GOPATH mode, as k8s 1.20's own build did (module mode fails under Go 1.19 with
#    "go: updates to go.mod needed, disabled by -mod=vendor")
export GOPATH=$WORK/gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS= PATH=/usr/lib/go-1.19/bin:$PATH
export GOCACHE=$CACHE/gocache
cd "$SRC"
# 3a. pkg/generated/openapi/zz_generated.openapi.go is not in the source package and kube-apiserver
#     needs it ("undefined: openapi.GetOpenAPIDefinitions"): generate it with the vendored openapi-gen.
if [ ! -f pkg/generated/openapi/zz_generated.openapi.go ]; then
  log "generating pkg/generated/openapi"
  go build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  DIRS=$(hack/make-rules/helpers/cache_go_dirs.sh "$WORK/all_go_dirs.mk")
  # shellcheck disable=SC2086 # DIRS is a list of directories
  IN=$(find $DIRS -maxdepth 1 -type f -name '*.go' | xargs grep -l '^// *+k8s:' |
    grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' |
    xargs grep -l '+k8s:openapi-gen=' | xargs -n1 dirname | LC_ALL=C sort -u |
    sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  "$WORK/openapi-gen" --logtostderr -i "$IN" -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$WORK/openapi-violations.report" 2>/dev/null
fi
# 3b. compile; the version is stamped as the release build would (kubectl's skew checks read it)
LDF="-s -w"
for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  LDF="$LDF -X $p.gitVersion=$K8SVER -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean"
done
for c in "${COMPONENTS[@]}"; do
  log "go build ./cmd/$c"
  go build -o "$OUT/$c.tmp" -ldflags "$LDF" "./cmd/$c"
  mv -f "$OUT/$c.tmp" "$OUT/$c" # never leave a half-written binary behind
  log "built $OUT/$c: $("$OUT/$c" --version)"
done
log "etcd: $(etcd --version | head -1)"
log "done in $((SECONDS - T0)) s"
