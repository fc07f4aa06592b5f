//! Checks the ~1 KB `/bench` body with [`compose::check_json`] as many times as the first
//! argument says: run under callgrind with 1 and with 1,001, the difference over 1,000 is the
//! check's instructions per body (`make json-cost`, scripts/json_cost.sh).

// A measuring tool: a bad argument or a refused body is a broken measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../benches/support/bench_body.rs"]
mod bench_body;

fn main() {
    let times: usize = std::env::args().nth(1).expect("how many checks").parse().expect("a count");
    let body = bench_body::bench_body();
    println!("{} bytes", body.len());
    for _ in 0..times {
        compose::check_json(std::hint::black_box(&body)).expect("the bench body is valid");
    }
}
