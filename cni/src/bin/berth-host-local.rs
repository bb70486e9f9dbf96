//! The `berth-host-local` CNI plugin executable.
fn main() {
    berth_cni::plugins::run(berth_cni::plugins::ipam::HostLocal)
}
