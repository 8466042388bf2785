// kube-apiserver built from k8s.io/kubernetes: hack/build-kube.sh writes the go.mod that pins
// the version and replaces every staging module with its published release.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
