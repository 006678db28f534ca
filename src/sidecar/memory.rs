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
//! (purging freed pages 10 ms later, and only when the allocator is next busy; arenas committed
//! up front) `whc serve` held 64–95 MiB after starting on 10,000 webhooks
//! (`examples/big_rules`) instead of glibc's 50 MiB: [`configure`] purges at once, arenas are
//! committed on demand (`.cargo/config.toml`), 49 MiB, and [`give_back`] collects what the
//! compiling thread freed.
//! SQLite allocates through glibc's malloc still: `malloc_trim` returns its free heaps.
#![allow(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers, from `mi_option_e` in its v2 `mimalloc.h` (the crate names only
/// some of them); `Cargo.lock` pins the version, and a test reads them back.
mod option {
    /// Whether arenas are committed when reserved (mimalloc's default, 2: on systems that
    /// overcommit, as Linux); `.cargo/config.toml` makes it 0 when mimalloc is compiled.
    #[cfg(test)]
    pub const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    /// How long freed memory waits before it is returned to the system, in milliseconds.
    pub const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
}

/// Sets the allocator up to return freed memory at once; call first thing in `main`.
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
pub fn configure() {
    // mimalloc read its options when it started, before `main`: set, not set a default.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it takes
        // no pointer and is safe from any thread.
        unsafe { libmimalloc_sys::mi_option_set(option::PURGE_DELAY, 0) }
    }
}

/// Returns the memory the calling thread freed, and the free memory of glibc's heaps, to the
/// system; nothing elsewhere. Takes a few milliseconds after a compilation.
pub fn give_back() {
    // SAFETY: `mi_collect` only walks and purges mimalloc's own heap of the calling thread; it
    // takes no pointer and is safe to call at any time.
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
    fn the_option_numbers_are_mimallocs() {
        configure();
        // SAFETY: reads an integer from mimalloc's option table.
        let (purge, eager) = unsafe {
            (
                libmimalloc_sys::mi_option_get(option::PURGE_DELAY),
                libmimalloc_sys::mi_option_get(option::ARENA_EAGER_COMMIT),
            )
        };
        // Unless the environment set them, both read back as set here and in
        // `.cargo/config.toml`; mimalloc's own defaults are 10 and 2, so a wrong number, or a
        // build that missed the compile-time default, reads back something else.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge, 0);
        }
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(eager, 0);
        }
        // Another option's default tells the numbering apart from a shifted one: `verbose`
        // (2) is off, `eager_commit` (3) on.
        // SAFETY: as above.
        let (verbose, eager_commit) = unsafe {
            (
                libmimalloc_sys::mi_option_get(2),
                libmimalloc_sys::mi_option_get(3),
            )
        };
        if std::env::var_os("MIMALLOC_VERBOSE").is_none() {
            assert_eq!(verbose, 0);
        }
        if std::env::var_os("MIMALLOC_EAGER_COMMIT").is_none() {
            assert_eq!(eager_commit, 1);
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
