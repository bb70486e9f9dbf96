//! The `berth-portmap` CNI plugin executable.
fn main() {
    berth_cni::plugins::run(berth_cni::plugins::portmap::Portmap)
}
