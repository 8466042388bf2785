# Pinned versions of the tools hack/ builds from Go modules (sourced by the scripts).
KUBE_VERSION=1.33.13          # kube-apiserver; the staging modules are v0.33.13
ETCD_VERSION=3.6.16
HELM_VERSION=3.19.5
NWF_CACHE=${NWF_CACHE:-$HOME/.cache/nwfilter-operator}
NWF_STATE=${NWF_STATE:-/tmp/nwfilter-operator}
NWF_BIN=$NWF_CACHE/bin
