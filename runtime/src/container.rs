//! The OCI lifecycle of the built-in runtime: create, start, state, kill, delete.
//!
//! `create` must run in a fresh single-threaded process (the `berth-runtime` binary): it clones init with the new
//! namespaces, and a clone of a multi-threaded process may inherit locks held by other threads. Init reports over a
//! SOCK_SEQPACKET pair:
//!
//! ```text
//! parent                                   init (PID 1 in its pid namespace)
//! clone(new namespaces) ──────────────────▶ wait "go"
//! uid/gid maps, cgroup.procs, oom_score_adj
//! send "go" ──────────────────────────────▶ setns joins, cgroupns, setsid, pty
//!                        ◀──────────────── "hooks" (only when prestart/createRuntime hooks exist)
//! run hooks, send "go" ───────────────────▶ rootfs mounts, createContainer hooks, pivot_root,
//!                                           hostname, sysctls, masked/readonly paths, rlimits
//!                        ◀──────────────── "ready"  (or "E<message>" at any step)
//! write state.json, pid file, exit          open exec.fifo for writing: blocks until `start`
//!                                           startContainer hooks, user/caps/seccomp, execve
//! ```

use std::convert::Infallible;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, mkfifo, setresgid, setresuid, setsid};
use oci_spec::runtime::Spec;

use crate::cgroups::{self, Cgroup, Layout};
use crate::error::{Error, Result, SetupError, SpecError, StateError, io, sys};
use crate::state::{self, ContainerState, EXEC_FIFO, Status};
use crate::{hooks, namespaces, process, rootfs, tty, util};

/// Options of `create`, as the runc command line has them.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    /// State root (`--root`), e.g. `/run/berth-runtime`.
    pub root: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `--systemd-cgroup`: read cgroupsPath as `slice:prefix:name` (still written through cgroupfs).
    pub systemd_cgroup: bool,
    /// `--preserve-fds N`: fds 3..3+N stay open in the container (for socket activation).
    pub preserve_fds: u32,
}

/// Load and sanity-check a bundle's config.json.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|source| SpecError::Load { path, source })?;
    if spec.process().is_none() {
        return Err(SpecError::Invalid("process is missing".into()).into());
    }
    unsupported(&spec)?;
    Ok(spec)
}

/// Refuse spec features this runtime does not implement instead of silently running without them.
///
/// AppArmor profiles and SELinux labels are ignored when the host has no AppArmor/SELinux, as runc does.
fn unsupported(spec: &Spec) -> Result<()> {
    let no = |what: &str| Err(Error::NotSupported(what.to_string()));
    if let Some(p) = spec.process() {
        if p.apparmor_profile().as_ref().is_some_and(|a| !a.is_empty())
            && Path::new("/sys/kernel/security/apparmor").exists()
        {
            return no("process.apparmorProfile (AppArmor)");
        }
        if p.selinux_label().as_ref().is_some_and(|l| !l.is_empty())
            && Path::new("/sys/fs/selinux/enforce").exists()
        {
            return no("process.selinuxLabel (SELinux)");
        }
        if p.scheduler().is_some() {
            return no("process.scheduler");
        }
        if p.io_priority().is_some() {
            return no("process.ioPriority");
        }
        if p.exec_cpu_affinity().is_some() {
            return no("process.execCPUAffinity");
        }
    }
    if let Some(l) = spec.linux() {
        if l.seccomp()
            .as_ref()
            .is_some_and(|s| s.listener_path().is_some())
        {
            return no("linux.seccomp.listenerPath (seccomp notify)");
        }
        if l.intel_rdt().is_some() {
            return no("linux.intelRdt");
        }
        if l.personality().is_some() {
            return no("linux.personality");
        }
        if l.memory_policy().is_some() {
            return no("linux.memoryPolicy");
        }
        if l.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
            return no("linux.timeOffsets (time namespace)");
        }
    }
    Ok(())
}

fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("root is missing".into()))?;
    let p = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    fs::canonicalize(&p)
        .map_err(|e| SpecError::Invalid(format!("rootfs {}: {e}", p.display())).into())
}

