#!/usr/bin/env bash
# The whole test suite on a fresh machine. Installs what it needs (npm deps, Debian packages for
# libvirtd, kube-apiserver/etcd/helm built from Go modules into a cache), starts the real daemons,
# then runs every vitest project. Idempotent: a second run reuses the cache and running daemons.
# The packet project prepares (and at its end restores) the host itself: its global setup runs
# hack/netlab.sh up/down (Debian tools for the lab, bridge netfilter and ICMP sysctls). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
hack/node-deps.sh
# A running demo agent would treat the tests' filters as orphans on the shared libvirtd (and the
# tests' agents the demo's): stop the demo's processes first.
state=${NWF_STATE:-/tmp/nwfilter-operator}
for p in agent controller; do
  if [[ -f $state/$p.pid ]] && kill -0 "$(cat "$state/$p.pid")" 2>/dev/null; then
    echo "==> stopping the demo's $p (restart it with hack/demo.sh)"
    kill "$(cat "$state/$p.pid")" || true
    rm -f "$state/$p.pid"
  fi
done
# promtool checks the chart's alert rules (test/integration/kube/chart.test.ts); Debian's prometheus
# package is where it comes from (the server itself is not started).
if ! command -v promtool >/dev/null; then
  echo "==> installing promtool (Debian package prometheus)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "==> typecheck"
npx tsc --noEmit -p tsconfig.json
echo "==> libvirtd"
hack/libvirt-up.sh
echo "==> kube-apiserver + etcd (+ helm)"
hack/build-kube.sh
hack/cluster-up.sh
lts_rc=0
if (( $# == 0 )); then
  # The image runs the Node.js LTS of hack/versions.sh (test/node runs it in pods); the unit tests run on
  # it here as well, and everything below on the machine's Node.js.
  source hack/versions.sh
  echo "==> unit tests on Node.js $NODEJS_LTS_VERSION (the image's); the whole suite follows on $(node --version)"
  node_lts=$(hack/nodejs-lts.sh)
  set +e
  "$node_lts" node_modules/vitest/vitest.mjs run --project unit
  lts_rc=$?
  set -e
fi
echo "==> vitest"
set +e
npx vitest run "$@"
rc=$?
set -e
(( rc == 0 && lts_rc != 0 )) && { echo "==> the unit tests failed on Node.js $NODEJS_LTS_VERSION"; rc=$lts_rc; }
echo "==> hack/test.sh finished in $(( $(date +%s) - start ))s with exit code $rc"
exit $rc
