//! Graceful shutdown in two steps, shared by `once` and the daemon.
//!
//! 1. **Drain**: no new partition or group is started; merges in flight go on.
//! 2. **Abandon** (when the grace period is over): a merge still being written is dropped before
//!    anything is uploaded; its temporary file goes with it and no input is deleted. A commit
//!    that has started uploading is finished (it is short, and cutting it in the middle would
//!    leave an unfinished multipart upload behind).
//!
//! Either way nothing is lost: the commit protocol ([`crate::journal`]) is safe to stop at any
//! point, and the next run picks up what is left.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Abandoning,
}

/// A shutdown signal that any number of tasks can watch. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Stop {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            phase: Arc::new(watch::Sender::new(Phase::Running)),
        }
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|p| {
            let later = *p < to;
            if later {
                *p = to;
            }
            later
        });
    }

    /// Step 1: start nothing new.
    pub fn drain(&self) {
        self.advance(Phase::Draining);
    }

    /// Step 2: drop merges that have not started uploading.
    pub fn abandon(&self) {
        self.advance(Phase::Abandoning);
    }

    /// Drains now and abandons once `grace` has passed.
    pub fn drain_then_abandon(&self, grace: Duration) {
        self.drain();
        if grace.is_zero() {
            self.abandon();
            return;
        }
        let stop = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if stop.phase() < Phase::Abandoning {
                tracing::warn!(
                    "shutdown grace period ({}s) is over: abandoning merges in flight",
                    grace.as_secs()
                );
            }
            stop.abandon();
        });
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn is_draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Waits until the shutdown has reached `phase`.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

/// Turns SIGTERM and SIGINT into a graceful shutdown: the first drains and abandons after
/// `grace`; a second one exits at once (code 130), which is still safe, since a kill at any
/// moment is (the next run finishes or undoes what was cut short).
pub fn on_signals(stop: &Stop, grace: Duration) {
    let stop = stop.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            tracing::warn!("cannot listen for SIGTERM; only SIGINT stops gracefully");
            let _ = tokio::signal::ctrl_c().await;
            stop.drain_then_abandon(grace);
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        if grace.is_zero() {
            tracing::warn!("stopping: merges in flight are dropped (signal again to exit at once)");
        } else {
            tracing::warn!(
                "shutting down: no new partitions; merges in flight get up to {}s to finish \
                 (signal again to exit at once)",
                grace.as_secs()
            );
        }
        stop.drain_then_abandon(grace);
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!("second signal: exiting now; the next run finishes what was cut short");
        std::process::exit(130);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward() {
        let stop = Stop::new();
        assert_eq!(stop.phase(), Phase::Running);
        stop.abandon();
        stop.drain();
        assert_eq!(stop.phase(), Phase::Abandoning);
        // Already reached: returns at once.
        stop.reached(Phase::Draining).await;
    }

    #[tokio::test]
    async fn grace_period_then_abandon() {
        let stop = Stop::new();
        stop.drain_then_abandon(Duration::from_millis(50));
        assert_eq!(stop.phase(), Phase::Draining);
        stop.reached(Phase::Abandoning).await;
        assert_eq!(stop.phase(), Phase::Abandoning);
    }
}
