//! Time create + start + (wait for exit) + delete of a `/bin/true` busybox bundle under the built-in runtime, runc
//! and crun, and print medians and ratios. Not a pass/fail test.
//!
//! ```text
//! cargo build --release -p berth-runtime --examples --bins
//! sudo target/release/examples/bench [ITERATIONS]
//! ```
//!
//! crun 1.8 refuses this machine's hybrid cgroup layout, so it runs inside `unshare -m` with
//! `/sys/fs/cgroup/unified` unmounted (the bench re-executes itself there).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn bundle(dir: &Path) {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).expect("symlink");
    let mut c = serde_json::to_value(oci_spec::runtime::Spec::default()).expect("spec");
    c["process"]["args"] = json!(["/bin/true"]);
    c["root"]["path"] = json!("rootfs");
    c["hostname"] = json!("bench");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&c).expect("json"),
    )
    .expect("write config");
}

fn set_cgroup(dir: &Path, path: &str) {
    let p = dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("parse");
    c["linux"]["cgroupsPath"] = json!(path);
    std::fs::write(&p, serde_json::to_vec(&c).expect("json")).expect("write");
}

fn run(bin: &Path, root: &Path, args: &[&str]) -> bool {
    Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One create+start+wait+delete cycle; returns its wall time.
fn cycle(bin: &Path, root: &Path, dir: &Path, id: &str) -> Option<Duration> {
    set_cgroup(dir, &format!("/berth-bench/{id}"));
    let pid_file = dir.join("pid");
    let _ = std::fs::remove_file(&pid_file);
    let b = dir.display().to_string();
    let pf = pid_file.display().to_string();
    let t = Instant::now();
    if !run(
        bin,
        root,
        &["create", "--bundle", &b, "--pid-file", &pf, id],
    ) {
        return None;
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !run(bin, root, &["start", id]) {
        return None;
    }
    // We are the subreaper: init was reparented to us.
    // SAFETY: waiting for our own (adopted) child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    if !run(bin, root, &["delete", id]) {
        return None;
    }
    Some(t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn bench(name: &str, bin: &Path, n: usize) -> Option<Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    bundle(dir.path());
    let mut times = Vec::new();
    for i in 0..n + 2 {
        let id = format!("bench-{name}-{}-{i}", std::process::id());
        match cycle(bin, root.path(), dir.path(), &id) {
            Some(t) if i >= 2 => times.push(t),
            Some(_) => {}
            None => {
                eprintln!("{name}: cycle failed");
                let _ = run(bin, root.path(), &["delete", "--force", &id]);
                return None;
            }
        }
    }
    for ctl in [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio", "hugetlb",
        "unified",
    ] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{ctl}/berth-bench"));
    }
    Some(median(times))
}

/// The daemon's path: Handler::create (monitor + runtime create), start, wait, delete.
fn bench_handler(cfg: berth_runtime::handler::HandlerConfig, n: usize) -> Option<Duration> {
    use berth_runtime::handler::{ContainerSpec, Handler, OciHandler};
    let h = OciHandler::new(cfg);
    let dir = tempfile::tempdir().expect("tempdir");
    bundle(dir.path());
    let mut times = Vec::new();
    for i in 0..n + 2 {
        let id = format!("hbench-{}-{}-{i}", h.cfg.name, std::process::id());
        set_cgroup(dir.path(), &format!("/berth-bench/{id}"));
        let spec = ContainerSpec {
            id: id.clone(),
            bundle: dir.path().to_path_buf(),
            ..Default::default()
        };
        let t = Instant::now();
        let ok = h.create(&spec).is_ok()
            && h.start(&id).is_ok()
            && h.wait(&id, Some(Duration::from_secs(10))).is_ok()
            && h.delete(&id, false).is_ok();
        if !ok {
            eprintln!("handler {}: cycle failed", h.cfg.name);
            let _ = h.delete(&id, true);
            return None;
        }
        if i >= 2 {
            times.push(t.elapsed());
        }
    }
    Some(median(times))
}

fn main() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1u64, 0u64, 0u64, 0u64) };
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        // Inside `unshare -m` for crun: print the median in microseconds.
        let n: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
        match bench(&args[2], Path::new(&args[3]), n) {
            Some(d) => println!("{}", d.as_micros()),
            None => println!("fail"),
        }
        return;
    }
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let me = std::env::current_exe().expect("current exe");
    let builtin: PathBuf = me
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berth-runtime"))
        .expect("bin dir");
    let mut results: Vec<(&str, Option<Duration>)> = Vec::new();
    results.push(("berth-runtime", bench("berth", &builtin, n)));
    results.push(("runc", bench("runc", Path::new("/usr/sbin/runc"), n)));
    let crun = Command::new("unshare")
        .args(["-m", "--", "sh", "-c"])
        .arg(format!(
            "umount /sys/fs/cgroup/unified 2>/dev/null; exec {} --child crun /usr/bin/crun {n}",
            me.display()
        ))
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(Duration::from_micros);
    results.push(("crun (unshare -m, no unified)", crun));
    let state = tempfile::tempdir().expect("tempdir");
    let bin = builtin.parent().expect("bin dir").to_path_buf();
    let hb = bench_handler(
        berth_runtime::handler::HandlerConfig::builtin(&bin, state.path()),
        n,
    );
    let hr = bench_handler(
        berth_runtime::handler::HandlerConfig::external(
            "runc",
            Path::new("/usr/sbin/runc"),
            &bin.join("berth-monitor"),
            state.path(),
        ),
        n,
    );
    println!("create+start+delete of a /bin/true bundle, median of {n}");
    let base = results[0].1;
    for (name, d) in &results {
        match (d, base) {
            (Some(d), Some(b)) => println!(
                "  {name:32} {:8.2} ms   ratio to berth-runtime {:.2}",
                d.as_secs_f64() * 1e3,
                d.as_secs_f64() / b.as_secs_f64()
            ),
            _ => println!("  {name:32} failed"),
        }
    }
    println!(
        "through the Handler API (monitor + create, start, wait for exit, delete), median of {n}"
    );
    for (name, d) in [("built-in handler", hb), ("runc handler", hr)] {
        match (d, hb) {
            (Some(d), Some(b)) => println!(
                "  {name:32} {:8.2} ms   ratio to built-in {:.2}",
                d.as_secs_f64() * 1e3,
                d.as_secs_f64() / b.as_secs_f64()
            ),
            _ => println!("  {name:32} failed"),
        }
    }
}
