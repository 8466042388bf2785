// kube-proxy built from k8s.io/kubernetes exactly as upstream's cmd/kube-proxy does: hack/build-kube.sh writes
// the go.mod that pins the version and replaces every staging module with its published release.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
