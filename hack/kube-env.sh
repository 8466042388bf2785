# Puts the built kube-apiserver, etcd and helm on PATH and points KUBECONFIG at the local cluster
# of hack/cluster-up.sh. Either source it:   source hack/kube-env.sh
# or run it and evaluate what it prints:     eval "$(hack/kube-env.sh)"
# (kubectl is the machine's: v1.32 is within the supported skew of the v1.33 server.)
_nwf_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
source "$_nwf_here/versions.sh"
case ":$PATH:" in *":$NWF_BIN:"*) ;; *) export PATH="$NWF_BIN:$PATH" ;; esac
export KUBECONFIG="$NWF_STATE/kubeconfig"
unset _nwf_here
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  printf 'export PATH=%q\nexport KUBECONFIG=%q\n' "$PATH" "$KUBECONFIG"
fi
