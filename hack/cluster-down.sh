#!/usr/bin/env bash
# Stops kube-apiserver and etcd started by hack/cluster-up.sh (SIGTERM, then SIGKILL after 10s).
# Only processes whose executable is our built binary are signalled: a stale pid file may name
# anything. --purge also deletes their data, certificates and kubeconfig.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
source "$here/versions.sh"
dir=$NWF_STATE/cluster
purge=false
case ${1:-} in
  --purge) purge=true ;;
  '') ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[[ -d $dir ]] || { echo "cluster: nothing in $dir"; exit 0; }
exec 9>"$dir/.up.lock"
flock -w 150 9 || { echo "cluster: $dir is locked by a running hack/cluster-up.sh" >&2; exit 1; }

for name in kube-apiserver etcd; do
  pidfile=$dir/$name.pid
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if [[ $(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)") == "$name-v"* ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "cluster: $name did not stop within 10s, killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "cluster: stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done
if $purge; then
  rm -rf "$dir" "$NWF_STATE/kubeconfig"
  echo "cluster: purged $dir and $NWF_STATE/kubeconfig"
fi
