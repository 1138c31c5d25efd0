//! The `/metrics` render of trawl's own metrics, as `admin` serves it: 10 scrape jobs and 2
//! remote-write endpoints with disk buffers. Reports time per render (criterion) and
//! allocations per render (the counting allocator of the allocation tests): the self-metrics'
//! budget is no allocation per series, only the response body.

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;
#[path = "metrics/setup.rs"]
mod setup;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let render = setup::renderer();
    if let Ok(path) = std::env::var("METRICS_DUMP") {
        // For comparing the text of two versions byte for byte.
        std::fs::write(path, render()).expect("writes the dump");
    }
    const N: usize = 100;
    let before = counting_alloc::allocations();
    let mut bytes = 0;
    for _ in 0..N {
        bytes = black_box(render()).len();
    }
    let per_render = (counting_alloc::allocations() - before) / N;
    println!("metrics render: {bytes} bytes, {per_render} allocations per render");
    c.bench_function("metrics_render", |b| b.iter(|| black_box(render())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
