#!/usr/bin/env bash
# Stops the one-node Kubernetes of hack/node-up.sh and leaves nothing of it behind: pods (their
# containers, network namespaces and addresses), kubelet and containerd mounts, the pod bridge and the
# node's interface, kube-proxy's iptables chains, the kubepods cgroups, and the sysctls it changed.
# Ends with a check of each of these and fails when one remains. Works after a killed run too.
#   --purge  also deletes the node's cluster data, containerd's images and the kubelet's directory
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=node-env.sh
source "$here/node-env.sh"
purge=false
case ${1:-} in
  --purge) purge=true ;;
  '') ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[[ $(id -u) == 0 ]] || { echo "node: needs root" >&2; exit 1; }
[[ -d $NODE_DIR ]] || { echo "node: nothing in $NODE_DIR"; exit 0; }
exec 8>"$NODE_DIR/.up.lock"
flock -w 300 8 || { echo "node: $NODE_DIR is locked by a running hack/node-up.sh" >&2; exit 1; }
t0=$SECONDS

# Stops component $1 (SIGTERM, then SIGKILL after 10 s); only a process running its binary is signalled.
stop() {
  local name=$1 pid
  node_alive "$name" || { rm -f "$NODE_DIR/$name.pid"; return 0; }
  pid=$(<"$NODE_DIR/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$NODE_DIR/$name.pid"
  echo "node: stopped $name"
}

api_up() { nodectl get --raw /readyz >/dev/null 2>&1; }
tasks() { ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null || true; }

# 1. Pods go through the kubelet, so that it stops their containers and CNI releases their network.
#    The controller manager and scheduler stop first: no DaemonSet or ReplicaSet recreates a pod.
stop kube-controller-manager
stop kube-scheduler
if api_up && node_alive kubelet; then
  nodectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  for _ in $(seq 120); do
    [[ -z $(tasks) && -z $(ls /var/run/netns 2>/dev/null | grep '^cni-') ]] && break
    sleep 0.5
  done
fi
stop kubelet
stop kube-proxy

# 2. What the kubelet did not stop (a killed run): containerd's tasks, then its shims.
if node_alive containerd; then
  for t in $(tasks); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  for _ in $(seq 50); do [[ -z $(tasks) ]] && break; sleep 0.2; done
fi
stop containerd
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do kill -KILL "$pid" 2>/dev/null || true; done

# 3. Network namespaces of our pods (an address in the pod range), the bridge, the node's interface.
for ns in $(ls /var/run/netns 2>/dev/null | grep '^cni-' || true); do
  if ip netns exec "$ns" ip -4 -o addr show 2>/dev/null | grep -q " ${POD_CIDR%.*}\."; then ip netns delete "$ns" || true; fi
done
ip link delete "$POD_BRIDGE" 2>/dev/null || true
ip link delete "$NODE_IFACE" 2>/dev/null || true
rm -rf "/var/lib/cni/networks/$CNI_NETWORK"
rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true

# 4. kube-proxy's chains (its own cleanup knows them), then what remains of KUBE-* and CNI-* (the
#    kubelet's canary, firewall and hint chains): the rules that jump to them, then the chains.
#    No other chain is touched (libvirt's and the packet lab's have other names).
[[ -x $NWF_BIN/kube-proxy ]] && "$NWF_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
purge_chains() {
  local save=$1 cmd=$2 table rule chain chains
  for table in filter nat mangle raw; do
    while read -r rule; do
      [[ -n $rule ]] && eval "$cmd -w -t $table ${rule/#-A/-D}" 2>/dev/null || true
    done < <("$save" -t "$table" 2>/dev/null | grep -E '^-A [^ ]+ .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' || true)
    chains=$("$save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p')
    for chain in $chains; do "$cmd" -w -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do "$cmd" -w -t "$table" -X "$chain" 2>/dev/null || true; done
  done
}
purge_chains iptables-save iptables
purge_chains ip6tables-save ip6tables

# 5. Mounts under the kubelet's and containerd's directories, deepest first.
umount_under() {
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk -v d="$1" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r)
}
umount_under "$KUBELET_ROOT"
umount_under "$CONTAINERD_ROOT"
umount_under "$CONTAINERD_STATE"
rm -rf "$KUBELET_ROOT/pods" "$CONTAINERD_STATE"

# 6. The kubelet's cgroups (cgroupfs driver): kubepods in every hierarchy, leaves first.
for h in /sys/fs/cgroup/*/; do
  [[ -d ${h}kubepods ]] && find "${h}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done

# 7. Forwarding and the kubelet's kernel tunables as they were before hack/node-up.sh.
if [[ -f $NODE_DIR/sysctls.saved ]]; then
  while read -r k v; do echo "$v" >"/proc/sys/$k" 2>/dev/null || echo "node: could not restore $k=$v" >&2; done <"$NODE_DIR/sysctls.saved"
  saved=$(<"$NODE_DIR/sysctls.saved")
  rm -f "$NODE_DIR/sysctls.saved"
fi

# 8. The node's API server and etcd.
node_cluster_env "$here/cluster-down.sh" $($purge && echo --purge) >/dev/null
if $purge; then
  rm -rf "$NODE_STATE" "$CONTAINERD_ROOT" "$KUBELET_ROOT"
fi

# --- check ------------------------------------------------------------------------------------
left=()
for c in "${NODE_COMPONENTS[@]}"; do [[ -f $NODE_DIR/$c.pid ]] && node_alive "$c" && left+=("process $c"); done
pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" >/dev/null && left+=("containerd shims")
awk -v a="$KUBELET_ROOT" -v b="$CONTAINERD_ROOT" -v c="$CONTAINERD_STATE" \
  '$2 == a || index($2, a "/") == 1 || $2 == b || index($2, b "/") == 1 || $2 == c || index($2, c "/") == 1' /proc/self/mounts | grep -q . && left+=("mounts")
ip link show "$POD_BRIDGE" >/dev/null 2>&1 && left+=("bridge $POD_BRIDGE")
ip link show "$NODE_IFACE" >/dev/null 2>&1 && left+=("interface $NODE_IFACE")
for tool in iptables-save ip6tables-save; do
  "$tool" 2>/dev/null | grep -qE '^:(KUBE-|CNI-)' && left+=("$tool chains KUBE-/CNI-")
done
for h in /sys/fs/cgroup/*/; do [[ -d ${h}kubepods ]] && left+=("cgroup ${h}kubepods"); done
while read -r k v; do
  [[ -n $k && $(cat "/proc/sys/$k") != "$v" ]] && left+=("sysctl $k=$(cat "/proc/sys/$k") (was $v)")
done <<<"${saved:-}"
if (( ${#left[@]} )); then
  echo "node: teardown left: ${left[*]}" >&2
  exit 1
fi
echo "node: down in $(( SECONDS - t0 ))s; nothing left (processes, pods, mounts, $POD_BRIDGE, $NODE_IFACE," \
  "KUBE-/CNI- chains, kubepods cgroups); sysctls restored (ip_forward=$(cat /proc/sys/net/ipv4/ip_forward))"
