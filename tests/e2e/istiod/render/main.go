// Command istio-render writes the Istio objects the live side-by-side e2e scenarios install,
// rendered from the charts compiled into the istio.io/istio module that istiod is built from
// (the same renderer as istioctl and the benchmark peer, operator/pkg/render):
//
//   - crds.yaml: Istio's CustomResourceDefinitions (chart `base`);
//   - istiod.yaml: from chart `istio-discovery`, the ConfigMaps `istio[-<rev>]` (mesh config)
//     and `istio-sidecar-injector[-<rev>]` (injection template and values), and every
//     MutatingWebhookConfiguration (the revision's injection webhook and the revision tags');
//   - istiod.env: the environment the chart gives istiod's `discovery` container, one
//     NAME=value per line, only the entries with a literal value (the downward-API ones are
//     set by the e2e harness, which runs istiod outside a pod).
//
// Usage: istio-render -out DIR [-set path=value]...
//
// Each -set is an istioctl `--set` (profile `empty` with pilot and base enabled is always
// applied first), e.g. -set revision=canary -set values.revisionTags[0]=prod
// -set values.istiodRemote.injectionURL=https://127.0.0.1:PORT/inject.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"istio.io/istio/operator/pkg/render"
)

// setFlags collects repeated -set flags.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	out := flag.String("out", "", "folder to write crds.yaml, istiod.yaml and istiod.env into")
	var sets setFlags
	flag.Var(&sets, "set", "an istioctl --set path=value; repeatable")
	flag.Parse()
	if *out == "" {
		fatalf("-out DIR is required")
	}
	all := append([]string{"profile=empty", "components.base.enabled=true", "components.pilot.enabled=true"}, sets...)
	manifests, _, err := render.GenerateManifest(nil, all, false, nil, nil)
	if err != nil {
		fatalf("render Istio manifests: %v", err)
	}

	var crds, istiod []string
	var env []string
	for _, set := range manifests {
		for _, m := range set.Manifests {
			switch m.GetKind() {
			case "CustomResourceDefinition":
				crds = append(crds, m.Content)
			case "MutatingWebhookConfiguration":
				istiod = append(istiod, m.Content)
			case "ConfigMap":
				if strings.HasPrefix(m.GetName(), "istio-sidecar-injector") || isMeshConfigMap(m.Object) {
					istiod = append(istiod, m.Content)
				}
			case "Deployment":
				if strings.HasPrefix(m.GetName(), "istiod") {
					env = append(env, literalEnv(m.Object)...)
				}
			}
		}
	}
	if len(crds) == 0 || len(istiod) == 0 || len(env) == 0 {
		fatalf("the rendered manifests lack CRDs (%d), istiod ConfigMaps or webhooks (%d) or istiod's environment (%d)",
			len(crds), len(istiod), len(env))
	}
	sort.Strings(crds)
	sort.Strings(istiod)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatalf("create %s: %v", *out, err)
	}
	write(filepath.Join(*out, "crds.yaml"), strings.Join(crds, "\n---\n"))
	write(filepath.Join(*out, "istiod.yaml"), strings.Join(istiod, "\n---\n"))
	write(filepath.Join(*out, "istiod.env"), strings.Join(env, "\n")+"\n")
}

// isMeshConfigMap reports whether a ConfigMap holds a mesh config (the `istio-<rev>` one).
func isMeshConfigMap(object map[string]any) bool {
	data, _ := object["data"].(map[string]any)
	_, ok := data["mesh"]
	return ok
}

// literalEnv returns NAME=value for each env entry of the `discovery` container that has a
// literal value.
func literalEnv(deployment map[string]any) []string {
	spec, _ := dig(deployment, "spec", "template", "spec").(map[string]any)
	containers, _ := spec["containers"].([]any)
	var env []string
	for _, c := range containers {
		container, _ := c.(map[string]any)
		if container["name"] != "discovery" {
			continue
		}
		entries, _ := container["env"].([]any)
		for _, e := range entries {
			entry, _ := e.(map[string]any)
			name, _ := entry["name"].(string)
			value, hasValue := entry["value"]
			if name == "" || !hasValue {
				continue
			}
			env = append(env, fmt.Sprintf("%s=%v", name, value))
		}
	}
	return env
}

func dig(object map[string]any, path ...string) any {
	var current any = object
	for _, key := range path {
		m, ok := current.(map[string]any)
		if !ok {
			return nil
		}
		current = m[key]
	}
	return current
}

func write(path, text string) {
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		fatalf("write %s: %v", path, err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "istio-render: "+format+"\n", args...)
	os.Exit(1)
}