/// Create a container: on success init waits on `exec.fifo` and the state is saved.
pub fn create(opts: &CreateOptions) -> Result<ContainerState> {
    let bundle = fs::canonicalize(&opts.bundle).map_err(|source| StateError::Io {
        what: "bundle",
        path: opts.bundle.clone(),
        source,
    })?;
    let spec = load_spec(&bundle)?;
    let rootfs = rootfs_path(&spec, &bundle)?;
    let dir = state::dir(&opts.root, &opts.id)?;
    fs::create_dir_all(&opts.root).map_err(|source| StateError::Io {
        what: "mkdir",
        path: opts.root.clone(),
        source,
    })?;
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StateError::Exists(opts.id.clone()).into());
        }
        Err(source) => {
            return Err(StateError::Io {
                what: "mkdir",
                path: dir,
                source,
            }
            .into());
        }
    }
    let mut cg: Option<Cgroup> = None;
    let res = create_in(opts, &spec, &bundle, &rootfs, &dir, &mut cg);
    if res.is_err() {
        if let Some(cg) = &cg {
            cg.signal_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        let _ = fs::remove_dir_all(&dir);
    }
    res
}

fn create_in(
    opts: &CreateOptions,
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    dir: &Path,
    cg_out: &mut Option<Cgroup>,
) -> Result<ContainerState> {
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = namespaces::plan(linux.namespaces().as_deref().unwrap_or_default())?;
    let fifo = dir.join(EXEC_FIFO);
    mkfifo(&fifo, Mode::from_bits_truncate(0o622)).map_err(sys("mkfifo exec.fifo"))?;
    // Init may be root of a user namespace by then: the fifo must be writable for the host uid it maps to.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622))
            .map_err(io("chmod exec.fifo"))?;
        let host = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
            maps.and_then(|m| m.iter().find(|m| m.container_id() == 0))
                .map(|m| m.host_id())
        };
        if plan.new_user {
            let uid = host(linux.uid_mappings().as_ref()).map(Uid::from_raw);
            let gid = host(linux.gid_mappings().as_ref()).map(Gid::from_raw);
            nix::unistd::chown(&fifo, uid, gid).map_err(sys("chown exec.fifo"))?;
        }
    }

    let layout = Layout::detect()?;
    let cg_rel = cgroups::resolve_path(
        linux.cgroups_path().as_deref(),
        &opts.id,
        opts.systemd_cgroup,
    );
    let cg = Cgroup::create(&layout, &cg_rel)?;
    *cg_out = Some(cg.clone());
    if let Some(r) = linux.resources() {
        cg.apply(r)?;
    }

    // Joining a pid namespace only affects children: do it here so init is born inside it.
    for (flag, path) in &plan.join {
        if *flag == CloneFlags::CLONE_NEWPID {
            namespaces::join(*flag, path)?;
        }
    }
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("socketpair"))?;

    let ctx = InitContext {
        spec,
        rootfs,
        plan: &plan,
        layout: &layout,
        cgroup_dirs: cg.paths(),
        fifo: &fifo,
        console_socket: opts.console_socket.as_deref(),
        preserve_fds: opts.preserve_fds,
    };
    let flags = plan.clone_flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: raw clone without a new stack behaves like fork; this process is single-threaded (see module doc).
    let pid =
        unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) } as i32;
    if pid < 0 {
        return Err(SetupError::Io {
            op: "clone init".into(),
            source: io::Error::last_os_error(),
        }
        .into());
    }
    if pid == 0 {
        drop(parent_sock);
        let err = match init(&ctx, &child_sock) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let msg = format!("E{err}");
        // Before "ready" the parent reports the error; after it the parent is gone and stderr is all we have.
        if send(child_sock.as_raw_fd(), msg.as_bytes(), MsgFlags::empty()).is_err() {
            eprintln!("berth-runtime: container init: {err}");
        }
        // SAFETY: leave the cloned child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(1) };
    }
    drop(child_sock);
    let result = parent_side(opts, spec, bundle, rootfs, &plan, &cg, pid, &parent_sock);
    if result.is_err() {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn parent_side(
    opts: &CreateOptions,
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    plan: &namespaces::Plan,
    cg: &Cgroup,
    pid: i32,
    sock: &OwnedFd,
) -> Result<ContainerState> {
    let linux = spec.linux().clone().unwrap_or_default();
    if plan.new_user {
        write_id_map(
            pid,
            "uid_map",
            linux.uid_mappings().as_deref().unwrap_or_default(),
        )?;
        write_id_map(
            pid,
            "gid_map",
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?;
    }
    cg.add_pid(pid)?;
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        process::set_oom_score_adj(pid, adj)?;
    }
    let pid_start = util::proc_start_time(pid).map_err(io("read init start time"))?;
    let st = ContainerState {
        id: opts.id.clone(),
        pid,
        pid_start,
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.to_path_buf(),
        created: util::rfc3339_nanos(util::now_nanos()),
        cgroup_dirs: cg.paths(),
        cgroup_v2: cg.v2,
        namespaces: plan.kinds.clone(),
        annotations: spec.annotations().clone().unwrap_or_default(),
    };
    send(sock.as_raw_fd(), b"go", MsgFlags::empty()).map_err(sys("sync with init"))?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n =
            recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("sync with init"))?;
        match &buf[..n] {
            b"" => {
                return Err(
                    SetupError::Child("exited during setup without a message".into()).into(),
                );
            }
            b"ready" => break,
            b"hooks" => {
                let state_json = st.oci_state(Status::Creating).to_string();
                if let Some(h) = spec.hooks() {
                    hooks::run(h.prestart().as_deref().unwrap_or_default(), &state_json)?;
                    hooks::run(
                        h.create_runtime().as_deref().unwrap_or_default(),
                        &state_json,
                    )?;
                }
                send(sock.as_raw_fd(), b"go", MsgFlags::empty()).map_err(sys("sync with init"))?;
            }
            m if m.first() == Some(&b'E') => {
                return Err(
                    SetupError::Child(String::from_utf8_lossy(&m[1..]).into_owned()).into(),
                );
            }
            m => {
                return Err(SetupError::Child(format!(
                    "unexpected message {:?}",
                    String::from_utf8_lossy(m)
                ))
                .into());
            }
        }
    }
    st.save(&opts.root)?;
    if let Some(pf) = &opts.pid_file {
        util::write_atomic(pf, pid.to_string().as_bytes()).map_err(|source| StateError::Io {
            what: "write pid file",
            path: pf.clone(),
            source,
        })?;
    }
    Ok(st)
}

