//! The `switchyard` binary's global allocator: mimalloc, asked the way Rust's own
//! `System` allocator asks glibc.
//!
//! The `mimalloc` crate sends every allocation to `mi_malloc_aligned`, whatever its
//! alignment. mimalloc v3 serves that from its fast path only for blocks up to 1 KiB
//! whose next free block happens to be aligned; anything larger (a request's header
//! buffers, a 100,000-route router's vectors) goes through its generic aligned path, and
//! from there often through over-allocation (size + alignment, then an offset). Yet
//! every block plain `mi_malloc` returns is aligned to 16 bytes (`MI_MAX_ALIGN_SIZE`, as
//! a malloc must be for `max_align_t`), or to its own size below that. So an alignment
//! of at most 16 that is not larger than the size goes to `mi_malloc` / `mi_zalloc` /
//! `mi_realloc`; only the rare larger alignment (a cache-line-padded counter) takes the
//! aligned calls. Freeing is `mi_free` for both.
//!
//! The `unsafe` of an allocator lives here, in a crate of its own, so the `switchyard`
//! binary's crate keeps `#![forbid(unsafe_code)]`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned};

/// The alignment every `mi_malloc` block of at least this size has (mimalloc's
/// `MI_MAX_ALIGN_SIZE` on 64-bit targets).
const MALLOC_ALIGN: usize = 16;

/// mimalloc, through its plain entry points wherever they give the alignment asked for.
pub struct Allocator;

/// Whether a plain (unaligned) mimalloc call already gives `align` for `size` bytes.
#[inline]
fn plain_call_aligns(size: usize, align: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

// SAFETY: each method forwards to the mimalloc call with the same contract (a block of
// at least `size` bytes at the layout's alignment, or null), choosing the plain call only
// when mimalloc guarantees that alignment for it; every block, however allocated, is
// freed by `mi_free`, which takes both.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain_call_aligns(layout.size(), layout.align()) {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain_call_aligns(layout.size(), layout.align()) {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from one of the calls above.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; a block from either call may be resized by either.
        unsafe {
            if plain_call_aligns(new_size, layout.align()) {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class the proxy and compile touch (tiny to several pages), at every
    /// alignment Rust types ask for and a few larger ones: the block is aligned, writable
    /// to its end, and a resize keeps its bytes.
    #[test]
    fn every_block_has_its_alignment_and_a_resize_keeps_the_bytes() {
        let sizes = [1usize, 7, 8, 15, 16, 24, 40, 48, 100, 1000, 1024, 1025, 1500, 4096, 5000, 70_000, 1 << 20];
        for &size in &sizes {
            for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
                let Ok(layout) = Layout::from_size_align(size.next_multiple_of(align), align) else { continue };
                // SAFETY: a non-zero size; each block is freed with the layout it was made with.
                unsafe {
                    let p = Allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {} align {align}", layout.size());
                    for i in 0..layout.size() {
                        p.add(i).write(i as u8);
                    }
                    let grown = layout.size() * 3 + 5;
                    let q = Allocator.realloc(p, layout, grown);
                    assert_eq!(q as usize % align, 0, "grown to {grown} align {align}");
                    assert!((0..layout.size()).all(|i| q.add(i).read() == i as u8), "realloc kept the bytes");
                    Allocator.dealloc(q, Layout::from_size_align(grown, align).unwrap());
                    let z = Allocator.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..layout.size()).all(|i| z.add(i).read() == 0), "zeroed");
                    Allocator.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn the_plain_calls_are_taken_only_where_malloc_gives_the_alignment() {
        assert!(plain_call_aligns(24, 8));
        assert!(plain_call_aligns(2048, 16));
        assert!(!plain_call_aligns(64, 32), "a cache-line-padded value takes the aligned call");
        assert!(!plain_call_aligns(8, 16), "a block smaller than its alignment may sit at 8 bytes");
    }
}
