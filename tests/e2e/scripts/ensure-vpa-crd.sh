#!/usr/bin/env bash
# Make sure the VerticalPodAutoscaler CRDs are cached, and print the CRD file's path as the
# LAST line of stdout:
#
#   bash tests/e2e/scripts/ensure-vpa-crd.sh | tail -1
#
# - The file is deploy/vpa-v1-crd-gen.yaml of the Go module
#   k8s.io/autoscaler/vertical-pod-autoscaler at a pinned version, fetched with
#   `go mod download -json` through the Go module proxy.
# - It is cached under
#   ${SIDECAR_INJECTOR_CACHE:-$HOME/.cache/sidecar-injector}/vpa-crd-<version>/
#   and only fetched when missing.
#
# Progress goes to stderr. Any failure exits non-zero with an "ensure-vpa-crd: ERROR" line.
#
# Environment knobs:
#   VPA_VERSION              module version (default: v1.8.1)
#   SIDECAR_INJECTOR_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector)
set -Eeuo pipefail

# log, die
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh" ensure-vpa-crd

version="${VPA_VERSION:-v1.8.1}"
module="k8s.io/autoscaler/vertical-pod-autoscaler"
cache_root="${SIDECAR_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector}"
crd_dir="$cache_root/vpa-crd-$version"
crd_file="$crd_dir/vpa-v1-crd-gen.yaml"

if [[ -s "$crd_file" ]]; then
  log "VPA CRDs $version: cached at $crd_file"
else
  command -v go >/dev/null 2>&1 || die "go is not on PATH; it is needed to fetch $module@$version"
  mkdir -p "$crd_dir"
  log "fetching $module@$version with go mod download..."
  # Outside any module, so the project's own go.mod files play no part.
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  json="$(cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$module@$version")" \
    || die "go mod download $module@$version failed"
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -s "$dir/deploy/vpa-v1-crd-gen.yaml" ]] \
    || die "$module@$version has no deploy/vpa-v1-crd-gen.yaml (module folder: ${dir:-unknown})"
  cp "$dir/deploy/vpa-v1-crd-gen.yaml" "$crd_file.tmp.$$"
  mv -f "$crd_file.tmp.$$" "$crd_file"
  log "cached $crd_file"
fi
printf '%s\n' "$crd_file"
