#!/usr/bin/env bash
# Brings up a real one-node Kubernetes on this machine: its own etcd + kube-apiserver (hack/cluster-up.sh
# with the node's state and ports, reachable by pods), kube-controller-manager, kube-scheduler, kubelet
# and kube-proxy built from the same pinned Kubernetes module (hack/build-kube.sh node), containerd,
# runc and the CNI plugins from Debian, a bridge network for pods. No systemd: every daemon is started
# here, with its pid file and log in $NODE_DIR. Idempotent: what runs is left running; a second call
# only waits for the node to be Ready. Stop everything with hack/node-down.sh. Needs root.
#
# Prints how long each step took, so that cold (first build) and warm runs can be compared.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=node-env.sh
source "$here/node-env.sh"
[[ $(id -u) == 0 ]] || { echo "node: needs root (kubelet, containerd, iptables)" >&2; exit 1; }
mkdir -p "$NODE_DIR"
exec 8>"$NODE_DIR/.up.lock"
flock 8

t0=$(date +%s)
step_start=$t0
step() {
  local now
  now=$(date +%s)
  echo "node: $1 ($(( now - step_start ))s)"
  step_start=$now
}

# --- packages --------------------------------------------------------------------------------
packages=(containerd runc containernetworking-plugins iptables conntrack gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if (( ${#missing[@]} )); then
  echo "node: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
step "packages"

# --- binaries --------------------------------------------------------------------------------
"$here/build-kube.sh" node
step "kubelet, kube-controller-manager, kube-scheduler, kube-proxy v$KUBE_VERSION built"

# --- host network: the node's address, forwarding ------------------------------------------
if ! ip link show "$NODE_IFACE" >/dev/null 2>&1; then
  # A bridge without ports: some kernels here have no dummy driver, every one has bridges.
  ip link add "$NODE_IFACE" type bridge
  ip addr add "$NODE_IP/32" dev "$NODE_IFACE"
  ip link set "$NODE_IFACE" up
fi
# Saved once (a second run must not save the node's own values); hack/node-down.sh restores them.
if [[ ! -f $NODE_DIR/sysctls.saved ]]; then
  for k in "${NODE_SYSCTLS[@]}"; do echo "$k $(cat "/proc/sys/$k")"; done >"$NODE_DIR/sysctls.saved.tmp"
  mv "$NODE_DIR/sysctls.saved.tmp" "$NODE_DIR/sysctls.saved"
fi
# Pods' packets are routed through the host.
echo 1 >/proc/sys/net/ipv4/ip_forward

# --- control plane ---------------------------------------------------------------------------
pki=$NODE_STATE/cluster/pki
# `kubectl logs/exec` go from the API server to the kubelet at the node's InternalIP, authenticated
# with the admin certificate (system:masters), which the kubelet's webhook authorization admits.
node_cluster_env env NWF_APISERVER_EXTRA_ARGS="--kubelet-preferred-address-types=InternalIP,Hostname \
--kubelet-client-certificate=$pki/admin.crt --kubelet-client-key=$pki/admin.key" "$here/cluster-up.sh" >"$NODE_DIR/cluster-up.log" 2>&1 \
  || { cat "$NODE_DIR/cluster-up.log" >&2; exit 1; }
step "etcd + kube-apiserver at https://$NODE_IP:$NODE_API_PORT"

# Every component uses the admin kubeconfig: a development node, not a hardened one.
kubeconfig=$NODE_KUBECONFIG

# Writes stdin to file $1 only when its content differs: kube-proxy exits when its --config file is
# rewritten, so a second run must leave an unchanged file alone.
write_config() {
  local tmp=$1.tmp
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

# Starts component $1 (binary $2, then its arguments) unless it runs already.
start() {
  local name=$1 bin=$2
  shift 2
  if node_alive "$name"; then return 0; fi
  echo "node: starting $name (log $NODE_DIR/$name.log)"
  nohup "$bin" "$@" </dev/null >"$NODE_DIR/$name.log" 2>&1 8>&- &
  echo $! >"$NODE_DIR/$name.pid"
}

# --- containerd --------------------------------------------------------------------------------
mkdir -p "$NODE_DIR/cni" "$CONTAINERD_ROOT" "$CONTAINERD_STATE"
write_config "$NODE_DIR/containerd.toml" <<EOF
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_STATE/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: runc could not lower a container's oom_score_adj below ours.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni"
EOF
write_config "$NODE_DIR/cni/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "loopback"}
  ]
}
EOF
start containerd /usr/bin/containerd --config "$NODE_DIR/containerd.toml"
for i in $(seq 100); do
  ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 && break
  (( i == 100 )) && { echo "node: containerd does not answer; see $NODE_DIR/containerd.log" >&2; exit 1; }
  sleep 0.2
done
# The pause image: the static binary from build-kube.sh in a one-layer image, imported once.
if ! ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep -qx "$PAUSE_IMAGE"; then
  "$here/image-build.sh" pause
fi
step "containerd with the pause image"

# --- kube-controller-manager, kube-scheduler ------------------------------------------------------
# Service-account tokens and the kube-root-ca.crt ConfigMap come from the controller manager; pods
# cannot start without their ServiceAccount.
start kube-controller-manager "$NWF_BIN/kube-controller-manager" \
  --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --service-cluster-ip-range "$SERVICE_CIDR" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 10357 --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller'
start kube-scheduler "$NWF_BIN/kube-scheduler" \
  --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 10359

# --- kubelet -------------------------------------------------------------------------------------
write_config "$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are v1 (hybrid) without systemd managing them.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# See containerd's restrict_oom_score_adj: the kubelet must not ask for a lower score either.
oomScoreAdj: 0
address: $NODE_IP
port: 10350
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10348
authentication:
  anonymous: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
  webhook: {enabled: true}
authorization: {mode: Webhook}
# A shared development machine: evict only when it is really full.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# Images are imported into containerd; there is no registry to pull from.
registryPullQPS: 0
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
resolvConf: /etc/resolv.conf
EOF
mkdir -p "$KUBELET_ROOT"
start kubelet "$NWF_BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" --kubeconfig "$kubeconfig" \
  --root-dir "$KUBELET_ROOT" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
  --cert-dir "$NODE_DIR/kubelet-pki"

# --- kube-proxy ----------------------------------------------------------------------------------
write_config "$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10356
metricsBindAddress: 127.0.0.1:10349
# Leave the machine's conntrack table size alone (and the tests' conntrack settings).
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
# No NodePorts on 127.0.0.1, which would switch on route_localnet for the whole host.
iptables: {localhostNodePorts: false}
EOF
start kube-proxy "$NWF_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"

# --- wait for the node ---------------------------------------------------------------------------
for i in $(seq 240); do
  if [[ $(nodectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; then break; fi
  for c in "${NODE_COMPONENTS[@]}"; do
    node_alive "$c" || { echo "node: $c exited; last lines of $NODE_DIR/$c.log:" >&2; tail -20 "$NODE_DIR/$c.log" >&2; exit 1; }
  done
  (( i == 240 )) && { echo "node: $NODE_NAME not Ready after 120s; see $NODE_DIR/kubelet.log" >&2; exit 1; }
  sleep 0.5
done
# The default ServiceAccount of `default` shows the controller manager's token controllers run.
for i in $(seq 120); do
  nodectl get serviceaccount default -n default >/dev/null 2>&1 && break
  (( i == 120 )) && { echo "node: no default ServiceAccount after 60s; see $NODE_DIR/kube-controller-manager.log" >&2; exit 1; }
  sleep 0.5
done
step "node $NODE_NAME Ready"
echo "node: up in $(( $(date +%s) - t0 ))s. export KUBECONFIG=$NODE_KUBECONFIG"
