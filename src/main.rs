//! The `whc` command line.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    whc::cli::main()
}
