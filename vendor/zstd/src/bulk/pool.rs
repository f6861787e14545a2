//! compactor's patch: a per-thread pool of zstd contexts for the bulk API.
//!
//! Creating a zstd context runs the `cpuid` instruction (zstd checks for BMI2 each time), and
//! on a virtual machine every `cpuid` traps to the hypervisor: about 4 µs each. The parquet
//! crate makes a `Compressor` and a `Decompressor` for every column chunk it reads or writes,
//! so merging small files created tens of thousands of contexts, 4% of compactor's CPU time.
//! Contexts are returned here when dropped and handed out again, reset to their defaults.
//!
//! Only contexts that never compressed are kept for compressors: a used one holds its
//! compression workspace (about a megabyte at level 3), which should not outlive its owner.
//!
//! A compressor set up with a level and nothing else (all the parquet crate asks for) does not
//! compress on its own context but on its thread's shared one, so a thread holds one
//! compression workspace rather than one per compressor: parquet keeps a compressor per column
//! of the row group being written, and at 1.3 MB each (level 3, 1 MiB pages) an 18-column
//! table held 23 MB of them per merge.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Contexts kept per thread and kind: enough for the columns of a wide row group.
const KEEP: usize = 64;

thread_local! {
    static DCTX: RefCell<Vec<zstd_safe::DCtx<'static>>> = const { RefCell::new(Vec::new()) };
    static CCTX: RefCell<Vec<zstd_safe::CCtx<'static>>> = const { RefCell::new(Vec::new()) };
    static SHARED_CCTX: RefCell<Option<zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
}

/// Runs `compress` on this thread's shared compression context. It carries no dictionary and
/// no parameter but the level, which `compress` sets; a failed frame must be abandoned before
/// it returns.
pub(crate) fn with_shared_cctx<R>(
    compress: impl FnOnce(&mut zstd_safe::CCtx<'static>) -> R,
) -> R {
    // Taken out while in use: a nested call (none is expected) gets a context of its own.
    let mut context = SHARED_CCTX
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_else(take_cctx);
    let result = compress(&mut context);
    // If the thread is exiting, the context is freed instead.
    let _ = SHARED_CCTX.try_with(move |slot| *slot.borrow_mut() = Some(context));
    result
}

pub(crate) fn take_dctx() -> zstd_safe::DCtx<'static> {
    DCTX.try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub(crate) fn take_cctx() -> zstd_safe::CCtx<'static> {
    CCTX.try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Resets `context` to its defaults (no dictionary, default parameters) and keeps it, if
/// there is room; otherwise it is freed.
pub(crate) fn give_dctx(mut context: zstd_safe::DCtx<'_>) {
    if context
        .reset(zstd_safe::ResetDirective::SessionAndParameters)
        .is_err()
    {
        return;
    }
    // SAFETY: the lifetime only guards a referenced dictionary, and the reset above dropped
    // every reference to one; the context is otherwise owned outright.
    let context: zstd_safe::DCtx<'static> = unsafe { std::mem::transmute(context) };
    keep(&DCTX, context);
}

/// As [`give_dctx`], for a compression context that never compressed.
pub(crate) fn give_cctx(mut context: zstd_safe::CCtx<'_>) {
    if context
        .reset(zstd_safe::ResetDirective::SessionAndParameters)
        .is_err()
    {
        return;
    }
    // SAFETY: as in `give_dctx`: the reset dropped every dictionary reference.
    let context: zstd_safe::CCtx<'static> = unsafe { std::mem::transmute(context) };
    keep(&CCTX, context);
}

/// Puts `context` in this thread's `pool` if there is room (and the thread is not exiting);
/// otherwise it is dropped, which frees it.
fn keep<T: 'static>(pool: &'static LocalKey<RefCell<Vec<T>>>, context: T) {
    let _ = pool.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push(context);
        }
    });
}
