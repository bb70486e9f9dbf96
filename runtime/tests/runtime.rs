//! The built-in runtime against a real kernel, as root. Each test builds a busybox bundle in a temp dir and runs it
//! through the same Handler API the daemon uses (monitor + berth-runtime).

mod common;

use std::time::Duration;

use berth_runtime::handler::{ExecRequest, Handler, Phase};
use common::{Bundle, Env};
use serde_json::json;

#[test]
fn sees_itself_as_pid_1_with_own_hostname_and_mounts() {
    let env = Env::builtin();
    let script = "echo $$; hostname; readlink /proc/self/ns/mnt; cut -d' ' -f5 /proc/self/mountinfo | sort | tr '\\n' ' '";
    let b = Bundle::new("pid1", &["/bin/sh", "-c", script]);
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "h-pid1");
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").expect("readlink");
    assert_ne!(
        lines[2],
        host_ns.to_string_lossy(),
        "container shares the host mount namespace"
    );
    let mountpoints: Vec<&str> = lines[3].split_whitespace().collect();
    for want in ["/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"] {
        assert!(
            mountpoints.contains(&want),
            "{want} missing from {mountpoints:?}"
        );
    }
    assert!(
        !mountpoints
            .iter()
            .any(|m| m.starts_with("/work") || m.starts_with("/tmp/berth")),
        "{mountpoints:?}"
    );
}

#[test]
fn readonly_rootfs_refuses_writes() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "rofs",
        &[
            "/bin/sh",
            "-c",
            "touch /newfile && echo wrote; touch /tmp/x 2>/dev/null; exit 0",
        ],
    );
    b.config["root"]["readonly"] = json!(true);
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0);
    assert!(!out.contains("wrote"), "write succeeded: {out}");
    assert!(err.contains("Read-only file system"), "stderr: {err}");
    assert!(!b.path().join("rootfs/newfile").exists());
}

#[test]
fn dropped_capabilities_are_absent() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "caps",
        &[
            "/bin/sh",
            "-c",
            "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status",
        ],
    );
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []});
    let (st, out, _) = env.run(&b);
    assert_eq!(st.exit_code, 0);
    // CAP_CHOWN = bit 0, CAP_KILL = bit 5.
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            out.contains(&format!("{set}:\t0000000000000021")),
            "{set} in {out}"
        );
    }
}

#[test]
fn user_and_groups_apply() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "user",
        &[
            "/bin/sh",
            "-c",
            "grep -E '^(Uid|Gid|Groups)' /proc/self/status",
        ],
    );
    b.config["process"]["user"] = json!({"uid": 1234, "gid": 2345, "additionalGids": [10, 20]});
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    assert!(out.contains("Uid:\t1234\t1234\t1234\t1234"), "{out}");
    assert!(out.contains("Gid:\t2345\t2345\t2345\t2345"), "{out}");
    assert!(out.contains("Groups:\t10 20"), "{out}");
}

#[test]
fn masked_paths_are_empty() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "mask",
        &[
            "/bin/sh",
            "-c",
            "wc -c < /proc/version; ls /sys/firmware | wc -l",
        ],
    );
    b.config["linux"]["maskedPaths"] = json!(["/proc/version", "/sys/firmware"]);
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0"]);
}

#[test]
fn memory_limit_oom_kills_a_hog() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "oom",
        &[
            "/bin/dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=4",
        ],
    );
    b.config["linux"]["resources"]["memory"] =
        json!({"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024});
    let (st, _, err) = env.run(&b);
    assert_eq!(st.exit_code, 137, "stderr: {err}");
    assert_eq!(st.exit_signal, 9);
    assert!(st.oom_killed, "status does not say OOM: {st:?}");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let env = Env::builtin();
    let script = "i=0; while [ $i -lt 30 ]; do sleep 3 & i=$((i+1)); done; echo started";
    let mut b = Bundle::new("pids", &["/bin/sh", "-c", script]);
    b.config["linux"]["resources"]["pids"] = json!({"limit": 8});
    let (_st, _out, err) = env.run(&b);
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "stderr: {err}"
    );
}

