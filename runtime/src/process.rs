//! The last steps before the user's program runs, shared by container init and exec: rlimits, cwd, umask, user and
//! groups, capabilities, no_new_privileges, seccomp, then `execve`. Also oom_score_adj, set from outside.

use std::convert::Infallible;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, execve, setgroups, setresgid, setresuid};
use oci_spec::runtime::{LinuxSeccomp, PosixRlimitType, Process};

use crate::error::{SetupError, io, sys};
use crate::util::serde_name;
use crate::{capabilities, seccomp};

type Result<T> = std::result::Result<T, SetupError>;

fn rlimit_resource(t: PosixRlimitType) -> Option<u32> {
    Some(match serde_name(&t).as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Apply the process's rlimits (before dropping privileges: raising a hard limit needs CAP_SYS_RESOURCE).
pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let Some(res) = rlimit_resource(r.typ()) else {
            return Err(SetupError::Invalid(format!(
                "unknown rlimit {}",
                serde_name(&r.typ())
            )));
        };
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid resource number and a filled struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(SetupError::Io {
                op: format!("setrlimit {}", serde_name(&r.typ())),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Write oom_score_adj of `pid`, clamped to what the kernel lets us set.
///
/// Without CAP_SYS_RESOURCE (this machine's root) the kernel refuses to go below the current value; runc then fails
/// with a misleading error. We keep the nearest allowed value (the current one) and say so on stderr.
pub fn set_oom_score_adj(pid: i32, want: i32) -> Result<()> {
    let path = format!("/proc/{pid}/oom_score_adj");
    let want = want.clamp(-1000, 1000);
    match crate::util::write_file(Path::new(&path), &want.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            let cur = std::fs::read_to_string(&path).unwrap_or_default();
            eprintln!(
                "berth-runtime: oom_score_adj {want} refused (no CAP_SYS_RESOURCE), clamped to current {}",
                cur.trim()
            );
            Ok(())
        }
        Err(e) => Err(SetupError::Io {
            op: format!("write {path}"),
            source: e,
        }),
    }
}

/// Find `prog` in the process's PATH (from its env), as execvp would, but without touching our own environment.
pub fn resolve_program(prog: &str, env: &[String]) -> PathBuf {
    if prog.contains('/') {
        return PathBuf::from(prog);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(prog);
        if let Ok(m) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return cand;
            }
        }
    }
    PathBuf::from(prog)
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| SetupError::Invalid(format!("NUL byte in {s:?}")))
}

/// Everything from the user switch to `execve`. Never returns on success.
///
/// Seccomp goes last when no_new_privileges is set (so the filter need not allow the setup syscalls); without it,
/// loading a filter needs CAP_SYS_ADMIN, so it is loaded before capabilities are dropped, as runc does.
pub fn finalize_and_exec(
    p: &Process,
    seccomp_spec: Option<&LinuxSeccomp>,
    preserve_fds: u32,
) -> Result<Infallible> {
    let args = p.args().clone().unwrap_or_default();
    let Some(prog) = args.first() else {
        return Err(SetupError::Invalid("process.args is empty".into()));
    };
    let env = p.env().clone().unwrap_or_default();
    let path = resolve_program(prog, &env);
    let argv: Vec<CString> = args.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|e| cstr(e)).collect::<Result<_>>()?;
    let path_c = cstr(&path.to_string_lossy())?;

    if let Some(m) = p.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    let nnp = p.no_new_privileges().unwrap_or(false);
    if !nnp && let Some(s) = seccomp_spec {
        seccomp::load(s).map_err(|e| SetupError::Invalid(e.to_string()))?;
    }
    if let Some(caps) = p.capabilities() {
        capabilities::drop_bounding(caps)?;
    }
    // Keep permitted capabilities across the uid change; the capset below decides what stays.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1u64, 0u64, 0u64, 0u64) };
    let user = p.user();
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match setgroups(&gids) {
        Ok(()) => {}
        // In a user namespace with setgroups denied, there is nothing to set.
        Err(nix::Error::EPERM) if gids.is_empty() => {}
        Err(e) => {
            return Err(SetupError::Sys {
                op: "setgroups".into(),
                source: e,
            });
        }
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(sys("setresgid"))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(sys("setresuid"))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0u64, 0u64, 0u64, 0u64) };
    if let Some(caps) = p.capabilities() {
        capabilities::apply(caps)?;
    } else if user.uid() != 0 {
        capabilities::apply(&Default::default())?;
    }
    if nnp {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1u64, 0u64, 0u64, 0u64) } != 0 {
            return Err(SetupError::Io {
                op: "set no_new_privs".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        if let Some(s) = seccomp_spec {
            seccomp::load(s).map_err(|e| SetupError::Invalid(e.to_string()))?;
        }
    }
    reset_signals();
    cloexec_from(preserve_fds);
    execve(&path_c, &argv, &envp).map_err(sys(format!("exec {}", path.display())))
}

/// Give the new program default signal dispositions and an empty signal mask.
///
/// Rust's runtime ignores SIGPIPE and an ignored disposition survives execve: without this, `yes | head` inside
/// the container would behave differently than under runc.
pub fn reset_signals() {
    // Raw rt_sigaction: glibc refuses its two internal real-time signals, which must be reset too.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let act = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL with the kernel's own sigaction layout.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<u8>(),
                8usize,
            )
        };
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

/// Mark every fd from `3 + preserve` up close-on-exec, so nothing the runtime or its caller held open leaks into
/// the container (runc's CVE-2024-21626 was such a leak). `preserve` keeps the caller's `--preserve-fds`.
pub fn cloexec_from(preserve: u32) {
    let first = 3u32.saturating_add(preserve);
    // SAFETY: close_range only changes flags of our own fds.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // Kernels before 5.11: walk /proc/self/fd instead.
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = rd
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds.into_iter().filter(|fd| *fd >= first as i32) {
                // SAFETY: setting FD_CLOEXEC on an fd number we hold.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Change into the process's cwd (inside the container's root).
pub fn chdir_cwd(p: &Process) -> Result<()> {
    let cwd = p.cwd();
    let cwd = if cwd.as_os_str().is_empty() {
        Path::new("/")
    } else {
        cwd.as_path()
    };
    std::env::set_current_dir(cwd).map_err(io(format!("chdir {}", cwd.display())))
}
