#!/usr/bin/env bash
# The main job on a local default environment: real libvirtd, etcd and kube-apiserver from hack/,
# the CRDs installed, controller and agent running as processes, the examples applied, status shown.
# Idempotent: re-running restarts controller and agent with the current code.
#   hack/demo.sh        bring everything up and show status
#   hack/demo.sh down   stop controller, agent, the cluster and remove the demo domains
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state=${NWF_STATE:-/tmp/nwfilter-operator}
mkdir -p "$state"
node_name=${NODE_NAME:-$(hostname)}
NWF_STATE_KUBECONFIG=$state/kubeconfig

stop_process() {
  local pidfile=$state/$1.pid
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
}

if [[ ${1:-up} == down ]]; then
  # Delete the examples while controller and agent still run, so that filters are detached and
  # finalizers removed; then stop everything.
  if [[ -f $NWF_STATE_KUBECONFIG ]] && [[ -f $state/agent.pid ]] && kill -0 "$(cat "$state/agent.pid")" 2>/dev/null; then
    KUBECONFIG=$NWF_STATE_KUBECONFIG kubectl delete -R -f examples/ --ignore-not-found --timeout=60s >/dev/null || true
  fi
  stop_process agent
  stop_process controller
  hack/demo-domains.sh undefine || true
  hack/cluster-down.sh
  exit 0
fi

hack/node-deps.sh
echo "==> libvirtd"
hack/libvirt-up.sh
echo "==> kube-apiserver + etcd"
hack/build-kube.sh
hack/cluster-up.sh
# shellcheck disable=SC1091
source hack/kube-env.sh
export KUBECONFIG
echo "==> CRDs"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
echo "==> demo domains"
hack/demo-domains.sh
echo "==> build"
npm run -s build
echo "==> controller and agent (logs in $state/controller.log, $state/agent.log)"
stop_process agent
stop_process controller
nohup node dist/cli.js controller --kubeconfig "$KUBECONFIG" --leader-elect false \
  --metrics-addr 127.0.0.1:18080 --health-addr 127.0.0.1:18081 >"$state/controller.log" 2>&1 &
echo $! >"$state/controller.pid"
nohup node dist/cli.js agent --kubeconfig "$KUBECONFIG" --node-name "$node_name" \
  --metrics-addr 127.0.0.1:19090 --health-addr 127.0.0.1:19091 >"$state/agent.log" 2>&1 &
echo $! >"$state/agent.pid"
for port in 18081 19091; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.3; done
done
echo "==> examples"
kubectl apply --server-side -R -f examples/ >/dev/null
kubectl wait --for=condition=Ready vmfilter --all --timeout=180s >/dev/null || echo "(not every VMFilter is Ready yet: see below)"
echo
kubectl get nwfilter
echo
echo "libvirt:"
virsh -c qemu:///system nwfilter-list | grep -E 'nwf-|Name' || true
cat <<TXT

Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get vmfilters -o wide
  kubectl describe vmfilter eng-web-01
  npx tsx src/cli.ts explain -f examples --vm eng-web-01 --packet "out tcp 22"
  virsh -c qemu:///system nwfilter-dumpxml nwf-vm-eng-web-01
Metrics: http://127.0.0.1:18080/metrics (controller), http://127.0.0.1:19090/metrics (agent)
Stop everything: hack/demo.sh down
TXT