fn write_id_map(pid: i32, file: &str, maps: &[oci_spec::runtime::LinuxIdMapping]) -> Result<()> {
    if maps.is_empty() {
        return Err(
            SpecError::Invalid(format!("a new user namespace needs linux.{file} entries")).into(),
        );
    }
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    util::write_file(&path, &text).map_err(|e| SetupError::Io {
        op: format!("write {}", path.display()),
        source: e,
    })?;
    Ok(())
}

struct InitContext<'a> {
    spec: &'a Spec,
    rootfs: &'a Path,
    plan: &'a namespaces::Plan,
    layout: &'a Layout,
    cgroup_dirs: Vec<PathBuf>,
    fifo: &'a Path,
    console_socket: Option<&'a Path>,
    preserve_fds: u32,
}

fn wait_go(sock: &OwnedFd) -> Result<(), SetupError> {
    let mut buf = [0u8; 16];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("wait for parent"))?;
    if &buf[..n] != b"go" {
        return Err(SetupError::Invalid("parent went away".into()));
    }
    Ok(())
}

/// Container init, in the child. Returns only on error.
fn init(ctx: &InitContext, sock: &OwnedFd) -> Result<Infallible> {
    let spec = ctx.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let proc_spec = spec.process().clone().unwrap_or_default();
    wait_go(sock)?;
    for (flag, path) in &ctx.plan.join {
        if *flag != CloneFlags::CLONE_NEWPID {
            namespaces::join(*flag, path)?;
        }
    }
    if ctx.plan.new_user {
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(sys("become root in user namespace"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(sys("become root in user namespace"))?;
        // Changing uid cleared the dumpable flag, which would make /proc/self ours no more (exec.fifo is reopened
        // through /proc/self/fd).
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1u64, 0u64, 0u64, 0u64) };
    }
    if ctx.plan.new_cgroup {
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("unshare cgroup namespace"))?;
    }
    setsid().map_err(sys("setsid"))?;
    // Connected now, while the socket's host path resolves; the pty itself is opened after pivot_root so its
    // slave lives in the container's devpts (ttyname and /dev/console then make sense inside).
    let console_sock = if proc_spec.terminal().unwrap_or(false) {
        let sock_path = ctx.console_socket.ok_or_else(|| {
            SetupError::Invalid("terminal is true but no console socket was given".into())
        })?;
        Some(tty::connect(sock_path)?)
    } else {
        None
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    let has_runtime_hooks = hooks.prestart().as_ref().is_some_and(|h| !h.is_empty())
        || hooks
            .create_runtime()
            .as_ref()
            .is_some_and(|h| !h.is_empty());
    if has_runtime_hooks {
        send(sock.as_raw_fd(), b"hooks", MsgFlags::empty()).map_err(sys("sync with parent"))?;
        wait_go(sock)?;
    }
    // Held as O_PATH across pivot_root; reopened for writing through /proc/self/fd when it is time to wait.
    let fifo = open(ctx.fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys("open exec.fifo"))?;
    if ctx.plan.new_mount {
        let rctx = rootfs::Context {
            rootfs: ctx.rootfs,
            in_userns: ctx.plan.new_user,
            cgroupns: ctx.plan.new_cgroup,
            layout: Some(ctx.layout),
            cgroup_dirs: &ctx.cgroup_dirs,
            console: None,
        };
        rootfs::prepare(spec, &rctx)?;
        if let Some(h) = hooks.create_container() {
            hooks::run(h, &init_state_json(spec))?;
        }
        rootfs::pivot(ctx.rootfs)?;
    } else {
        nix::unistd::chroot(ctx.rootfs).map_err(sys("chroot"))?;
        nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    }
    if let Some(sock) = &console_sock {
        let (master, slave) = tty::open_pty()?;
        if let Some(size) = proc_spec.console_size() {
            let _ = tty::resize(
                master.as_raw_fd(),
                size.height() as u16,
                size.width() as u16,
            );
        }
        tty::send_fd_on(sock, master.as_raw_fd())?;
        drop(master);
        if ctx.plan.new_mount {
            let dst = Path::new("/dev/console");
            if fs::symlink_metadata(dst).is_err() {
                fs::File::create(dst).map_err(io("create /dev/console"))?;
            }
            nix::mount::mount(
                Some(&slave),
                dst,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("bind /dev/console"))?;
        }
        tty::become_console(&slave)?;
    }
    drop(console_sock);
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !ctx.plan.new_uts {
            return Err(SetupError::Invalid("hostname needs a new uts namespace".into()).into());
        }
        nix::unistd::sethostname(h).map_err(sys("sethostname"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: pointer and length of a live string.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(SetupError::Io {
                op: "setdomainname".into(),
                source: io::Error::last_os_error(),
            }
            .into());
        }
    }
    for (k, v) in linux.sysctl().iter().flatten() {
        let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        util::write_file(&path, v).map_err(io(format!("sysctl {k}")))?;
    }
    rootfs::finalize(spec)?;
    process::set_rlimits(&proc_spec)?;
    process::chdir_cwd(&proc_spec)?;

    send(sock.as_raw_fd(), b"ready", MsgFlags::empty()).map_err(sys("sync with parent"))?;
    // From here on the parent is gone: report failures on stderr (the container's log) and exit.
    let after_ready = || -> Result<Infallible> {
        let reopen = format!("/proc/self/fd/{}", fifo.as_raw_fd());
        let w = open(
            reopen.as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("wait on exec.fifo"))?;
        nix::unistd::write(&w, b"0").map_err(sys("write exec.fifo"))?;
        drop(w);
        if let Some(h) = hooks.start_container() {
            hooks::run(h, &init_state_json(spec))?;
        }
        Ok(process::finalize_and_exec(
            &proc_spec,
            linux.seccomp().as_ref(),
            ctx.preserve_fds,
        )?)
    };
    let err = match after_ready() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("berth-runtime: container init: {err}");
    // SAFETY: leave without running destructors of state shared with the parent.
    unsafe { libc::_exit(127) }
}

