//! `pin-ns --dir DIR [--net] [--ipc] [--uts] [--hostname NAME]` (Berth's own, not runc's): create pod namespaces
//! and pin them as bind mounts under DIR; prints `{"net": "...", "ipc": "...", "uts": "..."}`.

use std::path::PathBuf;

use super::{Args, Globals};
use crate::namespaces::{PinOptions, pin};

pub fn run(_g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(argv, &["--dir", "--hostname"]);
    let dir = PathBuf::from(a.value(&["--dir"]).ok_or("--dir is required")?);
    let opts = PinOptions {
        net: a.flag(&["--net"]),
        ipc: a.flag(&["--ipc"]),
        uts: a.flag(&["--uts"]),
        hostname: a.value(&["--hostname"]),
    };
    let p = pin(&dir, &opts).map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({"net": p.net, "ipc": p.ipc, "uts": p.uts})
    );
    Ok(0)
}
