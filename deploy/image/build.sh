#!/usr/bin/env bash
# Builds the static release binary and assembles the image's root filesystem in OUT_DIR:
#
#   deploy/image/build.sh OUT_DIR
#
# The Containerfile runs this script in its build stage and copies OUT_DIR whole into an
# empty (`scratch`) image; deploy/image/test-recipe.sh runs the same script and starts the
# result in an empty root, so the target, flags, features and files cannot drift apart.
#
# OUT_DIR then holds only:
#   usr/local/bin/sidecar-injector     the binary, statically linked (no loader, no libc.so)
#   etc/ssl/certs/ca-certificates.crt  CA roots (from SIDECAR_INJECTOR_CA_ROOTS)
#   tmp/                               empty, mode 1777: `serve` without --tls-cert writes its
#                                      self-signed CA to $TMPDIR/sidecar-injector/ca.crt
#
# Static on the glibc target: `-C target-feature=+crt-static` with an explicit --target, so
# build scripts and proc macros stay dynamic while the binary links libc statically. Every
# crypto and TLS crate is Rust or ring's bundled C and assembly (no OpenSSL), and the script
# fails if the result asks for a dynamic loader or a shared library.
#
# Environment:
#   SIDECAR_INJECTOR_TARGET    Rust target (default: <uname -m>-unknown-linux-gnu)
#   SIDECAR_INJECTOR_COMMIT    commit recorded for --version (default: git rev-parse HEAD)
#   SIDECAR_INJECTOR_CA_ROOTS  CA bundle to copy (default: /etc/ssl/certs/ca-certificates.crt)
#   CARGO_TARGET_DIR           as cargo reads it (default: target/ in the repository)
set -Eeuo pipefail

log() { printf 'image/build: %s\n' "$*" >&2; }
die() { printf 'image/build: ERROR: %s\n' "$*" >&2; exit 1; }

out_dir="${1:-}"
[[ -n "$out_dir" ]] || die "usage: $0 OUT_DIR"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The one definition of how the image's binary is built.
target="${SIDECAR_INJECTOR_TARGET:-$(uname -m)-unknown-linux-gnu}"
features=""
# getrandom_backend: random numbers from the getrandom syscall through the static libc,
# not /dev/urandom (a static glibc binary cannot look libc's getrandom up with dlsym).
export RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
export CARGO_PROFILE_RELEASE_STRIP=symbols
ca_roots="${SIDECAR_INJECTOR_CA_ROOTS:-/etc/ssl/certs/ca-certificates.crt}"

[[ -s "$ca_roots" ]] || die "no CA roots at $ca_roots (install the ca-certificates package, or set SIDECAR_INJECTOR_CA_ROOTS)"

log "cargo build --release --locked --target $target (RUSTFLAGS=$RUSTFLAGS, features: ${features:-none})"
cargo build --manifest-path "$repo/Cargo.toml" --package sidecar-injector --bin sidecar-injector \
  --release --locked --target "$target" --features "$features" >&2
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
binary="$target_dir/$target/release/sidecar-injector"
[[ -x "$binary" ]] || die "cargo did not produce $binary"

# Static means: no program interpreter and no shared library needed.
if readelf -lW "$binary" | grep -q 'Requesting program interpreter'; then
  die "$binary asks for a dynamic loader: it is not static"
fi
if readelf -dW "$binary" | grep -q '(NEEDED)'; then
  die "$binary needs shared libraries: $(readelf -dW "$binary" | grep '(NEEDED)' | tr -s ' ')"
fi

rm -rf "$out_dir"
install -d -m 0755 "$out_dir/usr/local/bin" "$out_dir/etc/ssl/certs"
install -d -m 1777 "$out_dir/tmp"
install -m 0755 "$binary" "$out_dir/usr/local/bin/sidecar-injector"
install -m 0644 "$ca_roots" "$out_dir/etc/ssl/certs/ca-certificates.crt"
log "root filesystem in $out_dir; binary $(stat -c %s "$out_dir/usr/local/bin/sidecar-injector") bytes"
