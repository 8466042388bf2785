#!/usr/bin/env bash
# Starts etcd and kube-apiserver on loopback: RBAC authorization, service-account signing keys, an
# admin client certificate, a kubeconfig. Idempotent: when the API server already answers /readyz,
# it only prints how to use it. Binaries come from hack/build-kube.sh (run here when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
source "$here/versions.sh"
dir=$NWF_STATE/cluster
pki=$dir/pki
etcd_port=${NWF_ETCD_PORT:-23790}
etcd_peer_port=${NWF_ETCD_PEER_PORT:-23800}
api_port=${NWF_APISERVER_PORT:-16443}
kubeconfig=$NWF_STATE/kubeconfig
mkdir -p "$dir" "$pki"

ready() {
  curl -fsS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1
}
alive() { [[ -f $dir/$1.pid ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

usage() {
  echo "cluster: kube-apiserver v$KUBE_VERSION ready at https://127.0.0.1:$api_port"
  echo "  export KUBECONFIG=$kubeconfig     # or: source hack/kube-env.sh"
}

if [[ -f $pki/admin.crt ]] && ready; then usage; exit 0; fi

[[ -x $NWF_BIN/kube-apiserver && -x $NWF_BIN/etcd ]] || "$here/build-kube.sh"

# --- certificates (once) -------------------------------------------------------------------
if [[ ! -f $pki/ca.crt ]]; then
  echo "cluster: creating certificates in $pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=nwfilter-operator-dev-ca" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout admin.key -out admin.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext
  )
fi

# --- etcd ----------------------------------------------------------------------------------
if ! alive etcd; then
  echo "cluster: starting etcd v$ETCD_VERSION on 127.0.0.1:$etcd_port"
  nohup "$NWF_BIN/etcd" --name nwf-dev --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "nwf-dev=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync --quota-backend-bytes 2147483648 \
    >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  for _ in $(seq 100); do curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break; sleep 0.2; done
fi

# --- kube-apiserver ------------------------------------------------------------------------
if ! alive kube-apiserver; then
  echo "cluster: starting kube-apiserver v$KUBE_VERSION on 127.0.0.1:$api_port"
  nohup "$NWF_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --allow-privileged=true \
    --profiling=false \
    >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"
fi

start=$(date +%s)
until ready; do
  if ! alive kube-apiserver; then echo "cluster: kube-apiserver exited; see $dir/kube-apiserver.log" >&2; tail -20 "$dir/kube-apiserver.log" >&2; exit 1; fi
  if (( $(date +%s) - start > 120 )); then echo "cluster: not ready after 120s; see $dir/kube-apiserver.log" >&2; exit 1; fi
  sleep 0.5
done

# --- kubeconfig ----------------------------------------------------------------------------
cat >"$kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: nwf-dev
  cluster:
    server: https://127.0.0.1:$api_port
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
chmod 600 "$kubeconfig"
echo "cluster: ready in $(( $(date +%s) - start ))s"
usage
