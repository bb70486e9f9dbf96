//! The same bundles under the built-in runtime and under runc, through the same monitor: the observable results
//! (exit code, output) must match.

mod common;

use common::{Bundle, Env};
use serde_json::{Value, json};

/// Run `args` with `tweak` applied to the config under both runtimes; returns (builtin, runc) (exit, stdout, stderr).
fn both(
    name: &str,
    args: &[&str],
    tweak: impl Fn(&mut Value),
) -> ((i32, String, String), (i32, String, String)) {
    if !std::path::Path::new(common::RUNC).exists() {
        panic!("runc is not installed at {}", common::RUNC);
    }
    let mut out = Vec::new();
    for env in [Env::builtin(), Env::runc()] {
        let mut b = Bundle::new(name, args);
        tweak(&mut b.config);
        let (st, o, e) = env.run(&b);
        out.push((st.exit_code, o, e));
    }
    let r = out.pop().expect("runc result");
    let bi = out.pop().expect("builtin result");
    (bi, r)
}

#[test]
fn same_identity_hostname_and_pid() {
    let (b, r) = both(
        "diff-id",
        &[
            "/bin/sh",
            "-c",
            "echo $$; hostname; id; cat /proc/self/uid_map",
        ],
        |_| {},
    );
    assert_eq!(b, r);
}

#[test]
fn same_capabilities() {
    let (b, r) = both(
        "diff-caps",
        &["/bin/sh", "-c", "grep ^Cap /proc/self/status"],
        |c| {
            let caps = json!(["CAP_CHOWN", "CAP_NET_RAW", "CAP_SETUID"]);
            c["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []});
        },
    );
    assert_eq!(b, r);
}

#[test]
fn same_user_groups_umask_rlimits() {
    let script = "grep -E '^(Uid|Gid|Groups)' /proc/self/status; umask; ulimit -n; ulimit -Hn";
    let (b, r) = both("diff-user", &["/bin/sh", "-c", script], |c| {
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 63});
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 512}]);
    });
    assert_eq!(b, r);
}

#[test]
fn same_readonly_rootfs_and_masked_paths() {
    let script = "touch /x 2>&1; wc -c < /proc/version; ls /sys/firmware | wc -l; cat /proc/sys/kernel/hostname";
    let (b, r) = both("diff-ro", &["/bin/sh", "-c", script], |c| {
        c["root"]["readonly"] = json!(true);
        c["linux"]["maskedPaths"] = json!(["/proc/version", "/sys/firmware"]);
        c["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    });
    assert_eq!(b.0, r.0);
    // hostnames differ by design only in the test name; both are "h-diff-ro".
    assert_eq!(b.1, r.1);
}

#[test]
fn same_signal_dispositions() {
    // SIGPIPE (bit 12) must be at its default in both; `yes | head` ends the same way.
    let script = "grep -E '^SigBlk' /proc/self/status; echo $(( 0x$(grep ^SigIgn /proc/self/status | cut -f2) & 0x1000 )); yes | head -1";
    let (b, r) = both("diff-sig", &["/bin/sh", "-c", script], |_| {});
    assert_eq!(b, r);
    assert_eq!(b.1, "SigBlk:\t0000000000000000\n0\ny\n");
}

#[test]
fn no_fd_leaks_into_the_container() {
    let (b, r) = both("diff-fds", &["/bin/ls", "/proc/self/fd"], |_| {});
    assert_eq!(b, r);
    assert_eq!(
        b.1.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
}

#[test]
fn same_exit_code_and_stderr() {
    let (b, r) = both(
        "diff-exit",
        &["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
        |_| {},
    );
    assert_eq!(b, r);
}

#[test]
fn same_seccomp_denial() {
    let (b, r) = both(
        "diff-seccomp",
        &["/bin/sh", "-c", "mkdir /tmp/d; echo rc=$?"],
        |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            });
        },
    );
    assert_eq!(b, r);
}

#[test]
fn same_no_new_privs_with_seccomp() {
    let script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; mkdir /tmp/d; echo rc=$?";
    let (b, r) = both("diff-nnp", &["/bin/sh", "-c", script], |c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        });
    });
    assert_eq!(b, r);
    assert!(
        b.1.contains("NoNewPrivs:\t1") && b.1.contains("Seccomp:\t2") && b.1.contains("rc=1"),
        "{}",
        b.1
    );
    assert!(b.2.contains("Permission denied"), "{}", b.2);
}

#[test]
fn same_tty_behaviour() {
    use berth_runtime::handler::Handler;
    let mut outs = Vec::new();
    for env in [Env::builtin(), Env::runc()] {
        let mut b = Bundle::new(
            "diff-tty",
            &["/bin/sh", "-c", "test -t 0 && echo tty; stty size"],
        );
        b.config["process"]["terminal"] = json!(true);
        b.config["process"]["consoleSize"] = json!({"height": 33, "width": 77});
        env.create_with(&b, false, false, true).expect("create");
        env.handler.start(&b.id).expect("start");
        let st = env
            .handler
            .wait(&b.id, Some(std::time::Duration::from_secs(10)))
            .expect("wait");
        outs.push((st.exit_code, env.stdout(&b.id)));
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0].1, "tty\r\n33 77\r\n");
}

#[test]
fn same_exec_results() {
    use berth_runtime::handler::{ExecRequest, Handler};
    let mut outs = Vec::new();
    for env in [Env::builtin(), Env::runc()] {
        let b = Bundle::new("diff-exec", &["/bin/sleep", "30"]);
        env.create(&b).expect("create");
        env.handler.start(&b.id).expect("start");
        let mut p = oci_spec::runtime::Process::default();
        let script =
            "echo $(hostname) $(id -u); grep ^CapEff /proc/self/status; cat; echo err >&2; exit 4";
        p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), script.into()]));
        p.set_no_new_privileges(Some(false));
        p.user_mut().set_uid(1000);
        let req = ExecRequest {
            process: p,
            stdin: Some(b"input\n".to_vec()),
            timeout: Some(std::time::Duration::from_secs(10)),
        };
        let out = env.handler.exec_sync(&b.id, &req).expect("exec");
        outs.push((
            out.exit_code,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0].0, 4);
    assert!(
        outs[0].1.starts_with("h-diff-exec 1000\n") && outs[0].1.ends_with("input\n"),
        "{}",
        outs[0].1
    );
}

#[test]
fn same_oom_outcome() {
    let env_results: Vec<(i32, bool)> = [Env::builtin(), Env::runc()]
        .into_iter()
        .map(|env| {
            let mut b = Bundle::new(
                "diff-oom",
                &[
                    "/bin/dd",
                    "if=/dev/zero",
                    "of=/dev/null",
                    "bs=64M",
                    "count=2",
                ],
            );
            b.config["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
            let (st, _, _) = env.run(&b);
            (st.exit_code, st.oom_killed)
        })
        .collect();
    assert_eq!(env_results, vec![(137, true), (137, true)]);
}
