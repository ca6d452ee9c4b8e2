#!/usr/bin/env bash
# Make sure a real istiod (pilot-discovery) and the Istio manifests rendered from
# the same module are available for the live side-by-side e2e scenarios, and
# print the folder holding them as the LAST line of stdout:
#
#   export SIDECAR_INJECTOR_ISTIOD="$(bash tests/e2e/scripts/ensure-istiod.sh | tail -1)"
#
# - The istio.io/istio version is pinned in tests/e2e/istiod/go.mod (the same
#   version as the benchmark peer, bench/istio-peer/go.mod).
# - pilot-discovery is built from that module (tests/e2e/istiod/pilot-discovery),
#   and the manifest renderer (tests/e2e/istiod/render) is built beside it.
# - The renderer then writes Istio's CRDs (chart `base`) and, from the
#   `istio-discovery` chart, the `istio` and `istio-sidecar-injector`
#   ConfigMaps and the injection MutatingWebhookConfiguration, as YAML.
# - Everything is cached under
#   ${SIDECAR_INJECTOR_CACHE:-$HOME/.cache/sidecar-injector}/istiod-<version>/
#   and only rebuilt when missing. A cold build of pilot-discovery takes
#   several minutes on 2 cores.
#
# Progress goes to stderr; only the cache folder goes to stdout.
# Any failure exits non-zero with an "ensure-istiod: ERROR" message.
#
# Environment knobs:
#   SIDECAR_INJECTOR_ISTIOD  use this folder as-is if it is complete
#   SIDECAR_INJECTOR_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector)
#   BUILD_PARALLELISM        go build -p value (default: 2)
set -Eeuo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# log, die, report_failed_commands, lock_builds, go_build
. "$script_dir/../../scripts/lib.sh" ensure-istiod
report_failed_commands

module_dir="$(cd "$script_dir/../istiod" && pwd)"
[[ -f "$module_dir/go.mod" && -f "$module_dir/pilot-discovery/main.go" && -f "$module_dir/render/main.go" ]] \
  || die "istiod wrapper module not found at $module_dir"

complete() {
  local dir="$1"
  [[ -x "$dir/pilot-discovery" && -x "$dir/istio-render" && -s "$dir/rendered/crds.yaml" \
     && -s "$dir/rendered/istiod.yaml" ]]
}

# --- 0. Already provided by the caller? -------------------------------------
if [[ -n "${SIDECAR_INJECTOR_ISTIOD:-}" ]]; then
  if complete "$SIDECAR_INJECTOR_ISTIOD"; then
    log "using existing SIDECAR_INJECTOR_ISTIOD=$SIDECAR_INJECTOR_ISTIOD"
    printf '%s\n' "$SIDECAR_INJECTOR_ISTIOD"
    exit 0
  fi
  log "SIDECAR_INJECTOR_ISTIOD=$SIDECAR_INJECTOR_ISTIOD is incomplete; preparing our own"
fi

# The pinned version comes from the wrapper module's go.mod, so the cache key
# can never drift from what is actually built. The renderer's source is hashed
# into the key too: a change to what it writes must not reuse stale output.
istio_version="$(awk '{for (i = 1; i < NF; i++) if ($i == "istio.io/istio" && $(i+1) ~ /^v[0-9]/) {print $(i+1); exit}}' "$module_dir/go.mod")"
[[ -n "$istio_version" ]] || die "could not read the istio.io/istio version from $module_dir/go.mod"
render_hash="$(cat "$module_dir/render/"*.go "$module_dir/go.sum" | sha256sum | cut -c1-12)"

cache_root="${SIDECAR_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector}"
istiod_dir="$cache_root/istiod-$istio_version"
out_dir="$istiod_dir/render-$render_hash"
mkdir -p "$istiod_dir" "$out_dir"
command -v go >/dev/null 2>&1 || die "go is not on PATH; it is needed to build istiod $istio_version"

# --- 1. pilot-discovery -------------------------------------------------------
istiod_bin="$istiod_dir/pilot-discovery"
ldflags="-s -w -X istio.io/istio/pkg/version.buildVersion=$istio_version"
ldflags+=" -X istio.io/istio/pkg/version.buildStatus=Clean -X istio.io/istio/pkg/version.buildTag=$istio_version"
cached_go_build "pilot-discovery $istio_version" "several minutes on 2 cores" "$module_dir" ./pilot-discovery \
  "$istiod_bin" "$ldflags" version

# --- 2. The renderer and its output -------------------------------------------
# Serialize concurrent renders of the same version.
lock_builds "$istiod_dir"
render_bin="$out_dir/istio-render"
if [[ ! -x "$render_bin" ]]; then
  log "building the Istio manifest renderer..."
  start=$SECONDS
  go_build "./render ($istio_version)" "$module_dir" ./render "$render_bin" "-s -w"
  log "built $render_bin in $((SECONDS - start))s"
fi
if [[ ! -s "$out_dir/rendered/crds.yaml" || ! -s "$out_dir/rendered/istiod.yaml" ]]; then
  log "rendering Istio's CRDs and the istiod chart into $out_dir/rendered"
  rm -rf "$out_dir/rendered.tmp"
  "$render_bin" -out "$out_dir/rendered.tmp" >&2 || die "istio-render failed"
  rm -rf "$out_dir/rendered"
  mv "$out_dir/rendered.tmp" "$out_dir/rendered"
fi
ln -sfn "$istiod_bin" "$out_dir/pilot-discovery"
exec 9>&-

complete "$out_dir" || die "$out_dir is incomplete after building"
log "pilot-discovery: $("$istiod_bin" version --short 2>/dev/null || echo unknown)"
log "istiod ready in $out_dir"
printf '%s\n' "$out_dir"
