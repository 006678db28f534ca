//! The `whc` command line.
#![forbid(unsafe_code)]

/// mimalloc: a post makes many small allocations, a third the cost of glibc's malloc here.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    whc::cli::main()
}
