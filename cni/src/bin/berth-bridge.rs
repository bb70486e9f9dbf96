//! The `berth-bridge` CNI plugin executable.
fn main() {
    berth_cni::plugins::run(berth_cni::plugins::bridge::Bridge)
}
