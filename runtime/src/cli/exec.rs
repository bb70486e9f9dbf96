//! `exec [--process FILE] [--detach] [--pid-file FILE] [--console-socket SOCK] [--tty] [--cwd DIR] [--env K=V]...
//! [--user UID[:GID]] ID [ARGS...]`: the process comes from `--process` (an OCI process JSON) or from the arguments.

use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::{Args, Globals, e};
use crate::exec::{ExecOptions, exec};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(
        argv,
        &[
            "--process",
            "-p",
            "--pid-file",
            "--console-socket",
            "--cwd",
            "--env",
            "-e",
            "--user",
            "-u",
            "--cap",
            "-c",
            "--preserve-fds",
            "--process-label",
            "--apparmor",
            "--cgroup",
        ],
    );
    let id = a.id()?;
    let mut process: Process = match a.value(&["--process", "-p"]) {
        Some(path) => {
            let data = std::fs::read(&path).map_err(|x| format!("read {path}: {x}"))?;
            serde_json::from_slice(&data).map_err(|x| format!("parse {path}: {x}"))?
        }
        None => {
            let args: Vec<String> = a.positional[1..].to_vec();
            if args.is_empty() {
                return Err("exec needs --process or a command".into());
            }
            // Start from the container's own process spec, as runc does, and override.
            let st = crate::state::ContainerState::load(&g.root, &id).map_err(e)?;
            let spec = crate::container::load_spec(&st.bundle).map_err(e)?;
            let mut p = spec.process().clone().unwrap_or_default();
            p.set_args(Some(args));
            p.set_terminal(Some(a.flag(&["--tty", "-t"])));
            if let Some(cwd) = a.value(&["--cwd"]) {
                p.set_cwd(PathBuf::from(cwd));
            }
            let mut env = p.env().clone().unwrap_or_default();
            env.extend(a.values(&["--env", "-e"]));
            p.set_env(Some(env));
            if let Some(u) = a.value(&["--user", "-u"]) {
                let (uid, gid) = u.split_once(':').unwrap_or((u.as_str(), "0"));
                let user = p.user_mut();
                user.set_uid(uid.parse().map_err(|_| format!("bad uid {uid}"))?);
                user.set_gid(gid.parse().map_err(|_| format!("bad gid {gid}"))?);
            }
            p
        }
    };
    if a.flag(&["--no-new-privs"]) {
        process.set_no_new_privileges(Some(true));
    }
    let opts = ExecOptions {
        root: g.root.clone(),
        id,
        process,
        detach: a.flag(&["--detach", "-d"]),
        pid_file: a.value(&["--pid-file"]).map(PathBuf::from),
        console_socket: a.value(&["--console-socket"]).map(PathBuf::from),
        inherit_tty: false,
    };
    exec(&opts).map_err(e)
}
