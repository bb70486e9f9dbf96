//! `state ID`: the OCI state JSON, indented as runc prints it.

use super::{Args, Globals, e};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(argv, &[]);
    let v = crate::container::state(&g.root, &a.id()?).map_err(e)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&v).map_err(|x| x.to_string())?
    );
    Ok(0)
}
