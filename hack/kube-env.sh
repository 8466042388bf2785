# Source me: puts the built kube-apiserver, etcd and helm on PATH and points KUBECONFIG at the
# local cluster of hack/cluster-up.sh.   source hack/kube-env.sh
_nwf_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
source "$_nwf_here/versions.sh"
export PATH="$NWF_BIN:$PATH"
export KUBECONFIG="$NWF_STATE/kubeconfig"
unset _nwf_here
