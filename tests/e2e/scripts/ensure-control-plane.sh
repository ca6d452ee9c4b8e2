#!/usr/bin/env bash
# Make sure a real kube-apiserver and etcd are available for the e2e tests,
# and print the folder holding both as the LAST line of stdout:
#
#   export KUBEBUILDER_ASSETS="$(bash tests/e2e/scripts/ensure-control-plane.sh | tail -1)"
#
# - If KUBEBUILDER_ASSETS already names a folder with executable
#   `kube-apiserver` and `etcd`, nothing is done and that folder is printed.
# - etcd: taken from PATH; if missing, installed with apt-get (Debian package
#   `etcd-server`, binary /usr/bin/etcd).
# - kube-apiserver: built from source through the Go module proxy using the
#   tiny module in tests/e2e/apiserver (k8s.io/kubernetes pinned in its
#   go.mod). The binary is cached under
#   ${SIDECAR_INJECTOR_CACHE:-$HOME/.cache/sidecar-injector}/kube-apiserver-<version>/
#   and is only rebuilt when missing. A cold build takes 10+ minutes on 2 cores.
# - kustomize (for the e2e's `kubectl apply -k --dry-run=server` check of deploy/): built
#   from the Go module sigs.k8s.io/kustomize/kustomize/v5 at a pinned version, cached under
#   .../kustomize-<version>/ (about a minute, once).
# - All three are symlinked into .../assets-<version>/, whose path is printed.
#
# Progress goes to stderr; only the assets folder goes to stdout.
# Any failure exits non-zero with an "ensure-control-plane: ERROR" message.
#
# Environment knobs:
#   KUBEBUILDER_ASSETS       use this folder as-is if it is complete
#   SIDECAR_INJECTOR_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector)
#   BUILD_PARALLELISM        go build -p value (default: 2)
#   KUSTOMIZE_VERSION        kustomize release to build (default: v5.7.1, as in kubectl 1.34)
set -Eeuo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# log, die, report_failed_commands, apt_install, lock_builds, go_build
. "$script_dir/../../scripts/lib.sh" ensure-control-plane
report_failed_commands

module_dir="$(cd "$script_dir/../apiserver" && pwd)"
[[ -f "$module_dir/go.mod" && -f "$module_dir/main.go" ]] \
  || die "kube-apiserver wrapper module not found at $module_dir"

# --- 0. Already provided by the caller? -------------------------------------
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if [[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
    log "using existing KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    printf '%s\n' "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver and/or etcd; preparing our own"
fi

# The pinned Kubernetes version comes from the wrapper module's go.mod, so the
# cache key can never drift from what is actually built.
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ {print $2; exit}' "$module_dir/go.mod")"
[[ -n "$k8s_version" ]] || die "could not read the k8s.io/kubernetes version from $module_dir/go.mod"

cache_root="${SIDECAR_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector}"
apiserver_dir="$cache_root/kube-apiserver-$k8s_version"
apiserver_bin="$apiserver_dir/kube-apiserver"
kustomize_version="${KUSTOMIZE_VERSION:-v5.7.1}"
kustomize_dir="$cache_root/kustomize-$kustomize_version"
kustomize_bin="$kustomize_dir/kustomize"
assets_dir="$cache_root/assets-$k8s_version"
mkdir -p "$apiserver_dir" "$kustomize_dir" "$assets_dir"

# --- 1. etcd ----------------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
  log "etcd not on PATH; installing Debian package etcd-server"
  apt_install etcd "etcd (>= 3.4)" etcd-server
  command -v etcd >/dev/null 2>&1 || die "etcd-server was installed but etcd is still not on PATH"
fi
etcd_bin="$(readlink -f "$(command -v etcd)")"
etcd_version="$("$etcd_bin" --version 2>/dev/null | awk -F': ' '/etcd Version/ {print $2; exit}')" \
  || die "$etcd_bin --version failed"
log "etcd: $etcd_bin (version ${etcd_version:-unknown})"

# --- 2. kube-apiserver ------------------------------------------------------
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
major="${k8s_version#v}"; major="${major%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
cached_go_build "kube-apiserver $k8s_version" "takes 10+ minutes on 2 cores" "$module_dir" . \
  "$apiserver_bin" "$ldflags" --version
log "kube-apiserver: $("$apiserver_bin" --version 2>&1)"

# --- 3. kustomize -------------------------------------------------------------
# Outside any module (DIR empty), so `go install pkg@version` uses kustomize's own go.mod.
cached_go_build "kustomize $kustomize_version" "about a minute" "" \
  "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version" "$kustomize_bin" "" version
log "kustomize: $("$kustomize_bin" version 2>&1)"

# --- 4. One folder with all three ---------------------------------------------
ln -sfn "$apiserver_bin" "$assets_dir/kube-apiserver"
ln -sfn "$etcd_bin" "$assets_dir/etcd"
ln -sfn "$kustomize_bin" "$assets_dir/kustomize"
[[ -x "$assets_dir/kube-apiserver" && -x "$assets_dir/etcd" && -x "$assets_dir/kustomize" ]] \
  || die "assets folder $assets_dir is incomplete after linking"

log "assets ready in $assets_dir"
printf '%s\n' "$assets_dir"
