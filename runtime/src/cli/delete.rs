//! `delete [--force] ID`.

use super::{Args, Globals, e};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(argv, &[]);
    crate::container::delete(&g.root, &a.id()?, a.flag(&["--force", "-f"])).map_err(e)?;
    Ok(0)
}
