//! The `segvault` binary: everything is in the library ([`segvault::cli`]).

fn main() {
    std::process::exit(segvault::cli::run());
}
