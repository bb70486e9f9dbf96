//! Monitor I/O through the Handler API: pty and resize, stdin with stdin_once through attach, log reopen; hooks;
//! user namespaces; refusal of unsupported spec features.

mod common;

use std::time::Duration;

use berth_runtime::handler::{Handler, Phase};
use berth_runtime::monitor::client::Event;
use common::{Bundle, Env};
use serde_json::json;

#[test]
fn tty_container_gets_a_terminal_and_resizes() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "tty",
        &[
            "/bin/sh",
            "-c",
            "test -t 0 && test -t 1 && echo isatty; tty; sleep 0.5; stty size",
        ],
    );
    b.config["process"]["terminal"] = json!(true);
    env.create_with(&b, false, false, true).expect("create");
    env.handler.start(&b.id).expect("start");
    env.handler
        .monitor(&b.id)
        .expect("connect")
        .resize(40, 100)
        .expect("resize");
    let st = env
        .handler
        .wait(&b.id, Some(Duration::from_secs(10)))
        .expect("wait");
    assert_eq!(st.exit_code, 0);
    let out = env.stdout(&b.id);
    assert!(out.contains("isatty"), "{out:?}");
    assert!(out.contains("40 100"), "{out:?}");
    // The slave belongs to the container's own devpts.
    assert!(out.contains("/dev/pts/0"), "{out:?}");
}

#[test]
fn stdin_through_attach_with_stdin_once() {
    let env = Env::builtin();
    let b = Bundle::new("stdin", &["/bin/cat"]);
    env.create_with(&b, true, true, false).expect("create");
    env.handler.start(&b.id).expect("start");
    let mut c = env.handler.monitor(&b.id).expect("connect");
    c.attach().expect("attach");
    c.write_stdin(b"hello\n").expect("stdin");
    let mut got = Vec::new();
    while !got.ends_with(b"hello\n") {
        match c.next_event().expect("event") {
            Some(Event::Stdout(d)) => got.extend(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    // stdin_once: the container's stdin closes when this client goes away, and cat exits.
    drop(c);
    let st = env
        .handler
        .wait(&b.id, Some(Duration::from_secs(10)))
        .expect("wait");
    assert_eq!((st.phase, st.exit_code), (Phase::Stopped, 0));
    assert_eq!(env.stdout(&b.id), "hello\n");
}

#[test]
fn unread_stdin_does_not_stall_logging() {
    let env = Env::builtin();
    let b = Bundle::new(
        "stdinfull",
        &["/bin/sh", "-c", "sleep 0.3; echo during; sleep 3; wc -c"],
    );
    env.create_with(&b, true, false, false).expect("create");
    env.handler.start(&b.id).expect("start");
    let mut c = env.handler.monitor(&b.id).expect("connect");
    // Far more than a pipe holds, while nothing reads it for 3 s.
    for _ in 0..5 {
        c.write_stdin(&vec![b'x'; 60 * 1024]).expect("stdin");
    }
    c.close_stdin().expect("close stdin");
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    while !env.stdout(&b.id).contains("during") {
        assert!(
            std::time::Instant::now() < deadline,
            "monitor stalled on stdin: output not logged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = env
        .handler
        .wait(&b.id, Some(Duration::from_secs(15)))
        .expect("wait");
    assert_eq!(st.exit_code, 0);
    assert_eq!(
        env.stdout(&b.id).trim_end().lines().last(),
        Some((5 * 60 * 1024).to_string().as_str())
    );
}

#[test]
fn reopen_log_after_rotation() {
    let env = Env::builtin();
    let b = Bundle::new(
        "rotate",
        &["/bin/sh", "-c", "echo first; sleep 1; echo second"],
    );
    env.create(&b).expect("create");
    env.handler.start(&b.id).expect("start");
    let log = env.log_path(&b.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("first")
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    env.handler
        .monitor(&b.id)
        .expect("connect")
        .reopen_log()
        .expect("reopen");
    env.handler
        .wait(&b.id, Some(Duration::from_secs(10)))
        .expect("wait");
    assert!(
        std::fs::read_to_string(&rotated)
            .expect("old")
            .contains("stdout F first")
    );
    let new = std::fs::read_to_string(&log).expect("new");
    assert!(
        new.contains("stdout F second") && !new.contains("first"),
        "{new}"
    );
}

#[test]
fn hooks_run_with_state_on_stdin() {
    let env = Env::builtin();
    let out = tempfile::tempdir().expect("tempdir");
    let mut b = Bundle::new("hooks", &["/bin/true"]);
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}", out.path().display())]});
    b.config["hooks"] = json!({
        "createRuntime": [hook("createRuntime")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")],
    });
    env.run(&b);
    env.handler.delete(&b.id, false).expect("delete");
    for name in ["createRuntime", "poststart", "poststop"] {
        let text = std::fs::read_to_string(out.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("state json");
        assert_eq!(v["id"], b.id.as_str(), "{name}");
    }
}

#[test]
fn failing_create_runtime_hook_fails_create() {
    let env = Env::builtin();
    let mut b = Bundle::new("badhook", &["/bin/true"]);
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    let err = env.create(&b).expect_err("create must fail");
    assert!(err.to_string().contains("/bin/false"), "{err}");
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/berth-test/{}", b.id)).exists());
}

#[test]
fn user_namespace_maps_root() {
    let env = Env::builtin();
    let mut b = Bundle::new(
        "userns",
        &[
            "/bin/sh",
            "-c",
            "id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ns = b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    ns.push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let (st, out, err) = env.run(&b);
    assert_eq!(st.exit_code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    // Host root owns the rootfs; inside it is unmapped (overflow uid).
    assert_eq!(lines[2], "65534");
}

#[test]
fn unsupported_features_are_refused_by_name() {
    let env = Env::builtin();
    let mut b = Bundle::new("unsup", &["/bin/true"]);
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    let err = env.create(&b).expect_err("must refuse");
    assert!(
        err.to_string().contains("not supported: linux.personality"),
        "{err}"
    );
}
