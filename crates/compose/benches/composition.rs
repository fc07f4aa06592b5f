//! Criterion benchmarks of the pure composition work done per request: scheduling bookkeeping
//! of a call graph, template rendering (plain, with a reference, per list element), shaping a
//! 10 KB body, assembling a grouped body from raw call bodies, and the strict JSON check of a
//! ~1 KB backend body (against the `serde_json` pass it replaced).

// Benchmarks build fixed inputs; a failure to build them is a broken benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use compose::{BodyBuilder, Graph, Inputs, Names, Schedule, Shape, Template, check_json, json_key};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;

#[path = "support/bench_body.rs"]
mod bench_body;
use bench_body::bench_body;

fn schedule(c: &mut Criterion) {
    // 5 independent calls, 10 that each read one of them, 5 that read two of those.
    let mut deps: Vec<Vec<usize>> = vec![vec![]; 5];
    deps.extend((0..10).map(|i| vec![i % 5]));
    deps.extend((0..5).map(|i| vec![5 + i, 10 + i]));
    let graph = Graph::new(deps).unwrap();
    c.bench_function("schedule/20 calls, 3 levels", |b| {
        b.iter(|| {
            let mut schedule = Schedule::new(black_box(&graph));
            let mut ready: Vec<usize> = schedule.roots().collect();
            let mut done = 0;
            while let Some(call) = ready.pop() {
                done += 1;
                ready.extend(schedule.complete(call));
            }
            black_box(done)
        });
    });
}

fn templates(c: &mut Criterion) {
    let names = Names { params: &["id"], calls: &["orders"] };
    let plain = Template::parse("/users/{id}/orders?limit=10", names).unwrap();
    let reference = Template::parse("/items/{orders.items[0].sku}?user={id}", names).unwrap();
    let list = Template::parse("/items/{orders.items[*].sku}", names).unwrap();
    let orders: Value =
        json!({"items": (0..100).map(|i| json!({"sku": format!("SKU-{i}"), "qty": i})).collect::<Vec<_>>()});
    let calls = [Some(&orders)];
    let inputs = Inputs { params: &["12345"], calls: &calls, element: None };
    c.bench_function("template/route parameter", |b| {
        b.iter(|| {
            let mut out = String::new();
            plain.render(black_box(&inputs), &mut out).unwrap();
            out
        });
    });
    c.bench_function("template/call reference", |b| {
        b.iter(|| {
            let mut out = String::new();
            reference.render(black_box(&inputs), &mut out).unwrap();
            out
        });
    });
    let items = orders["items"].as_array().unwrap();
    c.bench_function("template/100 list elements", |b| {
        b.iter(|| {
            items
                .iter()
                .map(|item| {
                    let mut out = String::new();
                    list.render(&Inputs { element: Some(item), ..inputs }, &mut out).unwrap();
                    out
                })
                .collect::<Vec<_>>()
        });
    });
}

fn shaping(c: &mut Criterion) {
    let product = |i: usize| {
        json!({"id": i, "name": format!("Product {i}"), "price": {"amount": 10.5, "currency": "EUR"},
               "tags": ["a", "b"], "internal": {"cost": 3, "supplier": "x"}})
    };
    let body = serde_json::to_vec(&json!({
        "data": {"products": (0..80).map(product).collect::<Vec<_>>()},
        "meta": {"page": 1, "total": 80}, "debug": {"trace": "abc"}
    }))
    .unwrap();
    assert!((9_000..12_000).contains(&body.len()), "body is {} bytes", body.len());
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let select = Shape::new(&strings(&["meta", "data.products"]), &[], &[], None).unwrap();
    let omit =
        Shape::new(&[], &strings(&["debug", "meta.total"]), &[("meta".into(), "info".into())], None).unwrap();
    let pick = Shape::new(&[], &[], &[], Some("data.products[3]")).unwrap();
    for (name, shape) in [("select", &select), ("omit+rename", &omit), ("pick", &pick)] {
        c.bench_function(&format!("shape/10 KB body, parse + {name} + serialise"), |b| {
            b.iter(|| {
                let value: Value = serde_json::from_slice(black_box(&body)).unwrap();
                serde_json::to_vec(&shape.apply(value).unwrap()).unwrap()
            });
        });
    }
}

fn body(c: &mut Criterion) {
    let part = serde_json::to_vec(&json!({"id": 1, "text": "x".repeat(900)})).unwrap();
    let keys: Vec<Box<[u8]>> = ["a", "b", "c", "d", "e"].iter().map(|k| json_key(k)).collect();
    c.bench_function("body/splice five 1 KB bodies", |b| {
        b.iter(|| {
            let mut builder = BodyBuilder::with_capacity(5 * part.len());
            for key in &keys {
                builder.push_raw(key, black_box(&part));
            }
            builder.finish()
        });
    });
}

fn json_check(c: &mut Criterion) {
    let body = bench_body();
    assert!((900..1_100).contains(&body.len()), "body is {} bytes", body.len());
    let mut group = c.benchmark_group("check_json");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("1 KB body, serde_json seed (before)", |b| {
        b.iter(|| serde_seed::check_json(black_box(&body)).unwrap());
    });
    group.bench_function("1 KB body, one pass", |b| b.iter(|| check_json(black_box(&body)).unwrap()));
    group.finish();
}

/// The check as it was before the one-pass validator, kept as the baseline: `serde_json`'s
/// `Deserializer` driven by a visitor that counts the depth and drops everything.
mod serde_seed {
    use compose::MAX_BODY_NESTING;
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    pub fn check_json(bytes: &[u8]) -> Result<(), String> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        Level(MAX_BODY_NESTING).deserialize(&mut deserializer).map_err(|e| e.to_string())?;
        deserializer.end().map_err(|e| e.to_string())
    }

    /// A value being read and dropped, with how many more containers may open inside it.
    #[derive(Clone, Copy)]
    struct Level(usize);

    impl<'de> DeserializeSeed<'de> for Level {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Level {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }

        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }

        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }

        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }

        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let inner = Level(self.0.checked_sub(1).ok_or_else(|| serde::de::Error::custom("too deep"))?);
            while seq.next_element_seed(inner)?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = Level(self.0.checked_sub(1).ok_or_else(|| serde::de::Error::custom("too deep"))?);
            while map.next_key_seed(inner)?.is_some() {
                map.next_value_seed(inner)?;
            }
            Ok(())
        }
    }
}

criterion_group!(benches, schedule, templates, shaping, body, json_check);
criterion_main!(benches);
