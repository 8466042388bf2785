#!/usr/bin/env bash
# Starts etcd and kube-apiserver on loopback: RBAC authorization, service-account signing keys, an
# admin client certificate, a kubeconfig. Idempotent: when the API server already answers /readyz,
# it only (re)writes the kubeconfig and prints how to use it. Binaries come from hack/build-kube.sh
# (run here when missing). Stop with hack/cluster-down.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
source "$here/versions.sh"
dir=$NWF_STATE/cluster
pki=$dir/pki
etcd_port=${NWF_ETCD_PORT:-23790}
etcd_peer_port=${NWF_ETCD_PEER_PORT:-23800}
api_port=${NWF_APISERVER_PORT:-16443}
# Loopback unless a real node needs the API server where pods reach it (hack/node-up.sh: a dummy
# interface's address, never a routed one).
api_addr=${NWF_APISERVER_ADDRESS:-127.0.0.1}
# Extra kube-apiserver flags (hack/node-up.sh: kubelet addresses and client certificate).
read -r -a api_extra <<<"${NWF_APISERVER_EXTRA_ARGS:-}"
kubeconfig=$NWF_STATE/kubeconfig
mkdir -p "$dir" "$pki"
chmod 700 "$pki"

# Install what this script calls when it is missing (a fresh Debian machine).
missing=()
command -v curl >/dev/null || missing+=(curl ca-certificates)
command -v openssl >/dev/null || missing+=(openssl)
command -v flock >/dev/null || missing+=(util-linux)
if (( ${#missing[@]} )); then
  echo "cluster: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Two callers at once (test projects, demo) must not start two API servers.
exec 9>"$dir/.up.lock"
flock 9

ready() {
  curl -fsS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://$api_addr:$api_port/readyz" >/dev/null 2>&1
}
# True when the pid file names a live process of our binary (a stale pid may belong to anything).
alive() {
  local pidfile=$dir/$1.pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(cat "$pidfile")
  [[ $(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)") == "$1-v"* ]]
}
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# Refuses to start next to a foreign listener (for example another checkout's cluster).
port_free() {
  if listening "$1" "$2"; then
    echo "cluster: $1:$2 is in use by another process; set $3 to another port (or stop that cluster)" >&2
    exit 1
  fi
}

write_kubeconfig() {
  local tmp=$kubeconfig.tmp
  cat >"$tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: nwf-dev
  cluster:
    server: https://$api_addr:$api_port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$pki/admin.crt")
    client-key-data: $(base64 -w0 "$pki/admin.key")
contexts:
- name: nwf-dev
  context: {cluster: nwf-dev, user: admin}
current-context: nwf-dev
KC
  chmod 600 "$tmp"
  mv "$tmp" "$kubeconfig"
}

usage() {
  local running
  running=$(curl -fsS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://$api_addr:$api_port/version" 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')
  echo "cluster: kube-apiserver ${running:-?} ready at https://$api_addr:$api_port (etcd 127.0.0.1:$etcd_port)"
  if [[ $running != "v$KUBE_VERSION" ]]; then
    echo "cluster: WARNING: hack/versions.sh pins v$KUBE_VERSION; restart with hack/cluster-down.sh && hack/cluster-up.sh" >&2
  fi
  echo "  export KUBECONFIG=$kubeconfig     # or: source hack/kube-env.sh (also puts helm on PATH)"
}

if [[ -f $pki/admin.crt ]] && ready; then write_kubeconfig; usage; exit 0; fi

[[ -x $NWF_BIN/kube-apiserver && -x $NWF_BIN/etcd ]] || "$here/build-kube.sh"
# The versioned paths, so that `alive` recognises the processes by their executable.
apiserver_bin=$(readlink -f "$NWF_BIN/kube-apiserver")
etcd_bin=$(readlink -f "$NWF_BIN/etcd")

# --- certificates (once) -------------------------------------------------------------------
if [[ ! -f $pki/sa.pub ]]; then
  echo "cluster: creating certificates in $pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=nwfilter-operator-dev-ca" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' \
      "$api_addr" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout admin.key -out admin.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key.tmp 2048 2>/dev/null
    openssl rsa -in sa.key.tmp -pubout -out sa.pub.tmp 2>/dev/null
    rm -f ./*.csr ./*.ext
    # sa.pub last: its presence means the whole set is complete.
    mv sa.key.tmp sa.key && mv sa.pub.tmp sa.pub
  )
fi

# --- etcd ----------------------------------------------------------------------------------
if ! alive etcd; then
  port_free 127.0.0.1 "$etcd_port" NWF_ETCD_PORT
  port_free 127.0.0.1 "$etcd_peer_port" NWF_ETCD_PEER_PORT
  echo "cluster: starting etcd v$ETCD_VERSION on 127.0.0.1:$etcd_port (log $dir/etcd.log)"
  nohup "$etcd_bin" --name nwf-dev --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "nwf-dev=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync --quota-backend-bytes 2147483648 \
    </dev/null >"$dir/etcd.log" 2>&1 9>&- &
  echo $! >"$dir/etcd.pid"
fi
for i in $(seq 150); do
  curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
  if ! alive etcd || (( i == 150 )); then
    echo "cluster: etcd is not healthy; see $dir/etcd.log" >&2; tail -20 "$dir/etcd.log" >&2; exit 1
  fi
  sleep 0.2
done

# --- kube-apiserver ------------------------------------------------------------------------
if ! alive kube-apiserver; then
  port_free "$api_addr" "$api_port" NWF_APISERVER_PORT
  echo "cluster: starting kube-apiserver v$KUBE_VERSION on $api_addr:$api_port (log $dir/kube-apiserver.log)"
  # No controller-manager runs, so the ServiceAccount admission plugin would reject every pod (no
  # `default` ServiceAccount is ever created). Nothing here runs pods; it stays on, as in a real
  # cluster, and docs/dev-cluster.md says so.
  nohup "$apiserver_bin" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$api_addr" --advertise-address "$api_addr" --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --allow-privileged=true \
    --profiling=false \
    "${api_extra[@]}" \
    </dev/null >"$dir/kube-apiserver.log" 2>&1 9>&- &
  echo $! >"$dir/kube-apiserver.pid"
fi

write_kubeconfig
start=$(date +%s)
until ready; do
  if ! alive kube-apiserver; then echo "cluster: kube-apiserver exited; see $dir/kube-apiserver.log" >&2; tail -20 "$dir/kube-apiserver.log" >&2; exit 1; fi
  if (( $(date +%s) - start > 120 )); then echo "cluster: not ready after 120s; see $dir/kube-apiserver.log" >&2; exit 1; fi
  sleep 0.5
done
echo "cluster: ready in $(( $(date +%s) - start ))s"
usage
