//! The monitor's status file (`<state dir>/status`): `key=value` lines, replaced atomically (temp file + rename).
//!
//! Written once when the container is created (pid, pid_start) and once when it exits (adding exit_code,
//! exit_signal, finished_at in nanoseconds since the epoch, oom_killed). A daemon that restarts reads it back.

use std::path::Path;

/// What the monitor knows about its container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitStatus {
    pub pid: i32,
    pub pid_start: u64,
    /// The monitor itself (pid and start time), so a reader can tell "still running" from "monitor lost".
    pub monitor_pid: i32,
    pub monitor_start: u64,
    /// Set once the container exited.
    pub exited: bool,
    /// Exit code; 128+signal when killed by a signal (what the CRI reports).
    pub exit_code: i32,
    /// The signal that killed it, 0 if it exited.
    pub exit_signal: i32,
    pub finished_at_nanos: i128,
    pub oom_killed: bool,
}

impl ExitStatus {
    /// Serialize.
    pub fn render(&self) -> String {
        let mut s = format!(
            "pid={}\npid_start={}\nmonitor_pid={}\nmonitor_start={}\n",
            self.pid, self.pid_start, self.monitor_pid, self.monitor_start
        );
        if self.exited {
            s.push_str(&format!(
                "exit_code={}\nexit_signal={}\nfinished_at={}\noom_killed={}\n",
                self.exit_code, self.exit_signal, self.finished_at_nanos, self.oom_killed
            ));
        }
        s
    }

    /// Parse; unknown keys are ignored so the format can grow.
    pub fn parse(text: &str) -> Self {
        let mut st = ExitStatus::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "pid" => st.pid = v.parse().unwrap_or(0),
                "pid_start" => st.pid_start = v.parse().unwrap_or(0),
                "monitor_pid" => st.monitor_pid = v.parse().unwrap_or(0),
                "monitor_start" => st.monitor_start = v.parse().unwrap_or(0),
                "exit_code" => {
                    st.exit_code = v.parse().unwrap_or(-1);
                    st.exited = true;
                }
                "exit_signal" => st.exit_signal = v.parse().unwrap_or(0),
                "finished_at" => st.finished_at_nanos = v.parse().unwrap_or(0),
                "oom_killed" => st.oom_killed = v == "true",
                _ => {}
            }
        }
        st
    }

    /// True while the monitor that writes this file still runs.
    pub fn monitor_alive(&self) -> bool {
        self.monitor_pid > 0
            && crate::util::pidfd_for(self.monitor_pid, self.monitor_start)
                .ok()
                .flatten()
                .is_some()
    }

    /// Read the status file; None if absent.
    pub fn read(path: &Path) -> Option<Self> {
        std::fs::read_to_string(path).ok().map(|t| Self::parse(&t))
    }

    /// Write atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::util::write_atomic(path, self.render().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let s = ExitStatus {
            pid: 7,
            pid_start: 99,
            monitor_pid: 5,
            monitor_start: 6,
            exited: true,
            exit_code: 137,
            exit_signal: 9,
            finished_at_nanos: 1_700_000_000_000_000_001,
            oom_killed: true,
        };
        assert_eq!(ExitStatus::parse(&s.render()), s);
        let running = ExitStatus {
            pid: 7,
            pid_start: 99,
            ..Default::default()
        };
        assert_eq!(ExitStatus::parse(&running.render()), running);
    }
}
