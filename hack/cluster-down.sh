#!/usr/bin/env bash
# Stops kube-apiserver and etcd started by hack/cluster-up.sh (SIGTERM, then SIGKILL after 10s).
# --purge also deletes their data, certificates and kubeconfig.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
source "$here/versions.sh"
dir=$NWF_STATE/cluster
for name in kube-apiserver etcd; do
  pidfile=$dir/$name.pid
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "cluster: stopped $name"
done
if [[ ${1:-} == --purge ]]; then
  rm -rf "$dir" "$NWF_STATE/kubeconfig"
  echo "cluster: purged $dir"
fi
