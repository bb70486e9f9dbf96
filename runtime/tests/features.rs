//! Spec features beyond the basics: a cgroup mount with limits visible inside, sysctls, negative oom_score_adj
//! (clamped on this machine), device rules, namespaces joined by path (pod sharing), stats and live updates,
//! kill --all, exec with a pty.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Duration;

use berth_runtime::handler::{ExecRequest, Handler, Phase};
use common::{Bundle, Env};
use serde_json::json;

fn sh(script: &str) -> oci_spec::runtime::Process {
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), script.into()]));
    p.set_no_new_privileges(Some(false));
    p
}

#[test]
fn cgroup_mount_shows_the_containers_limits() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "cgmount",
        &[
            "/bin/sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; touch /sys/fs/cgroup/x 2>&1 | grep -c Read-only",
        ],
    );
    b.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
        }));
    b.config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    b.config["linux"]["resources"]["pids"] = json!({"limit": 77});
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [(64u64 << 20).to_string().as_str(), "77", "1"]
    );
}

#[test]
fn sysctls_apply_in_the_containers_namespaces() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "sysctl",
        &[
            "/bin/sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax",
        ],
    );
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"});
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1", "12345"]);
}

#[test]
fn negative_oom_score_adj_is_clamped_not_fatal() {
    let env = Env::builtin();
    let mut b = Bundle::new("oomadj", &["/bin/cat", "/proc/self/oom_score_adj"]);
    b.config["process"]["oomScoreAdj"] = json!(-998);
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    let v: i32 = out.trim().parse().expect("number");
    // Either the kernel allowed it (CAP_SYS_RESOURCE) or we kept the nearest allowed value.
    assert!(v == -998 || v >= 0, "{v}");
}

#[test]
fn device_rules_deny_access() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "devices",
        &[
            "/bin/sh",
            "-c",
            "head -c1 /dev/null && echo null-ok; head -c1 /dev/sda 2>&1; echo done",
        ],
    );
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 432}]);
    b.config["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn containers_join_pod_namespaces_by_path() {
    let env = Env::builtin();
    let pod = Bundle::new("pod", &["/bin/sleep", "30"]);
    let created = env.create(&pod).expect("create pod");
    env.handler.start(&pod.id).expect("start pod");
    let mut b = Bundle::new(
        "member",
        &[
            "/bin/sh",
            "-c",
            "for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname",
        ],
    );
    for ns in b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
    {
        let t = ns["type"].as_str().unwrap_or("").to_string();
        let name = match t.as_str() {
            "network" => "net",
            "ipc" => "ipc",
            "uts" => "uts",
            _ => continue,
        };
        ns["path"] = json!(format!("/proc/{}/ns/{name}", created.pid));
    }
    b.config.as_object_mut().expect("object").remove("hostname");
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["net", "ipc", "uts"].iter().enumerate() {
        let want = std::fs::read_link(format!("/proc/{}/ns/{n}", created.pid)).expect("readlink");
        assert_eq!(lines[i], want.to_string_lossy());
    }
    assert_eq!(lines[3], "h-pod");
}

#[test]
fn exec_without_capabilities_inherits_the_containers() {
    let env = Env::builtin();
    let mut b = Bundle::new("execcaps", &["/bin/sleep", "30"]);
    let caps = json!(["CAP_KILL"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []});
    env.create(&b).expect("create");
    env.handler.start(&b.id).expect("start");
    let mut p = sh("grep ^CapEff /proc/self/status");
    p.set_capabilities(None);
    let out = env
        .handler
        .exec_sync(
            &b.id,
            &ExecRequest {
                process: p,
                stdin: None,
                timeout: Some(Duration::from_secs(5)),
            },
        )
        .expect("exec");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "CapEff:\t0000000000000020\n"
    );
}

#[test]
fn exec_failures_are_errors_not_exit_codes() {
    let env = Env::builtin();
    let b = Bundle::new("execfail", &["/bin/sleep", "30"]);
    env.create(&b).expect("create");
    env.handler.start(&b.id).expect("start");
    let req = |args: &[&str]| {
        let mut p = oci_spec::runtime::Process::default();
        p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        ExecRequest {
            process: p,
            stdin: None,
            timeout: Some(Duration::from_secs(5)),
        }
    };
    let err = env
        .handler
        .exec_sync(&b.id, &req(&["/no/such/program"]))
        .expect_err("must fail");
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    // A program that exits 1 on its own is an exit code, not an error.
    let out = env
        .handler
        .exec_sync(&b.id, &req(&["/bin/false"]))
        .expect("exec");
    assert_eq!(out.exit_code, 1);
    env.handler.kill(&b.id, libc::SIGKILL, false).expect("kill");
    env.handler
        .wait(&b.id, Some(Duration::from_secs(5)))
        .expect("wait");
    assert!(
        env.handler.exec_sync(&b.id, &req(&["/bin/true"])).is_err(),
        "exec into a stopped container"
    );
}

