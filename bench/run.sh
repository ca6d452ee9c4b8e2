#!/usr/bin/env bash
# Runs every benchmark of issue 6 on this machine and writes bench/RESULTS.md:
#   1. the engine benchmark (criterion, benches/engine.rs) with allocation counts,
#      and instruction counts per review under callgrind when valgrind is installed
#      (these do not depend on the machine's load, so they also judge linearity);
#   2. Istio's injector on the same pods (bench/istio-peer, built once and cached);
#   3. the load benchmark: injector vs baseline server, keep-alive and handshake modes, and
#      typical reviews' p99 with and without 3 MiB reviews arriving at 10/s (large-mix);
#   4. the resource figures of the release binary (RSS, CPU per 1,000 reviews, ready time).
# Environment: BENCH_OUT (raw outputs, default target/bench-results), LOAD_DURATION
# (default 10s), MEASUREMENT_TIME (criterion seconds, default 3), SKIP_ISTIO=1, SKIP_CALLGRIND=1.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

OUT=${BENCH_OUT:-target/bench-results}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOAD_DURATION=${LOAD_DURATION:-10s}
MEASUREMENT_TIME=${MEASUREMENT_TIME:-3}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s\n' "$*"; }

rm -rf "$OUT"
mkdir -p "$OUT" "$CACHE"

step "machine"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then
  commit="$commit (with uncommitted changes in src/ or Cargo.toml)"
fi
python3 - "$OUT/machine.json" "$commit" <<'EOF'
import json, os, platform, subprocess, sys, datetime
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
mem = next((l.split(":", 1)[1].strip() for l in open("/proc/meminfo") if l.startswith("MemTotal")), "")
info = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    "commit": sys.argv[2],
    "cpu": cpu,
    "cores": str(os.cpu_count()),
    "memory": mem,
    "kernel": platform.release(),
    "rustc": run("rustc", "--version"),
    "go": run("go", "version"),
    "load_before": " ".join(open("/proc/loadavg").read().split()[:3]),
}
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
EOF

step "build (release)"
cargo build --release --bin sidecar-injector --example loadbench --example write-pods
cargo bench --bench engine --no-run

step "pod shapes"
"$TARGET_DIR/release/examples/write-pods" "$OUT/pods"

step "engine benchmark (criterion)"
rm -rf "$TARGET_DIR/criterion/review"
BENCH_ALLOC_OUT="$OUT/alloc.jsonl" cargo bench --bench engine -- \
  --warm-up-time 1 --measurement-time "$MEASUREMENT_TIME" 2>&1 | tee "$OUT/engine.log"

if [ "${SKIP_CALLGRIND:-0}" != 1 ] && command -v valgrind >/dev/null; then
  step "instructions per review (callgrind)"
  engine_bin=$(ls -t "$TARGET_DIR"/release/deps/engine-* | grep -v '\.d$' | head -1)
  for shape in small typical env-1500 wide-50 size-16KiB size-64KiB size-256KiB size-1MiB max-3MiB; do
    BENCH_SHAPES=$shape valgrind --tool=callgrind --toggle-collect='sidecar_injector::review::review' \
      --callgrind-out-file="$OUT/callgrind-$shape.out" "$engine_bin" --bench --profile-time 1 "review/$shape\$" \
      >"$OUT/callgrind-$shape.log" 2>&1
    python3 - "$OUT/callgrind-$shape.out" "$shape" >>"$OUT/instructions.jsonl" <<'EOF'
import json, re, sys
total, calls, names, current = 0, 0, {}, None
for line in open(sys.argv[1]):
    if line.startswith("totals:") or line.startswith("summary:"):
        total = int(line.split()[1])
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if m:
        kind, ident, name = m.groups()
        if name:
            names[ident] = name.strip()
        current = ident if kind == "cfn" else current
        continue
    if line.startswith("calls=") and current and names.get(current) == "sidecar_injector::review::review":
        calls += int(line.split()[0][6:])
print(json.dumps({"shape": sys.argv[2], "reviews": calls, "instructions_per_review": total // max(calls, 1)}))
EOF
    tail -1 "$OUT/instructions.jsonl"
  done
fi

if [ "${SKIP_ISTIO:-0}" != 1 ]; then
  step "Istio peer"
  istio_version=$(awk '$1 == "require" && $2 == "istio.io/istio" { print $3 } $1 == "istio.io/istio" { print $2 }' bench/istio-peer/go.mod | head -1)
  source_hash=$(cat bench/istio-peer/main.go bench/istio-peer/go.mod bench/istio-peer/go.sum | sha256sum | cut -c1-12)
  peer="$CACHE/istio-peer-$istio_version-$source_hash"
  if [ ! -x "$peer" ]; then
    echo "building $peer (istio.io/istio $istio_version; takes 10-15 minutes on 2 cores the first time)"
    if ! (cd bench/istio-peer && go build -o "$peer.tmp" . && mv "$peer.tmp" "$peer") >"$OUT/istio-build.log" 2>&1; then
      { echo "go build of bench/istio-peer failed:"; tail -20 "$OUT/istio-build.log"; } >"$OUT/istio.error"
      cat "$OUT/istio.error"
    fi
  fi
  if [ -x "$peer" ]; then
    if ! "$peer" -pods "$OUT/pods" -benchtime 1s -json "$OUT/istio.jsonl" 2>&1 | tee "$OUT/istio.log"; then
      { echo "istio-peer failed:"; tail -20 "$OUT/istio.log"; } >"$OUT/istio.error"
    fi
  fi
fi

step "load benchmark (in-process: injector vs baseline)"
"$TARGET_DIR/release/examples/loadbench" --connections 16 --duration "$LOAD_DURATION" --mode both \
  --json "$OUT/load.json" 2>&1 | tee "$OUT/load.log"

step "load benchmark (typical reviews beside 3 MiB reviews at 10/s)"
"$TARGET_DIR/release/examples/loadbench" --mode large-mix --connections 16 --duration "$LOAD_DURATION" \
  --large-pod max-3MiB --large-rate 10 --json "$OUT/large-mix.json" 2>&1 | tee "$OUT/large-mix.log"

step "resource figures (release binary as a child process)"
"$TARGET_DIR/release/examples/loadbench" --resources --connections 16 --duration "$LOAD_DURATION" \
  --json "$OUT/resources.json" 2>&1 | tee "$OUT/resources.log"

step "report"
python3 - "$OUT/machine.json" <<'EOF'
import json, sys
info = json.load(open(sys.argv[1]))
info["load_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
json.dump(info, open(sys.argv[1], "w"), indent=2)
EOF
python3 bench/write_results.py "$OUT" "$TARGET_DIR/criterion" >bench/RESULTS.md
echo "wrote bench/RESULTS.md (raw outputs in $OUT)"