fn init_state_json(spec: &Spec) -> String {
    serde_json::json!({
        "ociVersion": spec.version(),
        "status": "created",
        "pid": std::process::id(),
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}

/// Start a created container: release init from `exec.fifo`, then run poststart hooks.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if status != Status::Created {
        return Err(StateError::WrongStatus {
            id: id.into(),
            status: status.to_string(),
            action: "start",
            need: "created",
        }
        .into());
    }
    let fifo_path = state::dir(root, id)?.join(EXEC_FIFO);
    // Non-blocking open for reading always succeeds; init's blocked open for writing then completes.
    let f = open(
        &fifo_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open exec.fifo"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut p = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, 50) };
        if r > 0 && p.revents & libc::POLLIN != 0 {
            let mut b = [0u8; 1];
            if nix::unistd::read(&f, &mut b).map_err(sys("read exec.fifo"))? == 1 {
                break;
            }
        }
        if st.init_pidfd().is_none() {
            return Err(SetupError::Child("init exited before start".into()).into());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "container {id} init did not take the start signal"
            )));
        }
    }
    let _ = fs::remove_file(&fifo_path);
    if let Ok(spec) = load_spec(&st.bundle)
        && let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().clone())
        && let Err(e) = hooks::run(&h, &st.oci_state(Status::Running).to_string())
    {
        eprintln!("berth-runtime: poststart hook: {e}");
    }
    Ok(())
}

