// Command istio-peer times Istio's own sidecar injector on the pod shapes that the Rust
// engine benchmark uses, so the two can be compared side by side on one machine.
//
// It builds Istio's webhook the way Istio's tests do (pkg/kube/inject/webhook_test.go):
// the default injection template and values are rendered from the charts compiled into
// the istio.io/istio module (profile "empty" with pilot enabled, as getInjectionSettings
// does), a file watcher serves them, and requests go through the webhook's own /inject
// HTTP handler with an in-memory recorder. One operation is therefore exactly what the
// Rust `review()` does: AdmissionReview bytes in, AdmissionReview bytes (with the JSON
// patch) out. No network and no TLS are involved.
//
// Usage: istio-peer -pods DIR [-benchtime 1s] [-json FILE]
//
// DIR holds index.json and one <shape>.json AdmissionReview per shape, as written by
// `cargo run --release --example write-pods -- DIR`.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/multicluster"
	istiolog "istio.io/istio/pkg/log"
)

// shape is one entry of index.json.
type shape struct {
	Name  string `json:"name"`
	File  string `json:"file"`
	Bytes int    `json:"bytes"`
}

// result is one line of the -json output.
type result struct {
	Shape        string  `json:"shape"`
	PodBytes     int     `json:"pod_bytes"`
	Iterations   int     `json:"iterations"`
	NsPerOp      float64 `json:"ns_per_op"`
	AllocsPerOp  int64   `json:"allocs_per_op"`
	BytesPerOp   int64   `json:"bytes_per_op"`
	PatchOps     int     `json:"patch_ops"`
	PatchBytes   int     `json:"patch_bytes"`
	IstioVersion string  `json:"istio_version"`
	GoVersion    string  `json:"go_version"`
}

func main() {
	// Istio reads ENABLE_NATIVE_SIDECARS once, at package init. Our engine injects a native
	// sidecar by default, so pin Istio to the same and re-exec before any init reads it.
	if os.Getenv("ENABLE_NATIVE_SIDECARS") == "" {
		exe, err := os.Executable()
		if err == nil {
			env := append(os.Environ(), "ENABLE_NATIVE_SIDECARS=true")
			err = syscall.Exec(exe, os.Args, env)
		}
		fatalf("cannot re-exec with ENABLE_NATIVE_SIDECARS=true: %v", err)
	}

	testing.Init()
	podsDir := flag.String("pods", "", "directory with index.json and the AdmissionReview files")
	benchtime := flag.Duration("benchtime", time.Second, "target time per shape (testing.Benchmark)")
	only := flag.String("shape", "", "run only this shape")
	jsonOut := flag.String("json", "", "also write one JSON object per shape to this file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the timed loops to this file")
	flag.Parse()
	if *podsDir == "" {
		fatalf("-pods DIR is required")
	}
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		fatalf("set benchtime: %v", err)
	}

	// The webhook logs every request at info; the Rust engine under test logs nothing.
	// Silence both sides equally so the comparison is of injection work only.
	for _, s := range istiolog.Scopes() {
		s.SetOutputLevel(istiolog.ErrorLevel)
	}

	var shapes []shape
	readJSON(filepath.Join(*podsDir, "index.json"), &shapes)

	handler, stop := newWebhook()
	defer close(stop)

	version := istioVersion()
	var out *os.File
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
		if err != nil {
			fatalf("create %s: %v", *jsonOut, err)
		}
		defer f.Close()
		out = f
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatalf("create %s: %v", *cpuProfile, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("start CPU profile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Printf("istio.io/istio %s, %s, GOMAXPROCS=%d, benchtime %s\n", version, runtime.Version(), runtime.GOMAXPROCS(0), benchtime)
	fmt.Printf("%-14s %12s %14s %12s %14s %10s\n", "shape", "pod bytes", "ns/op", "allocs/op", "bytes/op", "patch ops")
	for _, s := range shapes {
		if *only != "" && s.Name != *only {
			continue
		}
		body, err := os.ReadFile(filepath.Join(*podsDir, s.File))
		if err != nil {
			fatalf("read %s: %v", s.File, err)
		}
		ops, patchBytes := check(s.Name, serve(handler, body))
		r := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serve(handler, body)
			}
		})
		res := result{
			Shape:        s.Name,
			PodBytes:     s.Bytes,
			Iterations:   r.N,
			NsPerOp:      float64(r.T.Nanoseconds()) / float64(r.N),
			AllocsPerOp:  r.AllocsPerOp(),
			BytesPerOp:   r.AllocedBytesPerOp(),
			PatchOps:     ops,
			PatchBytes:   patchBytes,
			IstioVersion: version,
			GoVersion:    runtime.Version(),
		}
		fmt.Printf("%-14s %12d %14.0f %12d %14d %10d\n", s.Name, s.Bytes, res.NsPerOp, res.AllocsPerOp, res.BytesPerOp, ops)
		if out != nil {
			line, _ := json.Marshal(res)
			fmt.Fprintln(out, string(line))
		}
	}
}

