//! A policy that misbehaves on purpose, for the host's containment tests. The `mode` setting
//! picks the misbehaviour; `plan` (and `is-cold` for `loop-cold`) carries it out.
//!
//! | mode | what it does |
//! |---|---|
//! | `good` (or no mode) | merges every file of a partition into one group, the hot hour included (the control case; passes `plugin check`) |
//! | `loop`, `loop-cold` | never returns from `plan` / `is-cold` |
//! | `memory` | allocates until something stops it |
//! | `trap` | panics |
//! | `out-of-range`, `duplicate`, `empty-group`, `huge-target` | answers nonsense |
//! | `recursion` | recurses without end |
//! | `gigantic-reason`, `gigantic-groups` | answers with 40 MiB of skip reason / 4 million file indices |
//! | `slow` | legal, after burning about half of its fuel |
//! | `escape` | tries to read a file, the environment and the network, reports what it saw |
//! | `configure-error` | refuses its settings |
#![cfg(target_arch = "wasm32")]
// The generated glue exports functions through raw symbols, which needs unsafe code.
#![allow(unsafe_code)]

use std::sync::Mutex;

mod wit_bindings {
    wit_bindgen::generate!({ path: "../../wit/since_v0.1.0", world: "plugin" });
}

use wit_bindings::compaction::policy::host::{Level, log};
use wit_bindings::compaction::policy::types::{DataFile, Decision, Group, Partition, PluginInfo};
use wit_bindings::exports::compaction::policy::policy::Guest;

static MODE: Mutex<String> = Mutex::new(String::new());

fn mode() -> String {
    MODE.lock().map(|m| m.clone()).unwrap_or_default()
}

struct Hostile;

impl Guest for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: "0.0.1".into(),
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in settings {
            match key.as_str() {
                "mode" if value == "configure-error" => {
                    return Err("mode = \"configure-error\": refused on purpose".into());
                }
                "mode" => {
                    if let Ok(mut m) = MODE.lock() {
                        *m = value;
                    }
                }
                other => return Err(format!("unknown setting {other:?}")),
            }
        }
        Ok(())
    }

    fn is_cold(_p: Partition, _now_ms: i64) -> bool {
        if mode() == "loop-cold" {
            spin();
        }
        true
    }

    fn plan(_p: Partition, files: Vec<DataFile>, _now_ms: i64) -> Decision {
        let n = files.len() as u32;
        let all = |target_size| {
            Decision::Compact(vec![Group {
                files: (0..n).collect(),
                target_size,
            }])
        };
        match mode().as_str() {
            "loop" => spin(),
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    log(Level::Debug, &format!("holding {} MiB", hoard.len()));
                }
            }
            "trap" => panic!("hostile plugin panics on purpose"),
            "out-of-range" => Decision::Compact(vec![Group {
                files: vec![0, n + 5],
                target_size: 1 << 27,
            }]),
            "duplicate" => Decision::Compact(vec![Group {
                files: vec![0, 0],
                target_size: 1 << 27,
            }]),
            "empty-group" => Decision::Compact(vec![Group {
                files: vec![],
                target_size: 1 << 27,
            }]),
            "huge-target" => all(u64::MAX),
            "recursion" => Decision::Skip(format!("depth {}", deep(u64::MAX))),
            // 40 MiB of skip reason, under the 64 MiB memory cap.
            "gigantic-reason" => Decision::Skip("x".repeat(40 << 20)),
            // Four million file indices (16 MiB) for a partition of a few files.
            "gigantic-groups" => Decision::Compact(vec![Group {
                files: (0..4_000_000).collect(),
                target_size: 1 << 27,
            }]),
            // Legal, but burns about half of the fuel (2e9 instructions) first.
            "slow" => {
                let mut x: u64 = 0;
                for i in 0..80_000_000u64 {
                    x = std::hint::black_box(x.wrapping_add(i));
                }
                log(Level::Debug, &format!("slow: {x}"));
                if n < 2 {
                    Decision::Skip("too few files to merge".into())
                } else {
                    all(1 << 27)
                }
            }
            "escape" => {
                let file = std::fs::read_to_string("/etc/passwd").map(|s| s.len());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let net = std::net::TcpStream::connect("127.0.0.1:1").map(|_| ());
                Decision::Skip(format!("escape: file={file:?} env={env:?} net={net:?}"))
            }
            // `good`: everything in one group, the hot hour included (a plain, valid answer
            // that passes `plugin check`).
            _ if n < 2 => Decision::Skip("too few files to merge".into()),
            _ => all(1 << 27),
        }
    }
}

/// Recursion without end (the black box keeps it from becoming a loop).
fn deep(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 + deep(std::hint::black_box(n - 1))
    }
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

wit_bindings::export!(Hostile with_types_in wit_bindings);