/// The OCI state document of `id`.
pub fn state(root: &Path, id: &str) -> Result<serde_json::Value> {
    let st = ContainerState::load(root, id)?;
    Ok(st.oci_state(st.status(root)))
}

/// Send `sig` to init (through a pidfd), or with `all` to every process in the container's cgroup.
pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    if all {
        let layout = Layout::detect()?;
        Cgroup::from_dirs(&layout, &st.cgroup_dirs).signal_all(sig);
        return Ok(());
    }
    let Some(fd) = st.init_pidfd() else {
        return Err(StateError::WrongStatus {
            id: id.into(),
            status: "stopped".into(),
            action: "kill",
            need: "created or running",
        }
        .into());
    };
    util::pidfd_send_signal(&fd, sig).map_err(|e| {
        SetupError::Io {
            op: format!("signal {sig}"),
            source: e,
        }
        .into()
    })
}

/// Delete a container: a running one only with `force` (it is killed first). Removes cgroups and state, runs
/// poststop hooks.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let st = match ContainerState::load(root, id) {
        Ok(st) => st,
        Err(e) if e.is_not_found() && force => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = st.status(root);
    if status == Status::Running && !force {
        return Err(StateError::WrongStatus {
            id: id.into(),
            status: status.to_string(),
            action: "delete",
            need: "stopped (or use --force)",
        }
        .into());
    }
    let layout = Layout::detect()?;
    let cg = Cgroup::from_dirs(&layout, &st.cgroup_dirs);
    if let Some(fd) = st.init_pidfd() {
        let _ = util::pidfd_send_signal(&fd, libc::SIGKILL);
        if !util::pidfd_wait(&fd, 5000) {
            return Err(Error::Timeout(format!(
                "container {id} init did not die after SIGKILL"
            )));
        }
    }
    // Without a pid namespace of its own, children of init survive it: kill what is left in the cgroup.
    if !cg.pids().is_empty() {
        cg.signal_all(libc::SIGKILL);
    }
    cg.destroy()?;
    if let Ok(spec) = load_spec(&st.bundle)
        && let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().clone())
        && let Err(e) = hooks::run(&h, &st.oci_state(Status::Stopped).to_string())
    {
        eprintln!("berth-runtime: poststop hook: {e}");
    }
    let dir = state::dir(root, id)?;
    fs::remove_dir_all(&dir).map_err(|source| StateError::Io {
        what: "remove",
        path: dir,
        source,
    })?;
    Ok(())
}

fn cgroup_of(root: &Path, id: &str) -> Result<(ContainerState, Cgroup)> {
    let st = ContainerState::load(root, id)?;
    let layout = Layout::detect()?;
    let cg = Cgroup::from_dirs(&layout, &st.cgroup_dirs);
    Ok((st, cg))
}

/// Apply new resource limits to a container's cgroup (`update`).
pub fn update(root: &Path, id: &str, res: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let (_, cg) = cgroup_of(root, id)?;
    Ok(cg.apply(res)?)
}

/// Freeze or thaw a container (`pause`, `resume`).
pub fn pause(root: &Path, id: &str, frozen: bool) -> Result<()> {
    let (st, cg) = cgroup_of(root, id)?;
    if st.status(root) == Status::Stopped {
        return Err(StateError::WrongStatus {
            id: id.into(),
            status: "stopped".into(),
            action: if frozen { "pause" } else { "resume" },
            need: "running",
        }
        .into());
    }
    Ok(cg.freeze(frozen)?)
}

/// PIDs of every process in the container (`ps`).
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let (_, cg) = cgroup_of(root, id)?;
    Ok(cg.pids())
}