// newWebhook builds Istio's injection webhook with its default template, values and mesh
// config, and returns its HTTP handler.
func newWebhook() (http.Handler, chan struct{}) {
	manifests, _, err := render.GenerateManifest(nil, []string{"profile=empty", "components.pilot.enabled=true"}, false, nil, nil)
	if err != nil {
		fatalf("render Istio manifests: %v", err)
	}
	var config, values, meshData string
	for _, set := range manifests {
		for _, m := range set.Manifests {
			if m.GetKind() != "ConfigMap" {
				continue
			}
			data, _ := m.Object["data"].(map[string]any)
			switch m.GetName() {
			case "istio-sidecar-injector":
				config, _ = data["config"].(string)
				values, _ = data["values"].(string)
			case "istio":
				meshData, _ = data["mesh"].(string)
			}
		}
	}
	if config == "" || values == "" || meshData == "" {
		fatalf("rendered manifests lack the istio-sidecar-injector or istio ConfigMap")
	}

	dir, err := os.MkdirTemp("", "istio-peer-")
	if err != nil {
		fatalf("temp dir: %v", err)
	}
	configFile := filepath.Join(dir, "config")
	valuesFile := filepath.Join(dir, "values")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		fatalf("write config: %v", err)
	}
	if err := os.WriteFile(valuesFile, []byte(values), 0o644); err != nil {
		fatalf("write values: %v", err)
	}
	watcher, err := inject.NewFileWatcher(configFile, valuesFile)
	if err != nil {
		fatalf("file watcher: %v", err)
	}

	meshConfig, err := mesh.ApplyMeshConfig(meshData, mesh.DefaultMeshConfig())
	if err != nil {
		fatalf("mesh config: %v", err)
	}
	store := model.NewFakeStore()
	env := &model.Environment{
		Watcher:     meshwatcher.NewTestWatcher(meshConfig),
		ConfigStore: store,
	}
	env.SetPushContext(&model.PushContext{ProxyConfigs: model.GetProxyConfigs(store, meshConfig)})

	mux := http.NewServeMux()
	wh, err := inject.NewWebhook(inject.WebhookParameters{
		Watcher:      watcher,
		Env:          env,
		Mux:          mux,
		MultiCluster: multicluster.NewFakeController(),
	})
	if err != nil {
		fatalf("new webhook: %v", err)
	}
	stop := make(chan struct{})
	wh.Run(stop)
	return mux, stop
}

// serve runs one AdmissionReview through the webhook's /inject handler.
func serve(handler http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec
}

// check fails unless the webhook allowed the pod with a non-empty JSON patch, and returns
// the number of patch operations and the patch size.
func check(name string, rec *httptest.ResponseRecorder) (int, int) {
	if rec.Code != http.StatusOK {
		fatalf("%s: status %d: %s", name, rec.Code, rec.Body.String())
	}
	var review struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   string `json:"patch"`
			Result  *struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
		fatalf("%s: response is not an AdmissionReview: %v", name, err)
	}
	if !review.Response.Allowed || review.Response.Patch == "" {
		msg := ""
		if review.Response.Result != nil {
			msg = review.Response.Result.Message
		}
		fatalf("%s: not injected (allowed=%v): %s", name, review.Response.Allowed, msg)
	}
	patch, err := base64.StdEncoding.DecodeString(review.Response.Patch)
	if err != nil {
		fatalf("%s: patch is not base64: %v", name, err)
	}
	var ops []json.RawMessage
	if err := json.Unmarshal(patch, &ops); err != nil {
		fatalf("%s: patch is not a JSON patch: %v", name, err)
	}
	return len(ops), len(patch)
}

func istioVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "istio.io/istio" {
			return dep.Version
		}
	}
	return "unknown"
}

func readJSON(path string, into any) {
	data, err := os.ReadFile(path)
	if err != nil {
		fatalf("read %s: %v", path, err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		fatalf("parse %s: %v", path, err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "istio-peer: "+format+"\n", args...)
	os.Exit(1)
}
