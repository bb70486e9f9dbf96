//! The per-container monitor (`berth-monitor`): a tiny, synchronous process that owns one container.
//!
//! The daemon spawns it (fork+exec, safe from tokio) with its stdout as a pipe. The monitor forks once more and the
//! first process exits at once, so the monitor runs in its own session, parented by init, and outlives a `kill -9`
//! of the daemon. It makes itself a child subreaper, then runs `<runtime> create` (the built-in `berth-runtime`,
//! runc or crun: same command line) with the container's stdio on its pipes or, with a tty, a console socket that
//! receives the pty master. When create returns, init is reparented to the monitor, which writes `ok <pid>\n` (or
//! `error <message>\n`) to the daemon's pipe and closes it.
//!
//! From then on it: logs stdout/stderr in the CRI format ([`log`]), serves [`protocol`] on `attach.sock`, reaps
//! the container, records exit code, signal, finish time and OOM kill in the [`status`] file, and exits.
//!
//! Files in its state directory: `status`, `attach.sock`, `console.sock` (tty only), `pid` (from create),
//! `runtime.log` (the runtime's own errors, JSON lines).

pub mod client;
pub mod log;
pub mod protocol;
pub mod status;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use self::log::{LogWriter, Stream};
use self::status::ExitStatus;

/// Monitor command line. [`MonitorArgs::to_argv`] and [`MonitorArgs::parse`] are inverses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorArgs {
    pub id: String,
    /// The monitor's directory: status, sockets, pid file.
    pub state_dir: PathBuf,
    pub bundle: PathBuf,
    /// CRI log file; empty to discard output.
    pub log_path: PathBuf,
    /// Runtime binary: `berth-runtime`, `runc` or `crun`.
    pub runtime: PathBuf,
    /// Global arguments placed before `create` (e.g. `--root /run/berth/runtime`).
    pub runtime_args: Vec<String>,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    /// `memory.oom_control` (v1) or `memory.events` (v2) of the container's cgroup.
    pub oom_file: Option<PathBuf>,
}

impl MonitorArgs {
    /// Arguments for `berth-monitor` (without argv\[0\]).
    pub fn to_argv(&self) -> Vec<String> {
        let mut v = vec![
            "--id".into(),
            self.id.clone(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--bundle".into(),
            self.bundle.display().to_string(),
            "--log".into(),
            self.log_path.display().to_string(),
            "--runtime".into(),
            self.runtime.display().to_string(),
        ];
        for a in &self.runtime_args {
            v.push("--runtime-arg".into());
            v.push(a.clone());
        }
        for (on, flag) in [
            (self.stdin, "--stdin"),
            (self.stdin_once, "--stdin-once"),
            (self.tty, "--tty"),
        ] {
            if on {
                v.push(flag.into());
            }
        }
        if let Some(f) = &self.oom_file {
            v.push("--oom-file".into());
            v.push(f.display().to_string());
        }
        v
    }

    /// Parse arguments (without argv\[0\]).
    pub fn parse(argv: &[String]) -> Result<Self, String> {
        let mut a = MonitorArgs::default();
        let mut it = argv.iter();
        while let Some(k) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{k} needs a value"))
            };
            match k.as_str() {
                "--id" => a.id = val()?,
                "--state-dir" => a.state_dir = val()?.into(),
                "--bundle" => a.bundle = val()?.into(),
                "--log" => a.log_path = val()?.into(),
                "--runtime" => a.runtime = val()?.into(),
                "--runtime-arg" => a.runtime_args.push(val()?),
                "--oom-file" => a.oom_file = Some(val()?.into()),
                "--stdin" => a.stdin = true,
                "--stdin-once" => a.stdin_once = true,
                "--tty" => a.tty = true,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if a.id.is_empty() || a.state_dir.as_os_str().is_empty() || a.runtime.as_os_str().is_empty()
        {
            return Err("--id, --state-dir and --runtime are required".into());
        }
        Ok(a)
    }
}

/// Entry point of `berth-monitor`; returns the exit code of the first process.
pub fn main(argv: Vec<String>) -> i32 {
    let args = match MonitorArgs::parse(argv.get(1..).unwrap_or_default()) {
        Ok(mut a) => {
            for p in [
                &mut a.state_dir,
                &mut a.bundle,
                &mut a.log_path,
                &mut a.runtime,
            ] {
                if !p.as_os_str().is_empty()
                    && p.is_relative()
                    && (p.components().count() > 1 || p.exists())
                    && let Ok(abs) = std::path::absolute(&*p)
                {
                    *p = abs;
                }
            }
            a
        }
        Err(e) => {
            println!("error {e}");
            return 2;
        }
    };
    // SAFETY: the monitor is single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => 0,
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            // Do not keep the daemon's working directory busy (paths were made absolute before the fork).
            let _ = nix::unistd::chdir("/");
            let code = match run(&args) {
                Ok(()) => 0,
                Err(e) => {
                    report(&format!("error {e}"));
                    1
                }
            };
            // SAFETY: end the detached monitor without unwinding.
            unsafe { libc::_exit(code) }
        }
        Err(e) => {
            println!("error fork: {e}");
            1
        }
    }
}

