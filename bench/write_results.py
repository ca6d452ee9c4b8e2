#!/usr/bin/env python3
"""Turns the raw outputs of bench/run.sh into bench/RESULTS.md (printed on stdout).

Usage: write_results.py OUT_DIR CRITERION_DIR

OUT_DIR holds machine.json, alloc.jsonl, istio.jsonl (or istio.error), load.json,
large-mix.json, resources.json and optionally instructions.jsonl; CRITERION_DIR is target/criterion.
Only the standard library is used.
"""

import json
import os
import sys

# Targets from issue 6.
TARGET_US = {"typical": 20.0, "env-1500": 1000.0, "max-3MiB": 30000.0}
ISTIO_RATIO_TARGET = 10.0
ISTIO_RATIO_SHAPES = ("typical", "env-1500")
THROUGHPUT_TARGET = 0.8
P99_TARGET_MS = 5.0
RSS_TARGET_MIB = 30.0
READY_TARGET_MS = 100.0
# Targets from issue 11 (Engine v2), judged on the same run: engine time by shape (µs),
# allocations per typical review, Istio's time over ours on the typical pod, and the server's
# keep-alive throughput, p99, and typical p99 beside large reviews.
V2_TIME_US = {"small": 10.0, "typical": 20.0, "env-1500": 200.0, "max-3MiB": 10000.0}
V2_TYPICAL_ALLOCS = 100
V2_ISTIO_RATIO = 100.0
V2_LARGE_MIX_P99_RATIO = 2.0
NAMED = ["small", "typical", "env-1500", "wide-50", "max-3MiB"]
SCALING = ["size-16KiB", "size-64KiB", "size-256KiB", "size-1MiB", "max-3MiB"]


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_lines(path):
    rows = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    row = json.loads(line)
                    rows[row["shape"]] = row
    except OSError:
        pass
    return rows


def fmt_time(ns):
    if ns is None:
        return "n/a"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def verdict(met):
    return "met" if met else "**missed**"


def criterion_estimate(criterion_dir, shape):
    est = read_json(os.path.join(criterion_dir, "review", shape, "new", "estimates.json"))
    if not est:
        return None
    return {
        "median": est["median"]["point_estimate"],
        "mean": est["mean"]["point_estimate"],
        "low": est["mean"]["confidence_interval"]["lower_bound"],
        "high": est["mean"]["confidence_interval"]["upper_bound"],
    }


