//! The ~1 KB body of the demo's `/bench/{id}` backends, shared by the criterion benchmarks and
//! the `check_json_cost` example (instructions counted by callgrind, `make json-cost`).

use serde_json::json;

/// The body the demo's `/bench/{id}` backends answer (demo/backends.yaml), as mockend sends it.
pub fn bench_body() -> Vec<u8> {
    let item = |sku: &str, title: &str, price: f64, quantity: u32, tags: &[&str]| json!({"sku": sku, "title": title, "price": price, "quantity": quantity, "tags": tags});
    serde_json::to_vec(&json!({
        "id": "1",
        "kind": "benchmark",
        "name": "Benchmark payload",
        "description": "A fixed payload of about one kilobyte, answered without latency so that benchmarks \
            measure the gateway rather than the backends. It carries a handful of nested objects and \
            arrays to exercise JSON composition the way real product data would.",
        "items": [
            item("B-001", "First benchmark item", 10.5, 1, &["a", "b"]),
            item("B-002", "Second benchmark item", 22.0, 3, &["c"]),
            item("B-003", "Third benchmark item", 7.25, 2, &["d", "e", "f"]),
            item("B-004", "Fourth benchmark item", 99.99, 1, &[]),
            item("B-005", "Fifth benchmark item", 3.5, 6, &["g", "h"]),
            item("B-006", "Sixth benchmark item", 45.0, 2, &["i"]),
        ],
        "meta": {"region": "eu-west-1", "shard": 7, "cached": false, "version": "2024.09.1",
                 "checksum": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    }))
    .unwrap()
}
