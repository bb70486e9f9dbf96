//! The `berth-runtime` command line: a drop-in for runc as containerd's shim and CRI-O drive it.
//!
//! Global flags (before the command): `--root DIR` (default `/run/berth-runtime`), `--log FILE`,
//! `--log-format text|json`, `--systemd-cgroup`, `--debug`. Commands: `create`, `start`, `state`, `kill`, `delete`,
//! `exec`, `update`, `ps`, `pause`, `resume`, `features`, `list`. Errors go to stderr and, with `--log`, to the log file (one JSON object per line with
//! `--log-format json`, as runc writes them and the shim reads them back).

mod create;
mod delete;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod start;
mod state;
mod update;

use std::io::Write;
use std::path::PathBuf;

/// Flags every command sees.
#[derive(Debug, Clone)]
pub struct Globals {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_json: bool,
    pub systemd_cgroup: bool,
}

/// A command's own arguments: `--flag value`, `--flag=value`, bare flags and positionals.
pub struct Args {
    flags: Vec<(String, Option<String>)>,
    pub positional: Vec<String>,
}

impl Args {
    /// Parse `argv`; `with_value` names the flags that take a value (all spellings, e.g. `--bundle`, `-b`).
    fn parse(argv: &[String], with_value: &[&str]) -> Self {
        let mut flags = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            if a == "--" {
                positional.extend(argv[i + 1..].iter().cloned());
                break;
            }
            if a.starts_with('-') && a.len() > 1 && positional.is_empty() {
                if let Some((k, v)) = a.split_once('=') {
                    flags.push((k.to_string(), Some(v.to_string())));
                } else if with_value.contains(&a.as_str()) {
                    flags.push((a.clone(), argv.get(i + 1).cloned()));
                    i += 1;
                } else {
                    flags.push((a.clone(), None));
                }
            } else {
                positional.push(a.clone());
            }
            i += 1;
        }
        Args { flags, positional }
    }

    /// Value of the first of `names` present.
    pub fn value(&self, names: &[&str]) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| names.contains(&k.as_str()))
            .and_then(|(_, v)| v.clone())
    }

    /// All values of `names`, in order.
    pub fn values(&self, names: &[&str]) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    /// True when a bare flag is present (or `--flag=true`).
    pub fn flag(&self, names: &[&str]) -> bool {
        self.flags
            .iter()
            .any(|(k, v)| names.contains(&k.as_str()) && v.as_deref().is_none_or(|v| v != "false"))
    }

    /// The container id (first positional).
    pub fn id(&self) -> Result<String, String> {
        self.positional
            .first()
            .cloned()
            .ok_or_else(|| "container id is required".to_string())
    }
}

const GLOBAL_WITH_VALUE: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless"];

/// Entry point: parse, dispatch, report errors; returns the process exit code.
pub fn main(argv: Vec<String>) -> i32 {
    let mut i = 1;
    let mut g = Globals {
        root: PathBuf::from("/run/berth-runtime"),
        log: None,
        log_json: false,
        systemd_cgroup: false,
    };
    while i < argv.len() && argv[i].starts_with('-') {
        let (k, inline) = match argv[i].split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (argv[i].clone(), None),
        };
        let mut val = || {
            inline.clone().or_else(|| {
                i += 1;
                argv.get(i).cloned()
            })
        };
        match k.as_str() {
            "--root" => g.root = val().map(PathBuf::from).unwrap_or(g.root.clone()),
            "--log" => g.log = val().map(PathBuf::from),
            "--log-format" => g.log_json = val().as_deref() == Some("json"),
            "--systemd-cgroup" => g.systemd_cgroup = true,
            "--version" | "-v" => {
                println!(
                    "berth-runtime version {}\nspec: 1.2.0",
                    env!("CARGO_PKG_VERSION")
                );
                return 0;
            }
            k if GLOBAL_WITH_VALUE.contains(&k) => {
                val();
            }
            _ => {}
        }
        i += 1;
    }
    let Some(cmd) = argv.get(i).cloned() else {
        eprintln!(
            "usage: berth-runtime [--root DIR] create|start|state|kill|delete|exec|update|ps|pause|resume|features|list ..."
        );
        return 2;
    };
    let rest = &argv[i + 1..];
    let res: Result<i32, String> = match cmd.as_str() {
        "create" => create::run(&g, rest),
        "start" => start::run(&g, rest),
        "state" => state::run(&g, rest),
        "kill" => kill::run(&g, rest),
        "delete" => delete::run(&g, rest),
        "exec" => exec::run(&g, rest),
        "features" => features::run(&g, rest),
        "list" => list::run(&g, rest),
        "update" => update::run(&g, rest),
        "ps" => ps::run(&g, rest),
        "pause" => pause::run(&g, rest, true),
        "resume" => pause::run(&g, rest, false),
        other => Err(format!("unknown command {other:?}")),
    };
    match res {
        Ok(code) => code,
        Err(msg) => {
            report(&g, &msg);
            1
        }
    }
}

fn report(g: &Globals, msg: &str) {
    eprintln!("berth-runtime: {msg}");
    let Some(path) = &g.log else { return };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let now = crate::util::rfc3339_nanos(crate::util::now_nanos());
    let line = if g.log_json {
        serde_json::json!({"level": "error", "msg": msg, "time": now}).to_string()
    } else {
        format!("time=\"{now}\" level=error msg=\"{msg}\"")
    };
    let _ = writeln!(f, "{line}");
}

/// Map a crate error to the CLI's string error.
fn e(err: crate::Error) -> String {
    err.to_string()
}

/// Parse a signal given as a number, `KILL` or `SIGKILL`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_forms() {
        let v: Vec<String> = ["--bundle", "/b", "--pid-file=/p", "-d", "id1", "--x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = Args::parse(&v, &["--bundle", "-b", "--pid-file"]);
        assert_eq!(a.value(&["--bundle", "-b"]).as_deref(), Some("/b"));
        assert_eq!(a.value(&["--pid-file"]).as_deref(), Some("/p"));
        assert!(a.flag(&["-d"]));
        assert_eq!(a.positional, vec!["id1", "--x"]);
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("TERM"), Ok(15));
        assert_eq!(parse_signal("SIGKILL"), Ok(9));
        assert!(parse_signal("NOPE").is_err());
    }
}