def main():
    out_dir, criterion_dir = sys.argv[1], sys.argv[2]
    machine = read_json(os.path.join(out_dir, "machine.json"), {})
    allocs = read_lines(os.path.join(out_dir, "alloc.jsonl"))
    istio = read_lines(os.path.join(out_dir, "istio.jsonl"))
    instructions = read_lines(os.path.join(out_dir, "instructions.jsonl"))
    load = read_json(os.path.join(out_dir, "load.json"), {})
    large_mix = read_json(os.path.join(out_dir, "large-mix.json"), {})
    resources = read_json(os.path.join(out_dir, "resources.json"), {}).get("resources", {})
    istio_error = None
    try:
        with open(os.path.join(out_dir, "istio.error")) as f:
            istio_error = f.read().strip()
    except OSError:
        pass
    times = {shape: criterion_estimate(criterion_dir, shape) for shape in NAMED + SCALING}
    targets = []
    p = print

    p("# Benchmark results")
    p()
    p("Produced by `bench/run.sh` (see `bench/README.md`); do not edit by hand.")
    p()
    p("## Machine")
    p()
    p("| | |")
    p("| --- | --- |")
    for key, label in [
        ("date", "Date (UTC)"),
        ("commit", "Commit"),
        ("cpu", "CPU"),
        ("cores", "Cores"),
        ("memory", "Memory"),
        ("kernel", "Kernel"),
        ("rustc", "rustc"),
        ("go", "Go"),
        ("load_before", "Load average before"),
        ("load_after", "Load average after"),
    ]:
        if machine.get(key):
            p(f"| {label} | {machine[key]} |")
    p()
    p(
        "The machine has 2 cores and is shared: other builds and tests ran on it during this run "
        "(see the load averages above). Wall-clock figures are therefore pessimistic and noisy; "
        "the instruction counts below do not depend on load. Nothing was tuned to flatter the injector."
    )
    p()

    p("## Engine: one AdmissionReview through `review()`")
    p()
    p(
        "Criterion (`benches/engine.rs`), bytes in → response bytes out, no server. Time is criterion's "
        "mean with its 95% interval, and the median. Allocations are counted by a counting global "
        "allocator (wrapping mimalloc, the binary's allocator) over separate, untimed reviews "
        "(reallocations count as allocations)."
    )
    p()
    p("| shape | pod bytes | mean [95% CI] | median | allocs/review | bytes allocated/review | patch ops | patch bytes | target |")
    p("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for shape in NAMED:
        t = times.get(shape)
        a = allocs.get(shape, {})
        target = ""
        if shape in TARGET_US and t:
            met = t["mean"] / 1e3 < TARGET_US[shape]
            target = f"< {fmt_time(TARGET_US[shape] * 1e3)}: {verdict(met)}"
            targets.append((f"engine {shape} < {fmt_time(TARGET_US[shape] * 1e3)}", fmt_time(t["mean"]), met))
        span = f"{fmt_time(t['mean'])} [{fmt_time(t['low'])}, {fmt_time(t['high'])}]" if t else "n/a"
        p(
            f"| {shape} | {a.get('pod_bytes', '')} | {span} | {fmt_time(t['median']) if t else 'n/a'} "
            f"| {a.get('allocs_per_review', '')} | {a.get('alloc_bytes_per_review', '')} "
            f"| {a.get('patch_ops', '')} | {a.get('patch_bytes', '')} | {target} |"
        )
    p()
    if instructions:
        p("Instructions per review, counted by callgrind (independent of machine load):")
        p()
        p("| shape | instructions/review | instructions per pod byte |")
        p("| --- | ---: | ---: |")
        for shape, row in instructions.items():
            pod_bytes = allocs.get(shape, {}).get("pod_bytes") or 0
            per_byte = f"{row['instructions_per_review'] / pod_bytes:.0f}" if pod_bytes else ""
            p(f"| {shape} | {row['instructions_per_review']:,} | {per_byte} |")
        p()

    p("### Scaling with pod size")
    p()
    p(
        "Pods built the same way at every size (`bench/pods.rs::sized`: 1/13 annotations, the rest "
        "containers of 40 env vars)."
    )
    p()
    p("| shape | pod bytes | mean | µs per KiB of pod | instructions/review | instructions per pod byte | allocs/review |")
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for shape in SCALING:
        t = times.get(shape)
        a = allocs.get(shape, {})
        pod_bytes = a.get("pod_bytes")
        cost = t["mean"] / 1e3 / (pod_bytes / 1024) if t and pod_bytes else None
        ins = instructions.get(shape, {}).get("instructions_per_review")
        ins_per_byte = ins / pod_bytes if ins and pod_bytes else None
        p(
            f"| {shape} | {pod_bytes or ''} | {fmt_time(t['mean']) if t else 'n/a'} "
            f"| {f'{cost:.1f}' if cost else 'n/a'} | {f'{ins:,}' if ins else 'n/a'} "
            f"| {f'{ins_per_byte:.0f}' if ins_per_byte else 'n/a'} | {a.get('allocs_per_review', '')} |"
        )
    p()
    points = [
        (allocs[s]["pod_bytes"], times[s]["mean"], instructions.get(s, {}).get("instructions_per_review"))
        for s in SCALING
        if s in allocs and times.get(s)
    ]
    # Linear in size means a constant marginal cost per added byte (a fixed cost per review is
    # allowed), so compare the slopes between consecutive sizes.
    time_slopes = [(t2 - t1) / (b2 - b1) for (b1, t1, _), (b2, t2, _) in zip(points, points[1:]) if b2 > b1]
    ins_slopes = [(i2 - i1) / (b2 - b1) for (b1, _, i1), (b2, _, i2) in zip(points, points[1:]) if b2 > b1 and i1 and i2]
    if time_slopes:
        p(
            "Marginal wall time per added KiB between consecutive sizes: "
            + ", ".join(f"{slope * 1024 / 1e3:.1f} µs" for slope in time_slopes)
            + " (wall time is noisy on this shared machine)."
        )
    if ins_slopes:
        spread = max(ins_slopes) / min(ins_slopes)
        p()
        p(
            "Marginal instructions per added pod byte between consecutive sizes: "
            + ", ".join(f"{slope:.0f}" for slope in ins_slopes)
            + f" (max/min = {spread:.2f}): {'linear' if spread < 1.5 else 'not linear'} from {SCALING[0]} to "
            f"{SCALING[-1]}. Instruction counts miss cache-miss and page-fault costs, which grow with the "
            "memory allocated per review (see allocs and the engine table)."
        )
        targets.append(("engine cost linear in pod size (marginal instructions per byte, max/min < 1.5)", f"{spread:.2f}", spread < 1.5))
    elif time_slopes:
        spread = max(time_slopes) / min(time_slopes)
        targets.append(("engine cost linear in pod size (marginal time per byte, max/min < 2)", f"{spread:.2f}", spread < 2.0))
    p()

    p("## Side by side with Istio's injector")
    p()
    if istio:
        any_row = next(iter(istio.values()))
        p(
            f"`bench/istio-peer`: istio.io/istio `{any_row.get('istio_version')}` built with "
            f"{any_row.get('go_version')}, its default sidecar template and values rendered from the "
            "charts compiled into the module (profile `empty` + pilot, as Istio's own webhook tests do), "
            "native sidecars on (as ours by default). One op is the webhook's `/inject` HTTP handler on an in-memory "
            "recorder: AdmissionReview bytes in, response bytes out, as `review()`. Istio's per-request "
            "info logging was silenced. Go timings come from `testing.Benchmark` (1 s per shape)."
        )
        p()
        p("| shape | ours | Istio | Istio ÷ ours | Istio allocs/op | our allocs | Istio patch ops | our patch ops |")
        p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for shape in NAMED + [s for s in SCALING if s not in NAMED]:
            t = times.get(shape)
            i = istio.get(shape)
            if not i:
                continue
            ratio = i["ns_per_op"] / t["mean"] if t else None
            p(
                f"| {shape} | {fmt_time(t['mean']) if t else 'n/a'} | {fmt_time(i['ns_per_op'])} "
                f"| {f'{ratio:.1f}×' if ratio else 'n/a'} | {i['allocs_per_op']} "
                f"| {allocs.get(shape, {}).get('allocs_per_review', '')} | {i['patch_ops']} "
                f"| {allocs.get(shape, {}).get('patch_ops', '')} |"
            )
            if shape in ISTIO_RATIO_SHAPES and ratio:
                targets.append((f"≥ {ISTIO_RATIO_TARGET:.0f}× faster than Istio on {shape}", f"{ratio:.1f}×", ratio >= ISTIO_RATIO_TARGET))
        p()
    else:
        p(f"The Istio peer did not run: {istio_error or 'no output'}")
        p()

    p("## Server under load")
    p()
    rows = load.get("rows", [])
    if rows:
        p(
            f"`loadbench`: {load.get('connections')} client connections, pod `{load.get('pod')}` "
            f"({load.get('pod_bytes')} bytes), HTTP/1.1 over TLS 1.3 on loopback, all three servers in one process "
            f"(server runtime: 2 threads; client runtime: 2 threads, on the same 2 cores), baseline, "
            f"replay and injector alternated over {load.get('rounds')} rounds per mode. The baseline is the same "
            "axum + rustls stack (`serve_https`) whose handler parses the AdmissionReview with the webhook's "
            "own parser and writer and answers `allowed: true` with no engine and no patch. The replay server is the baseline's "
            "handler answering with the bytes the engine answered this review with once, at start: the same patch, carried the "
            "same way, without the engine. In handshake mode every request opens a new TCP "
            "connection with a full TLS handshake (no resumption). CPU per request is read per thread from "
            "/proc, so server and client work are split."
        )
        p()
        p("| mode | server | requests | errors | req/s | p50 | p90 | p99 | p99.9 | max | server CPU/req | client CPU/req |")
        p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            p(
                f"| {r['mode']} | {r['server']} | {r['requests']} | {r['errors']} | {r['throughput']:.0f} "
                f"| {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['p999_ms']:.2f} ms "
                f"| {r['max_ms']:.2f} ms | {r['server_cpu_us_per_request']:.0f} µs | {r['client_cpu_us_per_request']:.0f} µs |"
            )
        p()
        for ratio in load.get("ratios", []):
            p(
                f"- {ratio['mode']}: injector throughput = **{ratio['throughput_ratio']:.2f}×** the baseline's; "
                f"server CPU per request = {ratio['server_cpu_ratio']:.2f}× the baseline's."
            )
            if ratio.get("replay_throughput_ratio") is not None:
                p(
                    f"  - replay throughput = {ratio['replay_throughput_ratio']:.2f}× the baseline's: what carrying the "
                    f"answer costs. Injector = {ratio['injector_over_replay']:.2f}× replay: what the engine costs."
                )
            if ratio["mode"] == "keepalive":
                targets.append(
                    ("load, 16 connections: throughput ≥ 0.8× baseline", f"{ratio['throughput_ratio']:.2f}×", ratio["throughput_ratio"] >= THROUGHPUT_TARGET)
                )
        ours = [r for r in rows if r["mode"] == "keepalive" and r["server"] == "injector"]
        if ours:
            targets.append(("load, 16 connections: p99 < 5 ms", f"{ours[0]['p99_ms']:.2f} ms", ours[0]["p99_ms"] < P99_TARGET_MS))
        p()
    else:
        p("The load benchmark did not run.")
        p()

    p("## Large reviews beside typical ones")
    p()
    mix = large_mix.get("large_mix")
    setting = large_mix.get("setting", {})
    if mix:
        p(
            f"`loadbench --mode large-mix`: pod `{setting.get('pod')}` ({setting.get('pod_bytes')} bytes) on "
            f"{setting.get('connections')} keep-alive connections to the real webhook, alone (quiet) and while "
            f"`{setting.get('large_pod')}` reviews ({setting.get('large_pod_bytes')} bytes) arrive at "
            f"{setting.get('large_rate'):g}/s on a timer, on pooled keep-alive connections; quiet and mixed runs "
            f"alternated over {setting.get('rounds')} rounds. Reviews over {setting.get('blocking_threshold_bytes')} "
            "bytes run on the blocking pool (`--blocking-threshold-bytes`)."
        )
        p()
        p("| reviews | requests | errors | req/s | p50 | p90 | p99 | p99.9 | max |")
        p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, key in [("typical, quiet", "quiet"), ("typical, with large", "mixed"), ("large", "large")]:
            r = mix[key]
            p(
                f"| {label} | {r['requests']} | {r['errors']} | {r['throughput']:.1f} | {r['p50_ms']:.2f} ms "
                f"| {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['p999_ms']:.2f} ms | {r['max_ms']:.2f} ms |"
            )
        p()
        p(
            f"Typical reviews' p99 with the large reviews = **{mix['p99_ratio']:.2f}×** the quiet p99 "
            f"(p50: {mix['p50_ratio']:.2f}×)."
        )
        p()
    else:
        p("The large-mix benchmark did not run.")
        p()

    p("## Resources of the real binary")
    p()
    if resources:
        ready = sorted(resources["ready_ms"])
        mib = lambda kib: kib / 1024
        p(
            "`loadbench --resources`: `target/release/sidecar-injector serve` as a child process with "
            "certificate files, logging at `info` to a file as deployed; figures from /proc/<pid>."
        )
        p()
        p("| figure | value | target |")
        p("| --- | ---: | --- |")
        p(
            f"| start → `/readyz` = 200 | median {ready[len(ready) // 2]:.1f} ms, worst {ready[-1]:.1f} ms "
            f"({len(ready)} starts) | < {READY_TARGET_MS:.0f} ms: {verdict(ready[-1] < READY_TARGET_MS)} |"
        )
        p(f"| RSS idle | {mib(resources['rss_idle_kib']):.1f} MiB | |")
        p(
            f"| RSS under load ({resources['connections']} connections), max sampled / VmHWM | "
            f"{mib(resources['rss_load_max_kib']):.1f} / {mib(resources['rss_peak_kib']):.1f} MiB "
            f"| < {RSS_TARGET_MIB:.0f} MiB: {verdict(mib(resources['rss_peak_kib']) < RSS_TARGET_MIB)} |"
        )
        p(f"| RSS after load | {mib(resources['rss_after_kib']):.1f} MiB | |")
        p(
            f"| CPU per 1,000 reviews | {resources['cpu_ms_per_1000']:.0f} ms "
            f"({resources['cpu_cores']:.2f} cores at {resources['throughput']:.0f} reviews/s) | |"
        )
        p(f"| errors under load | {resources['errors']} of {resources['requests'] + resources['errors']} | |")
        targets.append(("start → ready < 100 ms", f"{ready[-1]:.1f} ms (worst)", ready[-1] < READY_TARGET_MS))
        targets.append(("RSS under load < 30 MiB", f"{mib(resources['rss_peak_kib']):.1f} MiB", mib(resources["rss_peak_kib"]) < RSS_TARGET_MIB))
        p()
    else:
        p("The resource figures were not measured.")
        p()

    p("## Targets (issue 6)")
    p()
    p("| target | measured | |")
    p("| --- | ---: | --- |")
    for name, value, met in targets:
        p(f"| {name} | {value} | {verdict(met)} |")
    p()
    engine_v2_targets(times, allocs, istio, load, large_mix)


def engine_v2_targets(times, allocs, istio, load, large_mix):
    """The Engine v2 table (issue 11): each of its targets against this run's figures."""
    rows = []
    for shape, limit_us in V2_TIME_US.items():
        t = times.get(shape)
        if t:
            rows.append((f"engine, {shape}", fmt_time(t["mean"]), f"≤ {fmt_time(limit_us * 1e3)}", t["mean"] <= limit_us * 1e3))
    typical_allocs = allocs.get("typical", {}).get("allocs_per_review")
    if typical_allocs is not None:
        rows.append(("allocations per typical review", str(typical_allocs), f"≤ {V2_TYPICAL_ALLOCS}", typical_allocs <= V2_TYPICAL_ALLOCS))
    t, i = times.get("typical"), istio.get("typical")
    if t and i:
        ratio = i["ns_per_op"] / t["mean"]
        rows.append(("Istio's injector ÷ ours, typical pod", f"{ratio:.1f}×", f"≥ {V2_ISTIO_RATIO:.0f}×", ratio >= V2_ISTIO_RATIO))
    for ratio in load.get("ratios", []):
        if ratio["mode"] == "keepalive":
            rows.append(("server throughput ÷ no-op baseline, 16 keep-alive connections", f"{ratio['throughput_ratio']:.2f}×", f"≥ {THROUGHPUT_TARGET}×", ratio["throughput_ratio"] >= THROUGHPUT_TARGET))
    ours = [r for r in load.get("rows", []) if r["mode"] == "keepalive" and r["server"] == "injector"]
    if ours:
        rows.append(("server p99 at 16 connections (typical pod)", f"{ours[0]['p99_ms']:.2f} ms", f"≤ {P99_TARGET_MS:g} ms", ours[0]["p99_ms"] <= P99_TARGET_MS))
    mix = large_mix.get("large_mix")
    if mix:
        rows.append(("p99 of typical reviews beside 3 MiB reviews at 10/s ÷ p99 without", f"{mix['p99_ratio']:.2f}×", f"≤ {V2_LARGE_MIX_P99_RATIO:g}×", mix["p99_ratio"] <= V2_LARGE_MIX_P99_RATIO))
    print("## Engine v2 targets (issue 11)")
    print()
    print("| figure | measured | target | |")
    print("| --- | ---: | ---: | --- |")
    for name, value, target, met in rows:
        print(f"| {name} | {value} | {target} | {verdict(met)} |")
    print()


if __name__ == "__main__":
    main()
