#!/usr/bin/env bash
# Shared by hack/node-up.sh, hack/node-down.sh and hack/image-build.sh (sourced): where the real
# one-node Kubernetes lives. It is a cluster of its own (its own etcd, API server, state directory and
# ports), next to the bare API server the other tests use, so that neither sees the other's objects.
# shellcheck source=versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

NODE_NAME=${NWF_NODE_NAME:-nwf-node}
NODE_STATE=${NWF_NODE_STATE:-/tmp/nwfilter-operator-node}
NODE_DIR=$NODE_STATE/node
NODE_KUBECONFIG=$NODE_STATE/kubeconfig
# The node's address lives on an interface of its own (a bridge without ports): pods reach the API server there (through
# kube-proxy's service rules), and nothing is ever sent to the host's routed addresses.
NODE_IFACE=nwfnode0
NODE_IP=10.250.0.1
NODE_API_PORT=${NWF_NODE_APISERVER_PORT:-26443}
NODE_ETCD_PORT=${NWF_NODE_ETCD_PORT:-23791}
NODE_ETCD_PEER_PORT=${NWF_NODE_ETCD_PEER_PORT:-23801}
# Pods: one bridge, host-local addresses. Services: the range hack/cluster-up.sh gives the API server.
POD_BRIDGE=nwfcni0
POD_CIDR=10.244.0.0/24
POD_GATEWAY=10.244.0.1
CNI_NETWORK=nwf-pods
SERVICE_CIDR=10.0.0.0/24
# containerd and kubelet keep their state apart from any system installation.
CONTAINERD_ROOT=/var/lib/nwf-containerd
CONTAINERD_STATE=/run/nwf-containerd
CONTAINERD_SOCK=$CONTAINERD_STATE/containerd.sock
KUBELET_ROOT=/var/lib/nwf-kubelet
# The pause image the kubelet's pod sandboxes use (built locally: no registry is reachable).
PAUSE_IMAGE=registry.k8s.io/pause:3.10
# Host settings the node changes: forwarding (pods are routed through the host), and what the kubelet
# tunes at start (its protectKernelDefaults=false path). node-up.sh saves them, node-down.sh restores.
NODE_SYSCTLS=(net/ipv4/ip_forward vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/conf/all/route_localnet)
# Components hack/node-up.sh starts, in start order (node-down.sh stops them in reverse).
NODE_COMPONENTS=(containerd kube-controller-manager kube-scheduler kubelet kube-proxy)

# Runs the node's cluster scripts with the node's state and ports.
node_cluster_env() {
  NWF_STATE=$NODE_STATE NWF_APISERVER_PORT=$NODE_API_PORT NWF_ETCD_PORT=$NODE_ETCD_PORT \
    NWF_ETCD_PEER_PORT=$NODE_ETCD_PEER_PORT NWF_APISERVER_ADDRESS=$NODE_IP "$@" 8>&-
}

# The file name of the executable component $1 runs: containerd is Debian's, the others are the
# versioned binaries behind $NWF_BIN/<name> (hack/build-kube.sh node).
node_exe() {
  if [[ $1 == containerd ]]; then echo containerd; else basename "$(readlink -f "$NWF_BIN/$1")"; fi
}

# True when the pid file of component $1 names a live process running its executable (a stale pid may
# name any process: nothing else on the machine is ever signalled).
node_alive() {
  local pidfile=$NODE_DIR/$1.pid pid exe
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $(basename "$exe") == "$(node_exe "$1")"* ]]
}

nodectl() { KUBECONFIG=$NODE_KUBECONFIG kubectl "$@"; }
