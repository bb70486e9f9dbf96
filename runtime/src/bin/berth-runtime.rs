//! `berth-runtime`: the built-in OCI runtime's runc-compatible command line.

fn main() {
    std::process::exit(berth_runtime::cli::main(std::env::args().collect()));
}
