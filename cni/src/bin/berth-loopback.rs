//! The `berth-loopback` CNI plugin executable.
fn main() {
    berth_cni::plugins::run(berth_cni::plugins::loopback::Loopback)
}
