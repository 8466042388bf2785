#!/usr/bin/env bash
# Builds pinned kube-apiserver, etcd and helm from Go modules into the cache, keyed by version,
# with version ldflags so that /version and `helm version` tell the truth. Reuses what is built.
# Needs only the Go toolchain and the Go module proxy. Every module is checked against the Go
# checksum database (go.sum is generated next to the wrapper in $NWF_CACHE/src, not committed: the
# wrapper's go.mod pins the one version and minimal version selection fixes everything else).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
source "$here/versions.sh"
mkdir -p "$NWF_BIN"
command -v go >/dev/null || { echo "build: the Go toolchain (go) is required on PATH" >&2; exit 1; }

# One build at a time per cache (two test projects, or test.sh and the demo, may ask at once);
# the second waits and then finds the binaries built.
exec 9>"$NWF_BIN/.build.lock"
flock 9

export GOFLAGS=-mod=mod CGO_ENABLED=0
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)

staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider cluster-bootstrap
  code-generator component-base component-helpers controller-manager cri-api cri-client csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
  kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
  sample-controller)

# Runs a long command and prints a line every minute, so that CI output shows the build is alive.
with_heartbeat() {
  local what=$1; shift
  local t0 beat
  t0=$(date +%s)
  # The subshell ends its own sleep when killed, so no stray process holds the output open.
  (
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do sleep 60 & nap=$!; wait "$nap"; echo "build: $what still running ($(( $(date +%s) - t0 ))s)"; done
  ) &
  beat=$!
  local rc=0
  "$@" || rc=$?
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  return "$rc"
}

# Writes a wrapper module in the cache from hack/kube/<name>/main.go and builds it.
# (The node's four binaries share one module: see build_node below.)
build_wrapper() {
  local name=$1 out=$2 ldflags=$3 gomod=$4
  local dir=$NWF_CACHE/src/$name
  mkdir -p "$dir"
  cp "$here/kube/$name/main.go" "$dir/main.go"
  printf '%s\n' "$gomod" >"$dir/go.mod"
  echo "build: $name: resolving and downloading modules"
  (cd "$dir" && with_heartbeat "$name module download" go mod tidy)
  echo "build: $name: compiling"
  (cd "$dir" && with_heartbeat "$name compile" go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
}

# go.mod of a wrapper module around k8s.io/kubernetes: the pinned version, every staging module
# replaced by its published release (k8s.io/kubernetes' own go.mod points them at ./staging).
kube_gomod() {
  local m gomod="module nwfilter-operator/hack/$1
go 1.24
require k8s.io/kubernetes v$KUBE_VERSION"
  for m in "${staging[@]}"; do gomod+=$'\n'"replace k8s.io/$m => k8s.io/$m v0.${KUBE_VERSION#1.}"; done
  printf '%s\n' "$gomod"
}

# The version upstream's build stamps into Kubernetes binaries, so that /version and --version tell the truth.
kube_ldflags() {
  local pkg minor ld=""
  minor=$(cut -d. -f2 <<<"$KUBE_VERSION")
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  printf '%s' "$ld"
}

apiserver=$NWF_BIN/kube-apiserver-v$KUBE_VERSION
if [[ ! -x $apiserver ]]; then
  echo "build: kube-apiserver v$KUBE_VERSION (cold: about 6 minutes on 2 idle cores, more when shared)"
  start=$(date +%s)
  build_wrapper kube-apiserver "$apiserver" "$(kube_ldflags)" "$(kube_gomod kube-apiserver)"
  echo "build: kube-apiserver done in $(( $(date +%s) - start ))s"
fi

etcd=$NWF_BIN/etcd-v$ETCD_VERSION
if [[ ! -x $etcd ]]; then
  echo "build: etcd v$ETCD_VERSION"
  start=$(date +%s)
  build_wrapper etcd "$etcd" "" "module nwfilter-operator/hack/etcd
go 1.24
require go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
  echo "build: etcd done in $(( $(date +%s) - start ))s"
fi

helm=$NWF_BIN/helm-v$HELM_VERSION
if [[ ! -x $helm ]]; then
  echo "build: helm v$HELM_VERSION"
  start=$(date +%s)
  # As helm's Makefile does: the Kubernetes version `helm template` assumes comes from its client-go.
  helm_gomod=$(go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$helm_gomod")
  k8s_minor=$(cut -d. -f2 <<<"$client_go")
  GOBIN=$NWF_CACHE/gobin-helm with_heartbeat "helm build" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  mv "$NWF_CACHE/gobin-helm/helm" "$helm"
  echo "build: helm done in $(( $(date +%s) - start ))s"
fi

# The node's components (only with `hack/build-kube.sh node`, as hack/node-up.sh asks): kubelet,
# kube-controller-manager, kube-scheduler and kube-proxy from the same pinned module, in one wrapper
# module with four main packages built by one `go build` (shared packages compile once), plus the
# pause image's binary, a static build of the module's own build/pause/linux/pause.c.
node_bins=(kubelet kube-controller-manager kube-scheduler kube-proxy)
node_built() {
  local b
  for b in "${node_bins[@]}" pause; do [[ -x $NWF_BIN/$b-v$KUBE_VERSION ]] || return 1; done
}
if [[ ${1:-} == node ]] && ! node_built; then
  echo "build: kubelet, kube-controller-manager, kube-scheduler, kube-proxy v$KUBE_VERSION (about 3 minutes after the kube-apiserver build, whose packages it shares in the Go build cache)"
  start=$(date +%s)
  dir=$NWF_CACHE/src/kube-node
  mkdir -p "$dir"
  for b in "${node_bins[@]}"; do mkdir -p "$dir/$b" && cp "$here/kube/kube-node/$b/main.go" "$dir/$b/main.go"; done
  kube_gomod kube-node >"$dir/go.mod"
  (cd "$dir" && with_heartbeat "node module download" go mod tidy)
  rm -rf "$dir/out" && mkdir -p "$dir/out"
  (cd "$dir" && with_heartbeat "node compile" go build -trimpath -ldflags "-s -w $(kube_ldflags)" -o out/ ./...)
  for b in "${node_bins[@]}"; do mv "$dir/out/$b" "$NWF_BIN/$b-v$KUBE_VERSION"; done
  # The pause container's process (sleeps, reaps zombies); static, so the image needs no libc.
  command -v gcc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; }
  kmod=$(cd "$dir" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  gcc -Os -static -DVERSION="v3.10-nwf" -o "$NWF_BIN/pause-v$KUBE_VERSION.tmp" "$kmod/build/pause/linux/pause.c"
  strip "$NWF_BIN/pause-v$KUBE_VERSION.tmp" && mv "$NWF_BIN/pause-v$KUBE_VERSION.tmp" "$NWF_BIN/pause-v$KUBE_VERSION"
  echo "build: node components done in $(( $(date +%s) - start ))s"
fi
if [[ ${1:-} == node ]]; then
  for b in "${node_bins[@]}" pause; do ln -sf "$NWF_BIN/$b-v$KUBE_VERSION" "$NWF_BIN/$b"; done
fi

# Stable names for PATH (see hack/kube-env.sh).
ln -sf "$apiserver" "$NWF_BIN/kube-apiserver"
ln -sf "$etcd" "$NWF_BIN/etcd"
ln -sf "$helm" "$NWF_BIN/helm"
echo "build: kube-apiserver v$KUBE_VERSION, etcd v$ETCD_VERSION, helm v$HELM_VERSION in $NWF_BIN"