#[test]
fn seccomp_denies_a_syscall() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "seccomp",
        &["/bin/sh", "-c", "mkdir /tmp/d && echo made; echo after"],
    );
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0);
    assert!(!out.contains("made") && out.contains("after"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn log_lines_are_byte_exact_cri_format() {
    let env = Env::builtin();
    // A 100 KiB line, an empty line, a line without newline, and stderr.
    let script =
        "head -c 102400 /dev/zero | tr '\\0' x; echo; echo; printf 'tab\\there'; echo oops >&2";
    let b = Bundle::new("log", &["/bin/sh", "-c", script]);
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0);
    let mut want = "x".repeat(102_400);
    want.push_str("\n\ntab\there");
    assert_eq!(out.len(), want.len());
    assert!(out == want, "stdout differs");
    assert_eq!(err, "oops\n");
    let log = std::fs::read_to_string(env.log_path(&b.id)).expect("log");
    for line in log.lines() {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(parts.len(), 4, "{line:.80}");
        assert_eq!(parts[0].len(), 30, "timestamp {}", parts[0]);
        assert!(parts[0].ends_with('Z') && parts[0].as_bytes()[10] == b'T');
        assert!(parts[1] == "stdout" || parts[1] == "stderr");
        assert!(parts[2] == "P" || parts[2] == "F");
    }
    assert!(
        log.lines().filter(|l| l.contains(" stdout P ")).count() >= 2,
        "long line not split"
    );
}

#[test]
fn exec_sees_the_same_namespaces() {
    let env = Env::builtin();
    let b = Bundle::new("exec", &["/bin/sleep", "30"]);
    let created = env.create(&b).expect("create");
    env.handler.start(&b.id).expect("start");
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "for n in pid net mnt uts ipc; do readlink /proc/self/ns/$n; done; hostname; echo $$"
            .into(),
    ]));
    p.set_no_new_privileges(Some(false));
    let out = env
        .handler
        .exec_sync(
            &b.id,
            &ExecRequest {
                process: p,
                stdin: None,
                timeout: Some(Duration::from_secs(10)),
            },
        )
        .expect("exec");
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for (i, n) in ["pid", "net", "mnt", "uts", "ipc"].iter().enumerate() {
        let init = std::fs::read_link(format!("/proc/{}/ns/{n}", created.pid)).expect("readlink");
        assert_eq!(lines[i], init.to_string_lossy(), "{n}");
    }
    assert_eq!(lines[5], "h-exec");
    assert_ne!(lines[6], "1", "exec process must not be init");
    // Exit codes come back.
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), "exit 42".into()]));
    let out = env
        .handler
        .exec_sync(
            &b.id,
            &ExecRequest {
                process: p,
                stdin: None,
                timeout: None,
            },
        )
        .expect("exec");
    assert_eq!(out.exit_code, 42);
    env.handler.kill(&b.id, 9, false).expect("kill");
    let st = env
        .handler
        .wait(&b.id, Some(Duration::from_secs(5)))
        .expect("wait");
    assert_eq!(
        (st.phase, st.exit_code, st.exit_signal),
        (Phase::Stopped, 137, 9)
    );
}

#[test]
fn exec_sync_times_out() {
    let env = Env::builtin();
    let b = Bundle::new("exectimeout", &["/bin/sleep", "30"]);
    env.create(&b).expect("create");
    env.handler.start(&b.id).expect("start");
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(vec!["/bin/sleep".into(), "20".into()]));
    let t = std::time::Instant::now();
    let out = env
        .handler
        .exec_sync(
            &b.id,
            &ExecRequest {
                process: p,
                stdin: None,
                timeout: Some(Duration::from_millis(300)),
            },
        )
        .expect("exec");
    assert!(out.timed_out && t.elapsed() < Duration::from_secs(5));
}