#[test]
fn stats_update_and_kill_all() {
    let env = Env::builtin();
    let b = Bundle::new("stats", &["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"]);
    let created = env.create(&b).expect("create");
    env.handler.start(&b.id).expect("start");
    // Every hierarchy, including systemd's named one (or systemd would count the container as the daemon's).
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", created.pid)).expect("cgroup");
    for line in cgroups.lines() {
        assert!(line.ends_with(&format!("/berth-test/{}", b.id)), "{line}");
    }
    std::thread::sleep(Duration::from_millis(100));
    let s = env.handler.stats(&b.id).expect("stats");
    assert!(s.memory_usage_bytes > 0 && s.cpu_usage_ns > 0, "{s:?}");
    let mut res = oci_spec::runtime::LinuxResources::default();
    let mut mem = oci_spec::runtime::LinuxMemory::default();
    mem.set_limit(Some(48 << 20));
    res.set_memory(Some(mem));
    env.handler.update_resources(&b.id, &res).expect("update");
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/berth-test/{}/memory.limit_in_bytes",
        b.id
    ))
    .expect("read limit");
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    env.handler
        .kill(&b.id, libc::SIGKILL, true)
        .expect("kill --all");
    let st = env
        .handler
        .wait(&b.id, Some(Duration::from_secs(5)))
        .expect("wait");
    assert_eq!((st.phase, st.exit_code), (Phase::Stopped, 137));
    assert!(
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/pids/berth-test/{}/cgroup.procs",
            b.id
        ))
        .unwrap_or_default()
        .trim()
        .is_empty()
    );
}

#[test]
fn exec_with_a_pty_and_streaming_exec() {
    let env = Env::builtin();
    let b = Bundle::new("exectty", &["/bin/sleep", "30"]);
    env.create(&b).expect("create");
    env.handler.start(&b.id).expect("start");
    let mut proc_tty = env
        .handler
        .exec_spawn(&b.id, &sh("test -t 0 && echo tty-yes; exit 5"), true)
        .expect("exec tty");
    let master = proc_tty.pty_master.take().expect("pty master");
    let status = proc_tty.child.wait().expect("wait exec");
    assert_eq!(status.code(), Some(5));
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    // SAFETY: reading from the pty master we own; EIO once the slave side is gone ends the loop.
    loop {
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    assert!(
        String::from_utf8_lossy(&out).contains("tty-yes"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let mut p = env
        .handler
        .exec_spawn(&b.id, &sh("read x; echo got-$x"), false)
        .expect("exec");
    {
        use std::io::Write;
        let mut stdin = p.child.stdin.take().expect("stdin");
        stdin.write_all(b"abc\n").expect("write");
    }
    let mut s = String::new();
    p.child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut s)
        .expect("read");
    assert_eq!(s, "got-abc\n");
    assert!(p.child.wait().expect("wait").success());
    // exec_sync with stdin.
    let out = env
        .handler
        .exec_sync(
            &b.id,
            &ExecRequest {
                process: sh("cat"),
                stdin: Some(b"in".to_vec()),
                timeout: Some(Duration::from_secs(5)),
            },
        )
        .expect("exec_sync");
    assert_eq!(out.stdout, b"in");
}

#[test]
fn pinned_pod_namespaces_are_joined_by_path() {
    let env = Env::builtin();
    let pin_dir = tempfile::tempdir().expect("tempdir");
    struct Unpin(std::path::PathBuf);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = berth_runtime::pinns::unpin(&self.0);
        }
    }
    let _guard = Unpin(pin_dir.path().to_path_buf());
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_berth-pinns"))
        .arg("--dir")
        .arg(pin_dir.path())
        .args(["--net", "--ipc", "--uts", "--hostname", "pod-host"])
        .status()
        .expect("run berth-pinns");
    assert!(status.success(), "berth-pinns failed: {status}");
    let pinned = |kind: &str| Some(pin_dir.path().join(kind));
    let net = pin_dir.path().join("net");
    let mut b = Bundle::new(
        "pinned",
        &[
            "/bin/sh",
            "-c",
            "hostname; readlink /proc/self/ns/net; cat /sys/class/net/lo/operstate",
        ],
    );
    for ns in b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
    {
        let path = match ns["type"].as_str().unwrap_or("") {
            "network" => pinned("net"),
            "ipc" => pinned("ipc"),
            "uts" => pinned("uts"),
            _ => None,
        };
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
    }
    b.config.as_object_mut().expect("object").remove("hostname");
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pod-host");
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&net).expect("stat pinned net").ino();
    assert_eq!(lines[1], format!("net:[{ino}]"));
    assert_eq!(
        lines[2], "unknown",
        "lo is up (operstate of lo reads unknown when up)"
    );
    berth_runtime::pinns::unpin(pin_dir.path()).expect("unpin");
    assert!(!net.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&pin_dir.path().display().to_string()),
        "pinned mounts leaked"
    );
}

#[test]
fn bpf_device_filter_on_the_unified_hierarchy() {
    // The v2 device filter also applies on this hybrid host's /sys/fs/cgroup/unified, which lets us test it here.
    let unified = std::path::Path::new("/sys/fs/cgroup/unified");
    let root = if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup")
    };
    let dir = root.join(format!("berth-bpf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir cgroup");
    struct Rmdir(std::path::PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _guard = Rmdir(dir.clone());
    let rules: Vec<oci_spec::runtime::LinuxDeviceCgroup> = serde_json::from_value(json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
    ]))
    .expect("rules");
    berth_runtime::cgroups::bpf_devices::apply(&dir, &rules).expect("attach filter");
    let script = format!(
        "echo $$ > {}/cgroup.procs && head -c0 /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null && echo zero-read; echo x > /dev/zero || echo zero-write-denied; head -c1 /dev/urandom >/dev/null || echo urandom-denied",
        dir.display()
    );
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "null-ok\nzero-read\nzero-write-denied\nurandom-denied\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
