//! `start ID`: release a created container's init.

use super::{Args, Globals, e};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(argv, &[]);
    crate::container::start(&g.root, &a.id()?).map_err(e)?;
    Ok(0)
}
