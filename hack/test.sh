#!/usr/bin/env bash
# The whole test suite on a fresh machine. Installs what it needs (npm deps, Debian packages for
# libvirtd, kube-apiserver/etcd/helm built from Go modules into a cache), starts the real daemons,
# then runs every vitest project. Idempotent: a second run reuses the cache and running daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
hack/node-deps.sh
echo "==> typecheck"
npx tsc --noEmit -p tsconfig.json
echo "==> libvirtd"
hack/libvirt-up.sh
echo "==> kube-apiserver + etcd (+ helm)"
hack/build-kube.sh
hack/cluster-up.sh
echo "==> vitest"
set +e
npx vitest run "$@"
rc=$?
set -e
echo "==> hack/test.sh finished in $(( $(date +%s) - start ))s with exit code $rc"
exit $rc
