//! A counting global allocator for allocation-budget tests: it counts the allocations (and
//! reallocations) made by the current thread, so other test threads do not disturb a count.
//!
//! Use from a test file with `#[path = "support/counting_alloc.rs"] mod counting_alloc;`: the
//! module installs itself as that test binary's `#[global_allocator]`.

// A counting `#[global_allocator]` cannot be written without `unsafe`: `GlobalAlloc` is an
// unsafe trait. The wrapper only forwards to `System`; this is test-only code.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to `System`, counting per thread.
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread (memory freed by another thread than
    /// the one that allocated it skews both threads' figures; the tests that read it run the
    /// pipeline on one thread).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter is a const-initialised thread-local `Cell` and never
// allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        LIVE.with(|c| c.set(c.get() + layout.size() as isize));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.with(|c| c.set(c.get() - layout.size() as isize));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        LIVE.with(|c| c.set(c.get() + new_size as isize - layout.size() as isize));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and reallocations made by this thread so far.
pub fn allocations() -> usize {
    ALLOCS.with(Cell::get)
}

/// Heap bytes this thread allocated and has not freed (requested sizes, without the
/// allocator's own rounding and headers).
#[allow(dead_code)] // not every test binary that uses the allocator reads it
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}
