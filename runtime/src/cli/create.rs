//! `create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] ID`.

use std::path::PathBuf;

use super::{Args, Globals, e};
use crate::container::{CreateOptions, create};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(
        argv,
        &[
            "--bundle",
            "-b",
            "--pid-file",
            "--console-socket",
            "--preserve-fds",
        ],
    );
    let opts = CreateOptions {
        id: a.id()?,
        bundle: a
            .value(&["--bundle", "-b"])
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
        root: g.root.clone(),
        pid_file: a.value(&["--pid-file"]).map(PathBuf::from),
        console_socket: a.value(&["--console-socket"]).map(PathBuf::from),
        systemd_cgroup: g.systemd_cgroup,
        preserve_fds: a
            .value(&["--preserve-fds"])
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--preserve-fds: not a number: {v}"))
            })
            .transpose()?
            .unwrap_or(0),
    };
    create(&opts).map_err(e)?;
    Ok(0)
}
