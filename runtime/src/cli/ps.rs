//! `ps [--format table|json] ID`: the container's PIDs (`json` is what containerd reads).

use super::{Args, Globals, e};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(argv, &["--format", "-f"]);
    let pids = crate::container::pids(&g.root, &a.id()?).map_err(e)?;
    if a.value(&["--format", "-f"]).as_deref() == Some("json") {
        println!(
            "{}",
            serde_json::to_string(&pids).map_err(|x| x.to_string())?
        );
    } else {
        println!("PID");
        for p in pids {
            println!("{p}");
        }
    }
    Ok(0)
}
