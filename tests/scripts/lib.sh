# Shell helpers shared by the scripts that prepare what the tests need
# (tests/e2e/scripts/ensure-*.sh, tests/advise/scripts/ensure-prometheus.sh, and
# deploy/image/test-recipe.sh for apt_install). Sourced with the
# calling script's message prefix as its argument:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh" ensure-helm
#
# Defines:
#   log MESSAGE...           "PREFIX: MESSAGE" on stderr
#   die MESSAGE...           "PREFIX: ERROR: MESSAGE" on stderr, then exit 1
#   report_failed_commands   an ERR trap naming the failed command, its exit status and line
#   apt_install WHAT HINT PACKAGE...
#                            apt-get update and install PACKAGEs (as root, or through sudo),
#                            noninteractive, without recommends, one apt run at a time
#   lock_builds DIR          hold DIR/.build.lock on file descriptor 9 (concurrent runs wait)
#   go_build WHAT DIR TARGET DEST LDFLAGS [CHECK_ARG...]
#                            a Go build whose binary is kept only if it runs, see below
#   cached_go_build WHAT HOW_LONG DIR TARGET DEST LDFLAGS [CHECK_ARG...]
#                            go_build unless DEST is already built, once across concurrent runs
# shellcheck shell=bash

lib_prefix="${1:?usage: . lib.sh PREFIX}"

log() { printf '%s: %s\n' "$lib_prefix" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$lib_prefix" "$*" >&2; exit 1; }
report_failed_commands() {
  trap 'rc=$?; printf "%s: ERROR: command failed (exit %s) at line %s: %s\n" "$lib_prefix" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR
}

# apt_install WHAT HINT PACKAGE...: WHAT is what is missing ("etcd"), HINT what to install by
# hand where apt-get is not available ("etcd (>= 3.4)"). The packages' services are of no use
# to the tests (they start their own servers on free ports): RUNLEVEL=1 keeps them from being
# started where an init system would do so. apt-get does not wait for another apt-get's lock
# on its lists, so our scripts take turns on a lock file of their own (they may run at once).
apt_install() {
  local what="$1" hint="$2" sudo_cmd=() apt_lock
  shift 2
  command -v apt-get >/dev/null 2>&1 || die "$what is not installed and apt-get is not available; install $hint yourself"
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "$what is not installed and we are not root (no sudo) to apt-get install $*"
    sudo_cmd=(sudo)
  fi
  exec {apt_lock}>"${TMPDIR:-/tmp}/sidecar-injector-apt.lock"
  if command -v flock >/dev/null 2>&1; then
    flock "$apt_lock" || die "could not lock ${TMPDIR:-/tmp}/sidecar-injector-apt.lock"
  fi
  "${sudo_cmd[@]}" apt-get update >&2 || die "apt-get update failed"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
  exec {apt_lock}>&-
}

# lock_builds DIR: serialize concurrent builds into DIR (released when the script exits, or
# with `exec 9>&-`).
lock_builds() {
  exec 9>"$1/.build.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9 || die "could not lock $1/.build.lock"
  fi
}

# go_build WHAT DIR TARGET DEST LDFLAGS [CHECK_ARG...]
# Builds TARGET into DEST with CGO_ENABLED=0, -trimpath, -buildvcs=false (the modules sit
# inside the project's git checkout) and -p=${BUILD_PARALLELISM:-2}:
# - TARGET a package of the module in DIR: `go build` with -mod=readonly (go.mod/go.sum are
#   committed and must be complete), and $GOFLAGS;
# - TARGET PKG@VERSION (DIR empty): `go install` in DEST's folder, outside any module, so that
#   the package's own go.mod decides its dependencies.
# The binary goes to a temporary folder first; given CHECK_ARGs it must run with them; only
# then is it moved to DEST, so a half-built or broken binary is never cached. WHAT names the
# build in the error messages ("kube-apiserver v1.34.4").
go_build() {
  local what="$1" dir="$2" target="$3" dest="$4" ldflags="$5" verb tmp built
  shift 5
  tmp="$(dirname "$dest")/.go-build.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if [[ -z "$dir" ]]; then
    verb=install
    (cd "$(dirname "$dest")" && \
     CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="-buildvcs=false -p=${BUILD_PARALLELISM:-2}" \
     go install -trimpath -ldflags="$ldflags" "$target" >&2) || { rm -rf "$tmp"; die "go install of $what failed"; }
  else
    verb=build
    (cd "$dir" && \
     CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false -p=${BUILD_PARALLELISM:-2}" \
     go build -trimpath -ldflags="$ldflags" -o "$tmp/$(basename "$dest")" "$target" >&2) \
      || { rm -rf "$tmp"; die "go build of $what failed (module: $dir)"; }
  fi
  built="$(find "$tmp" -mindepth 1 -maxdepth 1 -type f -perm -u+x -print -quit)"
  [[ -n "$built" ]] || { rm -rf "$tmp"; die "go $verb of $what produced no binary"; }
  if (($#)) && ! "$built" "$@" >/dev/null 2>&1; then
    rm -rf "$tmp"
    die "freshly built $(basename "$dest") does not run"
  fi
  mv -f "$built" "$dest"
  rm -rf "$tmp"
}

# cached_go_build WHAT HOW_LONG DIR TARGET DEST LDFLAGS [CHECK_ARG...]
# Uses DEST when it is already built (the cache folder is keyed by version). Otherwise takes
# the build lock of DEST's folder, checks again (a concurrent run may have built it while this
# one waited), and runs go_build with the other arguments; HOW_LONG goes into the log line
# ("a few minutes on 2 cores"). The lock is released before it returns.
cached_go_build() {
  local what="$1" how_long="$2" dir="$3" target="$4" dest="$5" ldflags="$6" start
  shift 6
  if [[ -x "$dest" ]]; then
    log "$what: cached at $dest"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go is not on PATH; it is needed to build $what"
  lock_builds "$(dirname "$dest")"
  if [[ -x "$dest" ]]; then
    log "$what: built by a concurrent run at $dest"
  else
    log "building $what with $(go version) ($how_long)..."
    start=$SECONDS
    go_build "$what" "$dir" "$target" "$dest" "$ldflags" "$@"
    log "built $dest in $((SECONDS - start))s ($(du -h "$dest" | cut -f1))"
  fi
  exec 9>&-
}
