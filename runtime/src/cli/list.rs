//! `list`: ids and statuses under `--root`.

use super::{Args, Globals};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let _ = Args::parse(argv, &["--format", "-f"]);
    println!("ID\tPID\tSTATUS");
    for id in crate::state::list(&g.root) {
        if let Ok(st) = crate::state::ContainerState::load(&g.root, &id) {
            println!("{id}\t{}\t{}", st.pid, st.status(&g.root));
        }
    }
    Ok(0)
}
