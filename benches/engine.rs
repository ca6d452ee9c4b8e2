//! Engine benchmark: one AdmissionReview through `review()` (parse, decide, build the
//! sidecar, build the patch, write the response), per pod shape, with no server.
//!
//! Besides criterion's timings it counts heap allocations per review with a counting
//! global allocator. Counting is switched on only for a separate pass outside the timed
//! loops, so the counters cost the timings nothing but one relaxed load per allocation.
//! Set `BENCH_ALLOC_OUT=FILE` to also write the counts as JSON lines (bench/run.sh does),
//! and `BENCH_SHAPES=small,typical` to build and run only those shapes (for profiling).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mimalloc::MiMalloc;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::review::review;

#[path = "../bench/pods.rs"]
mod pods;

/// Pods at least this large are sampled flat, 10 samples, since one review takes milliseconds.
const LARGE_POD_BYTES: usize = 512 * 1024;
/// Reviews per allocation-counting pass; the counts are averaged over them.
const COUNT_PASSES: u64 = 5;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The binary's allocator (mimalloc, as `src/main.rs` sets), counting allocations (and
/// reallocations) while [`COUNTING`] is on.
struct CountingAllocator;

// === impl CountingAllocator ===

impl CountingAllocator {
    fn record(size: usize) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `MiMalloc` with the caller's arguments unchanged, so
// `MiMalloc`'s guarantees hold; the counters are atomics and never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: forwarded unchanged, see above.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: forwarded unchanged, see above.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(new_size);
        // SAFETY: forwarded unchanged, see above.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged, see above.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
}

/// Allocations and bytes allocated by one call of `f`, averaged over [`COUNT_PASSES`] calls.
fn count_allocations<T>(mut f: impl FnMut() -> T) -> (u64, u64) {
    drop(black_box(f()));
    ALLOCATIONS.store(0, Ordering::SeqCst);
    ALLOCATED_BYTES.store(0, Ordering::SeqCst);
    for _ in 0..COUNT_PASSES {
        COUNTING.store(true, Ordering::SeqCst);
        let out = black_box(f());
        COUNTING.store(false, Ordering::SeqCst);
        drop(out);
    }
    (
        ALLOCATIONS.load(Ordering::SeqCst) / COUNT_PASSES,
        ALLOCATED_BYTES.load(Ordering::SeqCst) / COUNT_PASSES,
    )
}

fn engine(c: &mut Criterion) {
    let injector = Injector::new(InjectConfig::default()).expect("the default config is valid");
    let mut alloc_out = std::env::var_os("BENCH_ALLOC_OUT").map(|path| {
        std::fs::File::create(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.to_string_lossy()))
    });
    let mut group = c.benchmark_group("review");
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>12} {:>10} {:>11}",
        "shape", "pod bytes", "body bytes", "allocs", "alloc bytes", "patch ops", "patch bytes"
    );
    let only: Option<Vec<String>> = std::env::var("BENCH_SHAPES")
        .ok()
        .map(|list| list.split(',').map(|s| s.trim().to_string()).collect());
    let shapes = match &only {
        Some(names) => names.iter().filter_map(|name| pods::shape(name)).collect(),
        None => pods::all_shapes(),
    };
    for shape in shapes {
        let body = shape.review_bytes();
        let pod_bytes = shape.pod_bytes();
        let answer = review(&injector, &body).unwrap_or_else(|e| panic!("{}: review failed: {e}", shape.name));
        assert!(
            answer.summary.injected(),
            "{}: not injected: {:?}",
            shape.name,
            answer.summary
        );
        let (patch_ops, patch_bytes) = patch_size(&answer.body);
        let (allocations, allocated) = count_allocations(|| review(&injector, &body));
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>12} {:>10} {:>11}",
            shape.name,
            pod_bytes,
            body.len(),
            allocations,
            allocated,
            patch_ops,
            patch_bytes
        );
        if let Some(out) = alloc_out.as_mut() {
            let line = serde_json::json!({
                "shape": shape.name,
                "pod_bytes": pod_bytes,
                "body_bytes": body.len(),
                "allocs_per_review": allocations,
                "alloc_bytes_per_review": allocated,
                "patch_ops": patch_ops,
                "patch_bytes": patch_bytes,
            });
            writeln!(out, "{line}").expect("write BENCH_ALLOC_OUT");
        }

        if pod_bytes >= LARGE_POD_BYTES {
            group.sampling_mode(SamplingMode::Flat).sample_size(10);
        } else {
            group.sampling_mode(SamplingMode::Auto).sample_size(100);
        }
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&shape.name), &body, |b, body| {
            b.iter(|| review(&injector, black_box(body)))
        });
    }
    group.finish();
}

/// The number of operations in the response's patch, and the decoded patch's size.
fn patch_size(response: &[u8]) -> (usize, usize) {
    use base64::Engine as _;
    let value: serde_json::Value = serde_json::from_slice(response).expect("the response is JSON");
    let Some(encoded) = value["response"]["patch"].as_str() else {
        return (0, 0);
    };
    let patch = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the patch is base64");
    let ops: Vec<serde_json::Value> = serde_json::from_slice(&patch).expect("the patch is a JSON array");
    (ops.len(), patch.len())
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = engine
}
criterion_main!(benches);
