//! The process's allocator, and handing the memory a rules compilation freed back to the system.
//!
//! **The allocator is mimalloc** (its v2 line). A post makes about a hundred small allocations;
//! glibc's malloc and free took ~15k of the ~79k instructions `whc serve` spent per ingested
//! event, mimalloc takes ~5k (`benches/ingest-callgrind.sh`; docs/performance.md). Declared
//! here, in the library, so the binary, the examples and the tests all run on the allocator
//! that ships.
//!
//! **Giving memory back.** A compilation's syntax trees and parser queues, built on several
//! threads, and an old rule set after a reload, are freed in bulk. With mimalloc's defaults
//! (arenas committed up front) `whc serve` held 64–95 MiB after starting on 10,000 webhooks
//! (`examples/big_rules`) instead of glibc's 50 MiB. Arenas are committed as used instead
//! (`.cargo/config.toml`), and [`give_back`] has mimalloc purge what was freed: 49 MiB after
//! start, 53.5 MiB after 1 to 100 reloads. Purging every free at once (`purge_delay` 0, 49
//! MiB after reloads too) was tried and dropped: under load the memory handed back was
//! faulted in again, ~0.4 page faults per event instead of ~0.1, and ingest was slower by a
//! third. SQLite allocates through glibc's malloc still: `malloc_trim` returns its free heaps.
#![allow(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers, from `mi_option_e` in its v2 `mimalloc.h` (the crate names only
/// some of them); `Cargo.lock` pins the version, and a test reads them back.
#[cfg(test)]
mod option {
    /// Whether arenas are committed when reserved (mimalloc's default, 2: on systems that
    /// overcommit, as Linux); `.cargo/config.toml` makes it 0 when mimalloc is compiled.
    pub const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
}

/// Returns freed memory to the system: mimalloc's, at once rather than after its purge delay,
/// and the free memory of glibc's heaps. Takes a few milliseconds after a compilation.
pub fn give_back() {
    // SAFETY: `mi_collect` only walks mimalloc's own heaps and arenas, collects the calling
    // thread's and purges the arenas' freed memory; it takes no pointer and is safe at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` takes no pointer and only walks glibc's own heaps, under their
        // locks; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimalloc_was_built_to_commit_arenas_as_used() {
        let read = |option| {
            // SAFETY: reads an integer from mimalloc's option table.
            unsafe { libmimalloc_sys::mi_option_get(option) }
        };
        // `.cargo/config.toml` gives the C build (and this crate's) its `CFLAGS`, unless the
        // environment had its own: then mimalloc's default, 2, holds. No `CFLAGS` at all (the
        // file gone) fails to compile; a build that missed the flag, or a wrong option number,
        // reads back something else.
        let flags = env!("CFLAGS");
        let expected = if flags.contains("-DMI_DEFAULT_ARENA_EAGER_COMMIT=0") {
            0
        } else {
            2
        };
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(read(option::ARENA_EAGER_COMMIT), expected);
        }
        // The options around it hold their defaults, so the numbering is not shifted:
        // `verbose` (2) off, `eager_commit` (3) on, `purge_decommits` (5) on.
        if std::env::var_os("MIMALLOC_VERBOSE").is_none() {
            assert_eq!(read(2), 0);
        }
        if std::env::var_os("MIMALLOC_EAGER_COMMIT").is_none() {
            assert_eq!(read(3), 1);
        }
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
            assert_eq!(read(5), 1);
        }
    }

    #[test]
    fn giving_back_after_a_large_free_works() {
        let big: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 4096]).collect();
        drop(big);
        give_back();
        let again = vec![7u8; 1 << 20];
        assert_eq!(again[12345], 7);
    }
}
