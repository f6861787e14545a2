//! Per-partition leases, so several compactor processes on one bucket share the work and no
//! partition is compacted by two of them at once (`[leases] enabled = true`).
//!
//! A lease is a small JSON object `<partition>/_compactor.lease` (hidden from listings of data
//! by its leading `_`) naming its owner and when it expires:
//! * **acquire**: create it only if absent (`If-None-Match: *`; locally an exclusive create);
//!   if present and expired, take it over only if it is still the version read (`If-Match` on
//!   its ETag), so of two replicas racing for an expired lease exactly one wins;
//! * **renew**: while the partition is worked on, the holder extends it every third of the TTL,
//!   again only if it is still its own version; a failed renewal marks the lease lost;
//! * **release**: deleted when the partition is done (if still ours); a killed holder's lease
//!   simply expires.
//!
//! The holder checks that its lease is neither lost nor expired before it uploads a merged file
//! and before it deletes inputs, so a replica that stalled past its TTL stops before it can
//! collide with the one that took over. Expiry compares wall clocks: keep the TTL far above
//! clock skew and above the slowest upload of one merged file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::app::now_ms;
use crate::store::{Store, StoreError};

/// The lease object's name inside a partition.
pub const LEASE_NAME: &str = "_compactor.lease";

/// How leases are taken: who we are and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub ttl: Duration,
    /// This process, as other replicas see it: host, pid and a random part.
    pub owner: String,
}

