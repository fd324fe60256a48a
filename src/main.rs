//! The `segvault` binary: the command line ([`cli`]) over the `segvault-core` library
//! (logdir, archive, restore) and the `segvault-format` crate (Kafka's on-disk formats).

mod cli;

fn main() {
    std::process::exit(cli::run());
}
