//! A proxy that adds a delay to every request on its way to an S3-compatible server, so the
//! S3 path can be measured as it runs against a remote store (each request waits, as it would
//! for S3's first byte), on one machine.
//!
//! `cargo run --release --example latency_proxy -- http://127.0.0.1:8099 20` prints the
//! proxy's endpoint and serves until killed.

use std::time::Duration;

use compactor::store::fault_proxy::{Fault, FaultProxy, Rule};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(upstream), Some(ms)) = (args.next(), args.next().and_then(|a| a.parse().ok())) else {
        eprintln!("usage: latency_proxy UPSTREAM_URL DELAY_MS");
        std::process::exit(2);
    };
    let proxy = FaultProxy::start(&upstream).unwrap_or_else(|e| {
        eprintln!("latency_proxy: {e}");
        std::process::exit(1);
    });
    proxy.add(Rule::new(Fault::Delay(Duration::from_millis(ms))));
    println!("{}", proxy.endpoint);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
