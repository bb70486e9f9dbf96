//! `kill [--all] ID [SIGNAL]` (default SIGTERM).

use super::{Args, Globals, e, parse_signal};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(argv, &[]);
    let sig = parse_signal(a.positional.get(1).map(String::as_str).unwrap_or("TERM"))?;
    crate::container::kill(&g.root, &a.id()?, sig, a.flag(&["--all", "-a"])).map_err(e)?;
    Ok(0)
}
