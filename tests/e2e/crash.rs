//! Kill it anywhere (issue 6): the process is SIGKILLed at every step of the commit protocol
//! (`COMPACTOR_CRASH_AT`), then run again. Every row must be there exactly once, no input may
//! be left beside its merged file, and nothing stray may remain once the leftovers are old
//! enough to be told apart from a live run's. The same on S3 lives in `s3.rs`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use compactor::crash::CrashPoint;

use crate::util::*;

/// Makes every file in `dir` look two hours old, as a killed run's leftovers are by the time
/// anyone may remove them (a live run's temporary files are younger than `stale_upload_after`).
pub fn backdate(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(7200);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.path())
            .unwrap();
        file.set_modified(old).unwrap();
    }
}

pub fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |e| e.flatten().count())
}

/// Partitions and how many copies of the small file each starts with.
pub const LAYOUT: [(u32, usize); 2] = [(1, 4), (2, 3)];

#[test]
fn a_kill_at_every_step_of_the_commit_loses_no_row_and_leaves_nothing() {
    let small = corpus("alltypes_plain.parquet");
    for (point, _) in CrashPoint::ALL {
        let w = Warehouse::new("");
        for (hour, n) in LAYOUT {
            for i in 0..n {
                w.put(&format!("{}part-{i}.parquet", cold(hour)), &small);
            }
        }
        if point == "mid-recovery" {
            // Leave a commit to recover first.
            w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", "after-upload")])
                .expect_killed();
        }
        w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", point)])
            .expect_killed();

        w.run(&["once"]).expect_code(0);
        for (hour, n) in LAYOUT {
            let outputs = w.outputs(&cold(hour));
            assert_eq!(outputs.len(), 1, "{point}: {:?}", w.files(&cold(hour)));
            assert_eq!(w.files(&cold(hour)), outputs, "{point}: inputs left");
            let report = assert_same_rows(&w.path(&outputs[0]), &vec![small.clone(); n]);
            assert_eq!(report["rows"], 8 * n as u64, "{point}");
        }

        let tmp = w.root.join(".compactor-tmp");
        let work = w.base.join("work");
        backdate(&tmp);
        backdate(&work);
        let again = w.run(&["once"]);
        again.expect_code(0);
        assert!(
            again.stdout().contains("0 compacted"),
            "{point}: {}",
            again.stdout()
        );
        assert_eq!(
            file_count(&tmp),
            0,
            "{point}: temporary files left in the store"
        );
        assert_eq!(
            file_count(&work),
            0,
            "{point}: merged files left in work_dir"
        );
    }
}
