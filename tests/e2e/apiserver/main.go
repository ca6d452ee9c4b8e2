// Command kube-apiserver is a thin wrapper around the upstream
// k8s.io/kubernetes/cmd/kube-apiserver entry point. It exists only so the
// end-to-end tests can build a real kube-apiserver from the Go module proxy
// (see tests/e2e/scripts/ensure-control-plane.sh); it is not part of the
// sidecar-injector itself.
package main

import (
	"os"
	_ "time/tzdata" // for CronJob Time Zone support

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register" // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version" // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
