//! Test hooks for the commit protocol: `COMPACTOR_CRASH_AT=<point>` kills the process with
//! SIGKILL at that step, as a power cut, an OOM kill or `kubectl delete --force` would: no
//! destructor runs, no temporary file is removed, nothing is flushed. Tests then run compactor
//! again and check that every row is there exactly once and nothing stray is left.
//! Only tests set the variable.

/// Where to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The merged file is written to the work directory; nothing is uploaded.
    AfterMerge,
    /// The merged file is uploaded and verified; no input is deleted.
    AfterUpload,
    /// One input is deleted, the others are not.
    MidDelete,
    /// Recovery is finishing an earlier run's commit: one input deleted, the others not.
    MidRecovery,
}

impl CrashPoint {
    pub const ALL: [(&'static str, CrashPoint); 4] = [
        ("after-merge", CrashPoint::AfterMerge),
        ("after-upload", CrashPoint::AfterUpload),
        ("mid-delete", CrashPoint::MidDelete),
        ("mid-recovery", CrashPoint::MidRecovery),
    ];

    pub fn from_env() -> Option<CrashPoint> {
        let name = std::env::var("COMPACTOR_CRASH_AT").ok()?;
        CrashPoint::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, p)| p)
    }

    /// Kills the process here if `armed` is this point.
    pub fn hit(self, armed: Option<CrashPoint>) {
        if armed == Some(self) {
            tracing::warn!("COMPACTOR_CRASH_AT={self:?}: killing the process (SIGKILL)");
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            // Only if `kill` is missing: just as abrupt, with SIGABRT.
            std::process::abort();
        }
    }
}
