//! `pause ID` / `resume ID`: freeze or thaw every process of the container through the freezer cgroup.

use super::{Args, Globals, e};

pub fn run(g: &Globals, argv: &[String], frozen: bool) -> Result<i32, String> {
    let a = Args::parse(argv, &[]);
    crate::container::pause(&g.root, &a.id()?, frozen).map_err(e)?;
    Ok(0)
}