impl LeaseSettings {
    pub fn new(ttl: Duration) -> LeaseSettings {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        LeaseSettings {
            ttl,
            owner: format!("{host}/{}/{nanos:08x}", std::process::id()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    owner: String,
    expires_ms: i64,
}

/// The answer to [`acquire`].
#[derive(Debug)]
pub enum Acquired {
    Yes(Lease),
    /// Someone else holds it (`until_ms` when known).
    HeldBy {
        owner: String,
        until_ms: Option<i64>,
    },
}

/// A lease we hold. Renewed in the background until [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    key: String,
    state: Arc<State>,
    renewer: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    /// The ETag of our latest write, what the next renewal or release must find.
    etag: Mutex<String>,
    expires_ms: AtomicI64,
    lost: AtomicBool,
}

fn record(settings: &LeaseSettings) -> (Bytes, i64) {
    let expires_ms = now_ms() + settings.ttl.as_millis() as i64;
    let r = Record {
        owner: settings.owner.clone(),
        expires_ms,
    };
    // A struct of a string and an integer always serializes.
    let bytes = serde_json::to_vec(&r).unwrap_or_default();
    (Bytes::from(bytes), expires_ms)
}

/// Tries to take the lease of the partition at `prefix`.
pub async fn acquire(
    store: Arc<dyn Store>,
    prefix: &str,
    settings: &LeaseSettings,
) -> Result<Acquired, StoreError> {
    let key = format!("{prefix}{LEASE_NAME}");
    let (data, expires_ms) = record(settings);
    let won = if store.put_if_absent(&key, data.clone()).await? {
        true
    } else {
        let current = match store.head(&key).await {
            Ok(meta) => meta,
            // Released in between: try once more from the start next run.
            Err(StoreError::NotFound { .. }) => {
                return Ok(Acquired::HeldBy {
                    owner: "another replica (just released)".into(),
                    until_ms: None,
                });
            }
            Err(e) => return Err(e),
        };
        let held = match store.get_unchanged(&key, &current.etag).await {
            Ok(bytes) => serde_json::from_slice::<Record>(&bytes).ok(),
            Err(StoreError::Changed { .. } | StoreError::NotFound { .. }) => {
                return Ok(Acquired::HeldBy {
                    owner: "another replica (just renewed)".into(),
                    until_ms: None,
                });
            }
            Err(e) => return Err(e),
        };
        match held {
            Some(r) if r.expires_ms > now_ms() => {
                return Ok(Acquired::HeldBy {
                    owner: r.owner,
                    until_ms: Some(r.expires_ms),
                });
            }
            // Expired, or not a lease we can read: take it over if nobody is faster.
            _ => store.put_if_match(&key, data, &current.etag).await?,
        }
    };
    if !won {
        return Ok(Acquired::HeldBy {
            owner: "another replica (took it over first)".into(),
            until_ms: None,
        });
    }
    let etag = store.head(&key).await?.etag;
    let state = Arc::new(State {
        etag: Mutex::new(etag),
        expires_ms: AtomicI64::new(expires_ms),
        lost: AtomicBool::new(false),
    });
    let renewer = tokio::spawn(renew(store, key.clone(), settings.clone(), state.clone()));
    Ok(Acquired::Yes(Lease {
        key,
        state,
        renewer,
    }))
}

/// Extends the lease every third of its TTL while it is held.
async fn renew(store: Arc<dyn Store>, key: String, settings: LeaseSettings, state: Arc<State>) {
    loop {
        tokio::time::sleep(settings.ttl / 3).await;
        let mut etag = state.etag.lock().await;
        let (data, expires_ms) = record(&settings);
        let renewed = match store.put_if_match(&key, data, &etag).await {
            Ok(true) => store.head(&key).await.ok(),
            _ => None,
        };
        match renewed {
            Some(meta) => {
                *etag = meta.etag;
                state.expires_ms.store(expires_ms, Ordering::SeqCst);
            }
            None => {
                tracing::warn!(lease = %key, "could not renew the lease; stopping work on this partition");
                state.lost.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

impl Lease {
    /// Whether we may still act on the partition: not lost, and not expired by our clock.
    pub fn held(&self) -> bool {
        !self.state.lost.load(Ordering::SeqCst)
            && now_ms() < self.state.expires_ms.load(Ordering::SeqCst)
    }

    /// Stops renewing and deletes the lease if it is still ours.
    pub async fn release(self, store: &dyn Store) {
        // A renewal holds the lock from its write until it has recorded the new ETag. Taking
        // it first, and keeping it to the end, stops the renewer between renewals, never
        // after a write whose ETag it did not record (the lease would then look like someone
        // else's and stay behind).
        let etag = self.state.etag.lock().await;
        self.renewer.abort();
        if self.state.lost.load(Ordering::SeqCst) {
            return;
        }
        match store.head(&self.key).await {
            Ok(meta) if meta.etag == *etag => {
                if let Some((_, e)) = store
                    .delete_many(std::slice::from_ref(&self.key))
                    .await
                    .first()
                {
                    tracing::warn!(lease = %self.key, "could not release the lease (it expires by itself): {e}");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    fn settings(owner: &str, ttl_ms: u64) -> LeaseSettings {
        LeaseSettings {
            ttl: Duration::from_millis(ttl_ms),
            owner: owner.into(),
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_expiry_takeover_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::try_new(dir.path()).unwrap());
        let p = "t/dt=2026-11-20/";

        let Acquired::Yes(a) = acquire(store.clone(), p, &settings("a", 60_000))
            .await
            .unwrap()
        else {
            panic!("a gets a free lease");
        };
        match acquire(store.clone(), p, &settings("b", 60_000))
            .await
            .unwrap()
        {
            Acquired::HeldBy { owner, until_ms } => {
                assert_eq!(owner, "a");
                assert!(until_ms.unwrap() > now_ms());
            }
            Acquired::Yes(_) => panic!("b must not get a held lease"),
        }
        assert!(a.held());
        a.release(store.as_ref()).await;
        assert!(store.list(p).await.unwrap().objects.is_empty(), "released");

        // A holder that died: its lease expires and is taken over.
        let Acquired::Yes(dead) = acquire(store.clone(), p, &settings("dead", 300))
            .await
            .unwrap()
        else {
            panic!();
        };
        dead.renewer.abort();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!dead.held(), "expired by its own clock");
        let Acquired::Yes(c) = acquire(store.clone(), p, &settings("c", 60_000))
            .await
            .unwrap()
        else {
            panic!("an expired lease is taken over");
        };
        // The dead one's release does not remove the new holder's lease.
        dead.release(store.as_ref()).await;
        assert_eq!(store.list(p).await.unwrap().objects.len(), 1);
        c.release(store.as_ref()).await;
    }

    #[tokio::test]
    async fn a_live_holder_renews_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::try_new(dir.path()).unwrap());
        let p = "t/p/";
        let Acquired::Yes(a) = acquire(store.clone(), p, &settings("a", 300))
            .await
            .unwrap()
        else {
            panic!();
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(a.held(), "renewed past its first TTL");
        assert!(matches!(
            acquire(store.clone(), p, &settings("b", 300))
                .await
                .unwrap(),
            Acquired::HeldBy { .. }
        ));
        a.release(store.as_ref()).await;
    }

    /// A release that comes while a renewal is being written must still remove the lease: a
    /// renewal cut off after its write, before it recorded the new ETag, left the lease
    /// behind (seen as a stray lease object beside a finished merge).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_during_a_renewal_removes_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::try_new(dir.path()).unwrap());
        let p = "t/p/";
        for round in 0..300u64 {
            // Renewals every 2 ms, so releases keep landing on one in flight.
            let Acquired::Yes(lease) = acquire(store.clone(), p, &settings("a", 6)).await.unwrap()
            else {
                panic!("round {round}: the lease is free");
            };
            tokio::time::sleep(Duration::from_micros(500 + round * 37 % 3000)).await;
            lease.release(store.as_ref()).await;
            let left = store.list(p).await.unwrap().objects;
            assert!(
                left.is_empty(),
                "round {round}: lease left behind: {left:?}"
            );
        }
    }
}