/// Write a line to the daemon's pipe (our stdout), then point stdout and stderr at /dev/null.
fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto our own stdio.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

struct Pipes {
    out_r: Option<OwnedFd>,
    err_r: Option<OwnedFd>,
    in_w: Option<OwnedFd>,
}

fn runtime_error(args: &MonitorArgs, status: &str) -> String {
    let log = fs::read_to_string(args.state_dir.join("runtime.log")).unwrap_or_default();
    let msg = log
        .lines()
        .rev()
        .find_map(|l| {
            let i = l.find("\"msg\":\"")? + 7;
            let rest = &l[i..];
            Some(
                rest[..rest
                    .find("\",")
                    .or_else(|| rest.find("\"}"))
                    .unwrap_or(rest.len())]
                    .replace("\\\"", "\""),
            )
        })
        .unwrap_or_default();
    format!("{} create failed ({status}): {msg}", args.runtime.display())
}

fn run(args: &MonitorArgs) -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1u64, 0u64, 0u64, 0u64) };
    fs::create_dir_all(&args.state_dir)
        .map_err(|e| format!("mkdir {}: {e}", args.state_dir.display()))?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| format!("block SIGCHLD: {e}"))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;

    let console_path = args.state_dir.join("console.sock");
    let console = if args.tty {
        let _ = fs::remove_file(&console_path);
        Some(UnixListener::bind(&console_path).map_err(|e| format!("bind console socket: {e}"))?)
    } else {
        None
    };
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (out_r, out_w) = pipe2(cloexec).map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe2(cloexec).map_err(|e| format!("pipe: {e}"))?;
    let stdin_pipe = if args.stdin && !args.tty {
        Some(pipe2(cloexec).map_err(|e| format!("pipe: {e}"))?)
    } else {
        None
    };

    let pid_file = args.state_dir.join("pid");
    let _ = fs::remove_file(&pid_file);
    let mut argv: Vec<String> = vec![args.runtime.display().to_string()];
    argv.extend(args.runtime_args.iter().cloned());
    argv.extend([
        "--log".into(),
        args.state_dir.join("runtime.log").display().to_string(),
        "--log-format".into(),
        "json".into(),
    ]);
    argv.extend([
        "create".into(),
        "--bundle".into(),
        args.bundle.display().to_string(),
    ]);
    argv.extend(["--pid-file".into(), pid_file.display().to_string()]);
    if args.tty {
        argv.extend([
            "--console-socket".into(),
            console_path.display().to_string(),
        ]);
    }
    argv.push(args.id.clone());
    let c_argv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect();
    let c_prog = cstr(&args.runtime.display().to_string());

    // SAFETY: single-threaded; the child only dup2s, unblocks signals and execs.
    let runtime_pid = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            // SAFETY: plain fd juggling and exec in the forked child.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                let stdin_fd = stdin_pipe
                    .as_ref()
                    .map(|(r, _)| r.as_raw_fd())
                    .unwrap_or(null);
                let (o, e) = if args.tty {
                    (null, null)
                } else {
                    (out_w.as_raw_fd(), err_w.as_raw_fd())
                };
                libc::dup2(stdin_fd, 0);
                libc::dup2(o, 1);
                libc::dup2(e, 2);
                crate::process::reset_signals();
                let _ = nix::unistd::execvp(&c_prog, &c_argv);
                libc::_exit(127);
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(out_w);
    drop(err_w);
    let in_w = stdin_pipe.map(|(r, w)| {
        drop(r);
        w
    });

    // Wait for create to finish, taking the pty master if one is sent.
    let mut master: Option<OwnedFd> = None;
    let create_status = loop {
        let mut fds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(l) = &console {
            fds.push(libc::pollfd {
                fd: l.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: valid pollfd array.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if fds.len() > 1
            && fds[1].revents & libc::POLLIN != 0
            && let Some(l) = &console
            && let Ok((s, _)) = l.accept()
        {
            master = crate::tty::recv_fd(s.as_raw_fd()).ok();
        }
        let _ = sfd.read_signal();
        match waitpid(runtime_pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            _ => {}
        }
    };
    if create_status != 0 {
        return Err(runtime_error(args, &format!("exit {create_status}")));
    }
    if args.tty && master.is_none() {
        // runc connects before exiting; the message may still be queued.
        if let Some(l) = &console {
            l.set_nonblocking(true).ok();
            if let Ok((s, _)) = l.accept() {
                s.set_nonblocking(false).ok();
                master = crate::tty::recv_fd(s.as_raw_fd()).ok();
            }
        }
        if master.is_none() {
            return Err("terminal requested but the runtime sent no pty master".into());
        }
    }
    drop(console);
    let _ = fs::remove_file(&console_path);
    let pid: i32 = fs::read_to_string(&pid_file)
        .map_err(|e| format!("read {}: {e}", pid_file.display()))?
        .trim()
        .parse()
        .map_err(|_| "pid file holds no pid".to_string())?;
    let pid_start = crate::util::proc_start_time(pid).unwrap_or(0);
    let me = std::process::id() as i32;
    let monitor_start = crate::util::proc_start_time(me).unwrap_or(0);
    let mut status = ExitStatus {
        pid,
        pid_start,
        monitor_pid: me,
        monitor_start,
        ..Default::default()
    };
    let status_path = args.state_dir.join("status");
    status
        .write(&status_path)
        .map_err(|e| format!("write status: {e}"))?;
    let oom_before = crate::cgroups::oom_kill_count(args.oom_file.as_deref());

    let log = LogWriter::open(&args.log_path)
        .map_err(|e| format!("open log {}: {e}", args.log_path.display()))?;
    let sock_path = args.state_dir.join("attach.sock");
    let _ = fs::remove_file(&sock_path);
    let listener =
        UnixListener::bind(&sock_path).map_err(|e| format!("bind {}: {e}", sock_path.display()))?;
    listener.set_nonblocking(true).ok();
    report(&format!("ok {pid}"));

    let pipes = if let Some(m) = master {
        drop(out_r);
        drop(err_r);
        // SAFETY: duplicate the master so reads and stdin writes use separate owners.
        let dup = unsafe { libc::fcntl(m.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        let in_w = if dup >= 0 {
            Some(unsafe { OwnedFd::from_raw_fd(dup) })
        } else {
            None
        };
        Pipes {
            out_r: Some(m),
            err_r: None,
            in_w,
        }
    } else {
        Pipes {
            out_r: Some(out_r),
            err_r: Some(err_r),
            in_w,
        }
    };
    if let Some(w) = &pipes.in_w {
        set_nonblocking(w.as_raw_fd());
    }
    let mut m = Monitor {
        args,
        log,
        pipes,
        clients: Vec::new(),
        listener,
        pid,
        stdin_buf: Vec::new(),
        close_stdin_after: false,
    };
    let code = m.serve(&sfd);
    let (exit_code, exit_signal) = code;
    status.exited = true;
    status.exit_code = exit_code;
    status.exit_signal = exit_signal;
    status.finished_at_nanos = crate::util::now_nanos();
    status.oom_killed = crate::cgroups::oom_kill_count(args.oom_file.as_deref()) > oom_before;
    status
        .write(&status_path)
        .map_err(|e| format!("write status: {e}"))?;
    m.broadcast(protocol::EXIT, &exit_code.to_be_bytes());
    let _ = fs::remove_file(&sock_path);
    Ok(())
}

struct Client {
    stream: UnixStream,
    parser: protocol::Parser,
    attached: bool,
    wrote_stdin: bool,
}

struct Monitor<'a> {
    args: &'a MonitorArgs,
    log: LogWriter,
    pipes: Pipes,
    clients: Vec<Client>,
    listener: UnixListener,
    pid: i32,
    /// Attach stdin not yet taken by the container; written as the pipe drains, so a container that does not read
    /// never blocks the monitor (clients are not read while it holds more than [`STDIN_HIGH`]).
    stdin_buf: Vec<u8>,
    close_stdin_after: bool,
}

const BUF: usize = 16 * 1024;
const STDIN_HIGH: usize = 1 << 20;

impl Monitor<'_> {
    /// Run until the container exits; returns (exit code, signal).
    fn serve(&mut self, sfd: &SignalFd) -> (i32, i32) {
        let mut buf = vec![0u8; BUF];
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4 + self.clients.len());
            let ev = |fd: RawFd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(ev(sfd.as_raw_fd()));
            fds.push(ev(self.listener.as_raw_fd()));
            fds.push(ev(self
                .pipes
                .out_r
                .as_ref()
                .map(|f| f.as_raw_fd())
                .unwrap_or(-1)));
            fds.push(ev(self
                .pipes
                .err_r
                .as_ref()
                .map(|f| f.as_raw_fd())
                .unwrap_or(-1)));
            let stdin_fd = match &self.pipes.in_w {
                Some(w) if !self.stdin_buf.is_empty() => w.as_raw_fd(),
                _ => -1,
            };
            fds.push(libc::pollfd {
                fd: stdin_fd,
                events: libc::POLLOUT,
                revents: 0,
            });
            let client_events = if self.stdin_buf.len() > STDIN_HIGH {
                0
            } else {
                libc::POLLIN
            };
            for c in &self.clients {
                fds.push(libc::pollfd {
                    fd: c.stream.as_raw_fd(),
                    events: client_events,
                    revents: 0,
                });
            }
            // SAFETY: valid pollfd array; fds of -1 are ignored by poll.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                continue;
            }
            let ready =
                |i: usize| fds[i].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if ready(2) {
                self.pump(Stream::Stdout, &mut buf);
            }
            if ready(3) {
                self.pump(Stream::Stderr, &mut buf);
            }
            // Only the clients that were polled; ones accepted below are polled next round.
            let client_ready: Vec<bool> = (0..fds.len() - 5).map(|i| ready(5 + i)).collect();
            if fds[4].revents != 0 {
                self.flush_stdin();
            }
            if ready(1) {
                while let Ok((s, _)) = self.listener.accept() {
                    s.set_nonblocking(false).ok();
                    s.set_write_timeout(Some(Duration::from_secs(2))).ok();
                    self.clients.push(Client {
                        stream: s,
                        parser: protocol::Parser::default(),
                        attached: false,
                        wrote_stdin: false,
                    });
                }
            }

            for i in (0..client_ready.len()).rev() {
                if client_ready[i] {
                    self.client_input(i, &mut buf);
                }
            }
            if ready(0) {
                while let Ok(Some(_)) = sfd.read_signal() {}
                if let Some(code) = self.reap() {
                    // Take what the container wrote before it died.
                    self.drain(&mut buf);
                    return code;
                }
            }
        }
    }

    /// Reap children; Some when the container itself exited.
    fn reap(&mut self) -> Option<(i32, i32)> {
        let mut result = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == self.pid => {
                    result = Some((code, 0))
                }
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == self.pid => {
                    result = Some((128 + sig as i32, sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        result
    }

    fn pump(&mut self, stream: Stream, buf: &mut [u8]) -> bool {
        let slot = match stream {
            Stream::Stdout => &mut self.pipes.out_r,
            Stream::Stderr => &mut self.pipes.err_r,
        };
        let Some(fd) = slot.as_ref() else {
            return false;
        };
        match nix::unistd::read(fd, buf) {
            Ok(0) | Err(nix::Error::EIO) => {
                // EOF (or EIO: pty slave closed).
                *slot = None;
                false
            }
            Ok(n) => {
                let data = &buf[..n];
                let _ = self.log.write(stream, data);
                let typ = if stream == Stream::Stdout {
                    protocol::STDOUT
                } else {
                    protocol::STDERR
                };
                self.broadcast_attached(typ, data);
                true
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => true,
            Err(_) => {
                *slot = None;
                false
            }
        }
    }

    fn drain(&mut self, buf: &mut [u8]) {
        for f in [self.pipes.out_r.as_ref(), self.pipes.err_r.as_ref()]
            .into_iter()
            .flatten()
        {
            // SAFETY: set O_NONBLOCK on an fd we own so draining stops at an empty pipe.
            unsafe {
                let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            for _ in 0..4096 {
                let before_eof = match stream {
                    Stream::Stdout => self.pipes.out_r.is_some(),
                    Stream::Stderr => self.pipes.err_r.is_some(),
                };
                if !before_eof {
                    break;
                }
                let mut probe = libc::pollfd {
                    fd: match stream {
                        Stream::Stdout => self
                            .pipes
                            .out_r
                            .as_ref()
                            .map(|f| f.as_raw_fd())
                            .unwrap_or(-1),
                        Stream::Stderr => self
                            .pipes
                            .err_r
                            .as_ref()
                            .map(|f| f.as_raw_fd())
                            .unwrap_or(-1),
                    },
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut probe, 1, 0) } <= 0 || !self.pump(stream, buf) {
                    break;
                }
            }
        }
    }

    fn broadcast_attached(&mut self, typ: u8, data: &[u8]) {
        self.clients
            .retain_mut(|c| !c.attached || protocol::write_frame(&mut c.stream, typ, data).is_ok());
    }

    fn broadcast(&mut self, typ: u8, data: &[u8]) {
        for c in &mut self.clients {
            let _ = protocol::write_frame(&mut c.stream, typ, data);
        }
    }

    /// Write pending stdin without blocking; close the pipe once drained if asked to.
    fn flush_stdin(&mut self) {
        if let Some(w) = &self.pipes.in_w {
            while !self.stdin_buf.is_empty() {
                match nix::unistd::write(w, &self.stdin_buf) {
                    Ok(n) => {
                        self.stdin_buf.drain(..n);
                    }
                    Err(nix::Error::EINTR) => {}
                    Err(nix::Error::EAGAIN) => return,
                    Err(_) => {
                        // The reader is gone (EPIPE): nothing will take the rest.
                        self.stdin_buf.clear();
                        self.pipes.in_w = None;
                        break;
                    }
                }
            }
        } else {
            self.stdin_buf.clear();
        }
        if self.close_stdin_after && self.stdin_buf.is_empty() {
            self.pipes.in_w = None;
        }
    }

    fn client_input(&mut self, i: usize, buf: &mut [u8]) {
        let n = self.clients[i].stream.read(buf).unwrap_or(0);
        let frames = if n == 0 {
            Err(protocol::FrameTooLarge(0))
        } else {
            self.clients[i].parser.feed(&buf[..n])
        };
        let Ok(frames) = frames else {
            let c = self.clients.remove(i);
            if self.args.stdin_once && c.wrote_stdin {
                self.close_stdin_after = true;
                self.flush_stdin();
            }
            return;
        };
        for (typ, payload) in frames {
            match typ {
                protocol::STDIN => {
                    self.clients[i].wrote_stdin = true;
                    if self.pipes.in_w.is_some() {
                        self.stdin_buf.extend_from_slice(&payload);
                        self.flush_stdin();
                    }
                }
                protocol::CLOSE_STDIN => {
                    self.clients[i].wrote_stdin = true;
                    self.close_stdin_after = true;
                    self.flush_stdin();
                }
                protocol::ATTACH => self.clients[i].attached = true,
                protocol::RESIZE if payload.len() == 4 => {
                    let rows = u16::from_be_bytes([payload[0], payload[1]]);
                    let cols = u16::from_be_bytes([payload[2], payload[3]]);
                    let res = match self.pipes.out_r.as_ref().filter(|_| self.args.tty) {
                        Some(m) => {
                            crate::tty::resize(m.as_raw_fd(), rows, cols).map_err(|e| e.to_string())
                        }
                        None => Err("container has no tty".to_string()),
                    };
                    let _ = protocol::write_frame(
                        &mut self.clients[i].stream,
                        protocol::ACK,
                        res.err().unwrap_or_default().as_bytes(),
                    );
                }
                protocol::REOPEN_LOG => {
                    let res = self.log.reopen().map_err(|e| e.to_string());
                    let _ = protocol::write_frame(
                        &mut self.clients[i].stream,
                        protocol::ACK,
                        res.err().unwrap_or_default().as_bytes(),
                    );
                }
                _ => {
                    let _ = protocol::write_frame(
                        &mut self.clients[i].stream,
                        protocol::ACK,
                        b"unknown frame type",
                    );
                }
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: toggling O_NONBLOCK on an fd we hold.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}
