#!/usr/bin/env bash
# Tests the container recipe without a container runtime or a registry (called by .ci/run):
#
#   deploy/image/test-recipe.sh
#
# 1. The Containerfile's final stage is `scratch` holding only the build stage's /rootfs,
#    runs as 65532:65532, builds /rootfs with deploy/image/build.sh, and carries the OCI
#    labels source, version (equal to Cargo.toml's) and licenses.
# 2. deploy/image/build.sh builds the binary exactly as the recipe does and lays out the
#    same root filesystem; it holds only the binary, the CA roots and an empty /tmp.
# 3. In that root, entered with chroot in new mount, PID and network namespaces (loopback
#    only) as uid 65532 with an empty environment, as the image's ENTRYPOINT:
#    - `--version` prints the package version and the commit (git rev-parse HEAD);
#    - `serve` with its built-in defaults (probe-serve.sh; given a kubeconfig for an absent
#      API server, and no /dev) builds its Kubernetes client, answers GET /readyz with 200
#      on the admin port, and
#      POST /inject over HTTPS (trusting the CA it wrote to /tmp) with an injected
#      AdmissionReview response.
# Prints the binary's size. Must run as root (unshare, chroot). Scratch files go under
# $TMPDIR and are removed at the end.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
containerfile="$repo/Containerfile"

# log, and apt_install (which takes turns with the ensure-*.sh scripts' apt-get runs, should
# they run at the same time).
. "$repo/tests/scripts/lib.sh" image/test-recipe
fail() { printf 'image/test-recipe: FAIL: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || fail "needs root (unshare and chroot)"
# The tools this needs, from Debian packages when missing (a fresh CI machine).
declare -A package_of=([unshare]=util-linux [chroot]=coreutils [ip]=iproute2
  [curl]=curl [readelf]=binutils)
missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  apt_install "${missing[*]}" "${missing[*]}" "${missing[@]}"
fi

# --- 1. The recipe --------------------------------------------------------------------------
final_stage="$(awk '/^FROM /{stage=$0; buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$containerfile")"
grep -qx 'FROM scratch' <<<"$final_stage" || fail "the Containerfile's final stage is not FROM scratch"
copies="$(grep -E '^(COPY|ADD) ' <<<"$final_stage" || true)"
[[ "$copies" == 'COPY --from=build /rootfs/ /' ]] \
  || fail "the final stage must copy only the build stage's /rootfs, it has: $copies"
grep -qx 'USER 65532:65532' <<<"$final_stage" || fail "the final stage does not run as USER 65532:65532"
grep -qE '^RUN .*deploy/image/build\.sh /rootfs$' "$containerfile" \
  || fail "the build stage does not lay out /rootfs with deploy/image/build.sh"
for label in source version licenses; do
  grep -q "org.opencontainers.image.$label=" "$containerfile" || fail "no OCI label org.opencontainers.image.$label"
done
package_version="$(awk -F'"' '/^\[package\]/{p=1} p && /^version = /{print $2; exit}' "$repo/Cargo.toml")"
recipe_version="$(awk -F= '/^ARG VERSION=/{print $2; exit}' "$containerfile")"
[[ -n "$package_version" && "$recipe_version" == "$package_version" ]] \
  || fail "Containerfile ARG VERSION=$recipe_version, Cargo.toml version = $package_version"
package_license="$(awk -F'"' '/^\[package\]/{p=1} p && /^license = /{print $2; exit}' "$repo/Cargo.toml")"
recipe_license="$(awk -F= '/^ARG LICENSES=/{print $2; exit}' "$containerfile")"
[[ -n "$package_license" && "$recipe_license" == "$package_license" ]] \
  || fail "Containerfile ARG LICENSES=$recipe_license, Cargo.toml license = $package_license"
log "Containerfile: scratch + /rootfs, USER 65532:65532, OCI labels, version $recipe_version, licence $recipe_license"

# --- 2. The root filesystem -----------------------------------------------------------------
scratch="$(mktemp -d "${TMPDIR:-/tmp}/sidecar-injector-image.XXXXXX")"
root="$scratch/rootfs"
cleanup() { rm -rf "$scratch"; }
trap cleanup EXIT
bash "$here/build.sh" "$root"

listing="$(cd "$root" && find . -mindepth 1 | sort | tr '\n' ' ')"
expected="./etc ./etc/ssl ./etc/ssl/certs ./etc/ssl/certs/ca-certificates.crt ./tmp ./usr ./usr/local ./usr/local/bin ./usr/local/bin/sidecar-injector "
[[ "$listing" == "$expected" ]] || fail "the root filesystem holds more or less than the recipe copies: $listing"
binary="$root/usr/local/bin/sidecar-injector"
size="$(stat -c %s "$binary")"

# The image's entrypoint in the root, as uid/gid 65532; callers give it an empty environment
# (`env -i PATH=/usr/local/bin ...`), as a container starts with.
entrypoint=("$(command -v chroot)" --userspec=65532:65532 "$root" /usr/local/bin/sidecar-injector)
# Runs a command in new mount, PID and network namespaces with only loopback, up.
in_namespaces() {
  unshare --mount --pid --net --fork --kill-child -- sh -c 'ip link set lo up && exec "$@"' sh "$@"
}

# --- 3a. --version ---------------------------------------------------------------------------
commit="${SIDECAR_INJECTOR_COMMIT:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}"
version_line="$(in_namespaces env -i PATH=/usr/local/bin "${entrypoint[@]}" --version)"
[[ "$version_line" == "sidecar-injector $package_version (commit $commit)" ]] \
  || fail "--version printed '$version_line', expected 'sidecar-injector $package_version (commit $commit)'"
log "--version: $version_line"

# --- 3b. serve, probed from inside the same namespaces ----------------------------------------
serve_log="$scratch/serve.log"
in_namespaces bash "$here/probe-serve.sh" "$root" "$here/admission-review.json" "$serve_log" "${entrypoint[@]}" \
  || { cat "$serve_log" >&2; fail "serve in the empty root did not answer as it should (above)"; }

printf 'image/test-recipe: PASS: binary %s bytes (%s MiB), static, started in an empty root as 65532\n' \
  "$size" "$(awk -v s="$size" 'BEGIN{printf "%.1f", s/1048576}')"
