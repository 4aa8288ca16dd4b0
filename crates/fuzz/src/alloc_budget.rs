//! A counting global allocator: the system allocator, plus three counters that let a
//! fuzz binary measure what one input allocated (its peak of live bytes and its largest
//! single allocation) and so refuse an input that allocates by a length it read rather
//! than by its size.
//!
//! The counters are process-wide: measure on one thread at a time (the fuzz binaries
//! run inputs one by one). Another thread allocating meanwhile only raises the figures,
//! so a measurement errs on the side of a reported violation.
//!
//! The only unsafe code of the workspace outside generated code: `GlobalAlloc` is an
//! unsafe trait. Every method forwards to [`System`] with the caller's arguments, and
//! counts.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes now.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most live heap bytes since the last [`measure`] began.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The largest single allocation since the last [`measure`] began.
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Allocations so far (to tell whether this allocator is installed).
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// Install in a binary with
/// `#[global_allocator] static ALLOC: CountingAllocator = CountingAllocator;`.
pub struct CountingAllocator;

// SAFETY: every method forwards its arguments unchanged to the system allocator, which
// upholds the contract; the bookkeeping only touches atomics and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            allocated(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            allocated(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by this allocator (so by System) with layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: ptr was allocated by System with layout; new_size is the caller's.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            // Counted as a new block before the old one goes: a moving realloc holds
            // both for a moment.
            allocated(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new_ptr
    }
}

fn allocated(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
    LARGEST.fetch_max(size, Ordering::Relaxed);
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
}

/// What one measured call allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// The most heap bytes it held at once, beyond what was live when it began.
    pub peak_bytes: usize,
    /// Its largest single allocation (or reallocation), in bytes.
    pub largest_bytes: usize,
}

/// Runs `f` and measures its allocations.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    LARGEST.store(0, Ordering::Relaxed);
    let value = f();
    let usage = Usage {
        peak_bytes: PEAK.load(Ordering::Relaxed).saturating_sub(start),
        largest_bytes: LARGEST.load(Ordering::Relaxed),
    };
    (value, usage)
}

/// Whether this binary's global allocator is [`CountingAllocator`] (else every
/// measurement would read zero).
pub fn is_installed() -> bool {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
    ALLOCATIONS.load(Ordering::Relaxed) > before
}
