//! `berth-pinns`: creates a pod's namespaces and pins them to files (see `berth_runtime::pinns`).

fn main() {
    std::process::exit(berth_runtime::pinns::main(std::env::args().collect()));
}
