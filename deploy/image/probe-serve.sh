#!/usr/bin/env bash
# Part of test-recipe.sh, run inside its network namespace (loopback only):
#
#   probe-serve.sh ROOT REVIEW.json LOG ENTRYPOINT...   (run with an empty environment)
#
# Starts `ENTRYPOINT serve` (built-in defaults, and a kubeconfig for an absent API server) in the background with its output in LOG, then checks
# that GET http://127.0.0.1:9090/readyz answers 200 (within 60 s) and that POST
# https://localhost:8443/inject, trusting the CA that serve wrote to ROOT/tmp, answers
# REVIEW.json allowed with a JSON patch. The caller's namespaces end with it, and serve too.
set -Eeuo pipefail

root="$1" review="$2" serve_log="$3"
shift 3
fail() { printf 'image/test-recipe: FAIL: %s\n' "$*" >&2; exit 1; }
log() { printf 'image/test-recipe: %s\n' "$*" >&2; }

# A kubeconfig for an API server that is not there (nothing listens on 127.0.0.1:1), so that
# serve builds its Kubernetes client in the root: that needs the CA roots and random numbers
# (from the getrandom syscall: the root has no /dev).
# /readyz then turns 200 after --cache-sync-timeout (30 s) without the caches.
cat >"$root/tmp/kubeconfig" <<'KUBECONFIG'
apiVersion: v1
kind: Config
clusters: [{name: absent, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: absent, user: {token: not-a-token}}]
contexts: [{name: absent, context: {cluster: absent, user: absent}}]
current-context: absent
KUBECONFIG
chmod 0644 "$root/tmp/kubeconfig"

env -i PATH=/usr/local/bin KUBECONFIG=/tmp/kubeconfig "$@" serve >"$serve_log" 2>&1 &
pid=$!
ready=
for _ in $(seq 1 600); do
  kill -0 "$pid" 2>/dev/null || fail "serve exited in the empty root"
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/readyz 2>/dev/null)" == 200 ]]; then
    ready=yes
    break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || fail "serve did not answer /readyz with 200 within 60 s"
if grep -q 'namespace defaults and LimitRanges are not used' "$serve_log"; then
  fail "serve ran without its Kubernetes client in the root"
fi
grep -q 'caches not synced yet; reporting ready anyway' "$serve_log" \
  || fail "serve became ready without waiting for the (absent) API server's caches"
log "serve: Kubernetes client built (CA roots, random numbers); GET http://127.0.0.1:9090/readyz -> 200"

ca="$root/tmp/sidecar-injector/ca.crt"
[[ -s "$ca" ]] || fail "serve wrote no self-signed CA to /tmp/sidecar-injector/ca.crt"
answer="$(curl -sS --fail --cacert "$ca" -H 'Content-Type: application/json' \
  --data-binary @"$review" https://localhost:8443/inject)" || fail "POST https://localhost:8443/inject failed"
grep -q '"uid":"image-recipe-0001"' <<<"$answer" || fail "the answer does not echo the uid: $answer"
grep -q '"allowed":true' <<<"$answer" || fail "the pod was not allowed: $answer"
grep -q '"patchType":"JSONPatch"' <<<"$answer" || fail "the pod was not patched (injected): $answer"
log "serve: POST https://localhost:8443/inject (CA from /tmp/sidecar-injector/ca.crt) -> allowed, JSONPatch"
kill "$pid"
wait "$pid" || true