#[test]
fn monitor_survives_its_parent_and_records_the_exit() {
    let env = Env::builtin();
    let b = Bundle::new("survive", &["/bin/sh", "-c", "sleep 0.5; exit 7"]);
    b.write();
    env.ids.borrow_mut().push(b.id.clone());
    let state_dir = env.handler.cfg.state_root.join(&b.id);
    std::fs::create_dir_all(&state_dir).expect("mkdir");
    std::fs::write(state_dir.join("cgroup"), format!("/berth-test/{}", b.id)).expect("cgroup file");
    // A stand-in daemon: a shell that starts the monitor and then is killed with SIGKILL.
    let args = berth_runtime::monitor::MonitorArgs {
        id: b.id.clone(),
        state_dir: state_dir.clone(),
        bundle: b.path().to_path_buf(),
        log_path: env.log_path(&b.id),
        runtime: common::RUNTIME.into(),
        runtime_args: vec![
            "--root".into(),
            env.handler.cfg.runtime_root.display().to_string(),
        ],
        oom_file: None,
        ..Default::default()
    };
    let cmdline = std::iter::once(common::MONITOR.to_string())
        .chain(args.to_argv())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut daemon = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{cmdline} > {}/report; sleep 60",
            state_dir.display()
        ))
        .spawn()
        .expect("spawn stand-in daemon");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(state_dir.join("report"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "monitor did not report"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.kill().expect("kill -9 daemon");
    daemon.wait().expect("reap daemon");
    // A restarted daemon: a new handler on the same state root knows the container.
    let restarted = berth_runtime::handler::OciHandler::new(env.handler.cfg.clone());
    assert_eq!(restarted.list(), vec![b.id.clone()]);
    assert_eq!(restarted.state(&b.id).expect("state").phase, Phase::Created);
    restarted.start(&b.id).expect("start after daemon death");
    let st = restarted
        .wait(&b.id, Some(Duration::from_secs(10)))
        .expect("wait");
    assert_eq!((st.phase, st.exit_code), (Phase::Stopped, 7));
    assert!(st.finished_at > st.started_at && st.started_at > 0);
}

#[test]
fn cli_lifecycle_matches_runc_shape() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Bundle::new("cli", &["/bin/sleep", "30"]);
    b.write();
    // Clean up even when an assertion fails half-way.
    struct Cleanup(std::path::PathBuf, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new(common::RUNTIME)
                .arg("--root")
                .arg(&self.0)
                .args(["delete", "--force", &self.1])
                .status();
        }
    }
    let _cleanup = Cleanup(root.path().to_path_buf(), b.id.clone());
    let rt = |args: &[&str]| {
        std::process::Command::new(common::RUNTIME)
            .arg("--root")
            .arg(root.path())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run berth-runtime")
    };
    let bundle = b.path().display().to_string();
    let pidfile = b.path().join("pid").display().to_string();
    // Init inherits create's stdio: give it none, or output() would wait for the container.
    let created = std::process::Command::new(common::RUNTIME)
        .arg("--root")
        .arg(root.path())
        .args(["create", "--bundle", &bundle, "--pid-file", &pidfile, &b.id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("create");
    assert!(created.success());
    let state: serde_json::Value =
        serde_json::from_slice(&rt(&["state", &b.id]).stdout).expect("state json");
    assert_eq!(state["status"], "created");
    assert_eq!(
        state["pid"].to_string(),
        std::fs::read_to_string(&pidfile).expect("pid file")
    );
    assert!(rt(&["start", &b.id]).status.success());
    let state: serde_json::Value =
        serde_json::from_slice(&rt(&["state", &b.id]).stdout).expect("state json");
    assert_eq!(state["status"], "running");
    assert!(
        !rt(&["delete", &b.id]).status.success(),
        "delete of a running container must fail"
    );
    let pids: Vec<i32> =
        serde_json::from_slice(&rt(&["ps", "--format", "json", &b.id]).stdout).expect("ps json");
    assert_eq!(pids, vec![state["pid"].as_i64().expect("pid") as i32]);
    assert!(rt(&["pause", &b.id]).status.success());
    let paused: serde_json::Value =
        serde_json::from_slice(&rt(&["state", &b.id]).stdout).expect("state json");
    assert_eq!(paused["status"], "paused");
    assert!(rt(&["resume", &b.id]).status.success());
    assert!(
        rt(&["update", "--memory", "50331648", "--pids-limit", "9", &b.id])
            .status
            .success()
    );
    let cg = format!(
        "/sys/fs/cgroup/memory/berth-test/{}/memory.limit_in_bytes",
        b.id
    );
    assert_eq!(
        std::fs::read_to_string(cg).expect("limit").trim(),
        "50331648"
    );
    // exec --detach --pid-file: returns at once, the process runs in the container.
    let epid = b.path().join("exec.pid").display().to_string();
    // The detached process keeps the stdio it was given: give it none, or we would wait for it.
    let detached = std::process::Command::new(common::RUNTIME)
        .arg("--root")
        .arg(root.path())
        .args([
            "exec",
            "--detach",
            "--pid-file",
            &epid,
            &b.id,
            "/bin/sleep",
            "5",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("exec --detach");
    assert!(detached.success());
    let exec_pid: i32 = std::fs::read_to_string(&epid)
        .expect("exec pid")
        .trim()
        .parse()
        .expect("pid");
    let pids: Vec<i32> =
        serde_json::from_slice(&rt(&["ps", "--format", "json", &b.id]).stdout).expect("ps json");
    assert!(pids.contains(&exec_pid), "{pids:?} lacks {exec_pid}");
    let out = rt(&["exec", &b.id, "/bin/sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(rt(&["kill", &b.id, "KILL"]).status.success());
    let out = rt(&["delete", "--force", &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!rt(&["state", &b.id]).status.success());
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/berth-test/{}", b.id)).exists());
}
