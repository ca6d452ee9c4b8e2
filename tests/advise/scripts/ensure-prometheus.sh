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

# log, die, apt_install
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh" ensure-prometheus

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  log "prometheus or promtool not on PATH; installing Debian package prometheus"
  apt_install prometheus "prometheus (>= 2.24, with promtool)" prometheus
fi
command -v prometheus >/dev/null 2>&1 || die "the prometheus package was installed but prometheus is still not on PATH"
command -v promtool >/dev/null 2>&1 || die "the prometheus package was installed but promtool is still not on PATH"
log "$(prometheus --version 2>&1 | head -1)"
log "$(promtool --version 2>&1 | head -1)"
dirname "$(readlink -f "$(command -v prometheus)")"
