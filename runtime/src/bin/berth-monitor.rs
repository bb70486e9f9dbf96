//! `berth-monitor`: the per-container monitor (see `berth_runtime::monitor`).

fn main() {
    std::process::exit(berth_runtime::monitor::main(std::env::args().collect()));
}
