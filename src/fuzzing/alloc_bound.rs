//! A global allocator for fuzzing binaries that refuses any single allocation above a bound.
//!
//! A refused request returns null: fallible reservations (`try_reserve`) see an error, every
//! other allocation aborts the process with "memory allocation of N bytes failed", which the
//! fuzz harness's supervisor records as a failure. The largest request served is kept, so a run
//! can report how close the readers came to the bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LARGEST: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Install with `#[global_allocator] static A: BoundedAllocator = BoundedAllocator::new(1 << 30);`.
pub struct BoundedAllocator {
    limit: AtomicUsize,
}

impl BoundedAllocator {
    pub const fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit),
        }
    }

    /// Change the bound (e.g. lower it to find the input behind a large allocation).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    fn admit(&self, size: usize) -> bool {
        if size > self.limit() {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        LARGEST.fetch_max(size, Ordering::Relaxed);
        true
    }
}

// SAFETY: every request is forwarded unchanged to the system allocator or refused with null,
// which `GlobalAlloc` allows.
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.admit(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.admit(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.admit(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `dealloc`; `new_size` was admitted.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The largest single allocation served so far (by any thread).
pub fn largest_allocation() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

/// Allocations refused so far because they exceeded the bound.
pub fn refused_allocations() -> usize {
    REFUSED.load(Ordering::Relaxed)
}
