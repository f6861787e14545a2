//! compactor's patch: one zstd context per thread and kind, shared by the bulk API's plain jobs.
//!
//! The parquet crate makes a `Compressor` and a `Decompressor` for every column chunk it reads
//! or writes, and keeps them while the chunk is open: a reader or writer holds one pair per
//! column. Stock zstd gives each its own contexts, which cost twice over:
//!
//! * time: creating a context runs the `cpuid` instruction (zstd checks for BMI2 each time),
//!   and on a virtual machine every `cpuid` traps to the hypervisor, about 4 µs;
//! * memory: a decompression context is about 95 KB before any use, and a compression one
//!   grows a workspace of about 1.3 MB at level 3 for 1 MiB pages.
//!
//! A compressor set up with a level and nothing else, and a decompressor with no dictionary
//! and no parameter (all parquet asks for), make no context of their own: each job runs on
//! its thread's shared context of that kind. A bulk job is one whole frame, so a context
//! carries nothing from one job to the next but its dictionary and parameters, and the
//! shared ones never get either (the compression level is set for each job). A dictionary or
//! a parameter gives a compressor or decompressor a context of its own, as in stock zstd.

use std::cell::RefCell;
use std::thread::LocalKey;

thread_local! {
    static CCTX: RefCell<Option<zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// Runs `compress` on this thread's shared compression context. It carries no dictionary and
/// no parameter but the level, which `compress` sets; a failed frame must be abandoned before
/// it returns.
pub(crate) fn with_cctx<R>(compress: impl FnOnce(&mut zstd_safe::CCtx<'static>) -> R) -> R {
    with_shared(&CCTX, compress)
}

/// Runs `decompress` on this thread's shared decompression context, which carries no
/// dictionary and no parameter.
pub(crate) fn with_dctx<R>(decompress: impl FnOnce(&mut zstd_safe::DCtx<'static>) -> R) -> R {
    with_shared(&DCTX, decompress)
}

fn with_shared<T: Default + 'static, R>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    job: impl FnOnce(&mut T) -> R,
) -> R {
    // Taken out while in use: a nested job (none is expected) gets a context of its own.
    let mut context = slot
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_default();
    let result = job(&mut context);
    // If the thread is exiting, the context is freed instead.
    let _ = slot.try_with(move |slot| *slot.borrow_mut() = Some(context));
    result
}
