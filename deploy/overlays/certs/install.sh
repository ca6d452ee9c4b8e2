#!/usr/bin/env bash
# Installs the webhook registration with certificates made by `sidecar-injector certs`.
# Run after the base (`kubectl apply -k deploy/`):
#
#   deploy/overlays/certs/install.sh                      # make certs (once) and apply
#   deploy/overlays/certs/install.sh --dry-run=server     # extra flags go to kubectl apply
#   RENEW=1 deploy/overlays/certs/install.sh              # new CA and certificate
#
# 1. Writes ca.crt, ca.key, tls.crt and tls.key to deploy/overlays/certs/out/ (ignored by git),
#    unless they are there already and RENEW is unset.
# 2. `kubectl apply -k deploy/overlays/certs`: Secret sidecar-injector-tls, and the
#    MutatingWebhookConfiguration with every caBundle set to ca.crt (kustomize replacements).
# 3. After new certificates, restarts the Deployment so that its pods serve them. While it
#    rolls, the API server already trusts only the new CA, so pod creation in injected
#    namespaces fails for those seconds; cert-manager (deploy/overlays/cert-manager) renews
#    without that gap, because its CA outlives the serving certificates.
#
# Environment: SIDECAR_INJECTOR (the binary; default: sidecar-injector on PATH, else
# `cargo run --release` in this repository), KUBECTL (default: kubectl), RENEW.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="$here/out"
namespace=sidecar-injector
service=sidecar-injector
kubectl="${KUBECTL:-kubectl}"

if [[ -n "${SIDECAR_INJECTOR:-}" ]]; then
  injector=("$SIDECAR_INJECTOR")
elif command -v sidecar-injector >/dev/null 2>&1; then
  injector=(sidecar-injector)
else
  injector=(cargo run --quiet --release --manifest-path "$repo/Cargo.toml" --)
fi

renewed=
if [[ -n "${RENEW:-}" || ! -s "$out/tls.crt" || ! -s "$out/tls.key" || ! -s "$out/ca.crt" ]]; then
  "${injector[@]}" certs --service "$service" --namespace "$namespace" --out "$out" >/dev/null
  renewed=yes
else
  echo "install.sh: using the certificates in $out (RENEW=1 makes new ones)" >&2
fi

"$kubectl" apply -k "$here" "$@"

dry_run=
for arg in "$@"; do
  [[ "$arg" == --dry-run* ]] && dry_run=yes
done
if [[ -n "$renewed" && -z "$dry_run" ]] \
  && "$kubectl" -n "$namespace" get deployment "$service" >/dev/null 2>&1; then
  "$kubectl" -n "$namespace" rollout restart deployment "$service"
fi
