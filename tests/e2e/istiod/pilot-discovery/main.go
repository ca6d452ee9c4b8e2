// Command pilot-discovery is a thin wrapper around istiod's own entry point
// (istio.io/istio/pilot/cmd/pilot-discovery). It exists only so the end-to-end
// tests can build a real istiod from the Go module proxy, pinned to the same
// istio.io/istio version as the benchmark peer (see
// tests/e2e/scripts/ensure-istiod.sh); it is not part of the sidecar-injector.
package main

import (
	"os"

	"istio.io/istio/pilot/cmd/pilot-discovery/app"
	"istio.io/istio/pkg/log"
)

func main() {
	log.EnableKlogWithCobra()
	rootCmd := app.NewRootCommand()
	if err := rootCmd.Execute(); err != nil {
		log.Error(err)
		os.Exit(-1)
	}
}
