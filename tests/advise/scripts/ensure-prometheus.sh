#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` are on PATH for the `advise` tests against a real
# Prometheus, and print the folder holding `prometheus` as the LAST line of stdout:
#
#   export SIDECAR_INJECTOR_PROMETHEUS_DIR="$(bash tests/advise/scripts/ensure-prometheus.sh | tail -1)"
#
# - If both are on PATH, nothing is installed.
# - Otherwise the Debian package `prometheus` is installed with apt-get (it ships both; the
#   tests start their own server on a loopback port, so the package's service is kept from
#   starting where an init system would start it).
#
# Progress goes to stderr. Any failure exits non-zero with an "ensure-prometheus: ERROR" line.
set -Eeuo pipefail

log() { printf 'ensure-prometheus: %s\n' "$*" >&2; }
die() { printf 'ensure-prometheus: ERROR: %s\n' "$*" >&2; exit 1; }

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  log "prometheus or promtool not on PATH; installing Debian package prometheus"
  command -v apt-get >/dev/null 2>&1 || die "prometheus is not installed and apt-get is not available; install prometheus (>= 2.24, with promtool) yourself"
  sudo_cmd=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "prometheus is not installed and we are not root (no sudo) to apt-get install it"
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" apt-get update >&2 || die "apt-get update failed"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y --no-install-recommends prometheus >&2 \
    || die "apt-get install prometheus failed"
fi
command -v prometheus >/dev/null 2>&1 || die "the prometheus package was installed but prometheus is still not on PATH"
command -v promtool >/dev/null 2>&1 || die "the prometheus package was installed but promtool is still not on PATH"
log "$(prometheus --version 2>&1 | head -1)"
log "$(promtool --version 2>&1 | head -1)"
dirname "$(readlink -f "$(command -v prometheus)")"
