#!/usr/bin/env bash
# Make sure a `helm` binary is available for the chart scenarios of the e2e tests, link it into
# the assets folder given as the first argument (the KUBEBUILDER_ASSETS folder that
# ensure-control-plane.sh printed), and print the binary's path as the LAST line of stdout:
#
#   bash tests/e2e/scripts/ensure-helm.sh "$KUBEBUILDER_ASSETS"
#
# - helm is built from the Go module helm.sh/helm/v3 at a pinned version (HELM_VERSION), with
#   `go install` outside any module so that helm's own go.mod decides its dependencies.
# - The binary is cached under
#   ${SIDECAR_INJECTOR_CACHE:-$HOME/.cache/sidecar-injector}/helm-<version>/ and only built when
#   missing (a few minutes once on 2 cores).
#
# Progress goes to stderr; only the binary's path goes to stdout.
# Any failure exits non-zero with an "ensure-helm: ERROR" message.
#
# Environment knobs:
#   SIDECAR_INJECTOR_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector)
#   BUILD_PARALLELISM        go build -p value (default: 2)
#   HELM_VERSION             helm release to build (default: v3.22.0)
set -Eeuo pipefail

# log, die, report_failed_commands, lock_builds, go_build
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh" ensure-helm
report_failed_commands

assets_dir="${1:-}"
[[ -z "$assets_dir" || -d "$assets_dir" ]] || die "assets folder $assets_dir does not exist"

helm_version="${HELM_VERSION:-v3.22.0}"
cache_root="${SIDECAR_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector}"
helm_dir="$cache_root/helm-$helm_version"
helm_bin="$helm_dir/helm"
mkdir -p "$helm_dir"

# helm reports its version from these variables, as its own Makefile sets them.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
cached_go_build "helm $helm_version" "a few minutes on 2 cores" "" "helm.sh/helm/v3/cmd/helm@$helm_version" \
  "$helm_bin" "$ldflags" version --short
log "helm: $("$helm_bin" version --short 2>&1)"

if [[ -n "$assets_dir" ]]; then
  ln -sfn "$helm_bin" "$assets_dir/helm"
  [[ -x "$assets_dir/helm" ]] || die "could not link helm into $assets_dir"
  log "linked into $assets_dir"
fi
printf '%s\n' "$helm_bin"
