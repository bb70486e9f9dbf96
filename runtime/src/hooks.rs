//! OCI hooks: each is a program run with the container's state JSON on stdin; a failure fails the lifecycle step
//! (except poststart and poststop, whose failures the caller only logs).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::HookError;

/// Run `hooks` in order with `state` on stdin.
pub fn run(hooks: &[Hook], state: &str) -> Result<(), HookError> {
    for h in hooks {
        let path = h.path().clone();
        let args = h.args().clone().unwrap_or_default();
        let mut cmd = Command::new(&path);
        if let Some((argv0, rest)) = args.split_first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(argv0).args(rest);
        }
        cmd.env_clear();
        for e in h.env().iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
            path: path.clone(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that ignores stdin may close it early; that is not a failure.
            let _ = stdin.write_all(state.as_bytes());
        }
        let deadline = h
            .timeout()
            .filter(|t| *t > 0)
            .map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => break,
                Ok(Some(st)) => {
                    return Err(HookError::Failed {
                        path,
                        status: st.to_string(),
                    });
                }
                Ok(None) => {}
                Err(source) => return Err(HookError::Spawn { path, source }),
            }
            if let Some((secs, d)) = deadline
                && Instant::now() > d
            {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { path, secs });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}
