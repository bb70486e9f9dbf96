//! `linux.seccomp` compiled to a BPF filter with libseccomp (syscall names, architectures and argument comparisons
//! are its job) and loaded as the last step before exec.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

use crate::error::SeccompError;
use crate::util::serde_name;

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    Ok(match serde_name(&a).as_str() {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        other => {
            return Err(SeccompError::Build(format!(
                "action {other} is not supported"
            )));
        }
    })
}

/// Build the filter; `load` installs it on the calling thread (inherited across exec).
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let b = |e: libseccomp::error::SeccompError| SeccompError::Build(e.to_string());
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(b)?;
    // We set no_new_privs ourselves when the spec asks; libseccomp must not force it.
    ctx.set_ctl_nnp(false).map_err(b)?;
    for arch in s.architectures().iter().flatten() {
        let name = serde_name(arch);
        let a: ScmpArch = name
            .parse()
            .map_err(|_| SeccompError::Build(format!("architecture {name}")))?;
        if a != ScmpArch::native() {
            ctx.add_arch(a).map_err(b)?;
        }
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret().or(s.default_errno_ret()))?;
        if act == default {
            continue;
        }
        let mut conds = Vec::new();
        for arg in rule.args().iter().flatten() {
            let op = match serde_name(&arg.op()).as_str() {
                "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
                "SCMP_CMP_LT" => ScmpCompareOp::Less,
                "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
                "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
                "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
                "SCMP_CMP_GT" => ScmpCompareOp::Greater,
                "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(arg.value()),
                other => return Err(SeccompError::Build(format!("operator {other}"))),
            };
            let datum = if matches!(op, ScmpCompareOp::MaskedEqual(_)) {
                arg.value_two().unwrap_or(0)
            } else {
                arg.value()
            };
            conds.push(ScmpArgCompare::new(arg.index() as u32, op, datum));
        }
        for name in rule.names() {
            // Profiles list syscalls of newer kernels and other architectures; unknown names are skipped as runc does.
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if conds.is_empty() {
                ctx.add_rule(act, nr).map_err(b)?;
            } else {
                ctx.add_rule_conditional(act, nr, &conds).map_err(b)?;
            }
        }
    }
    Ok(ctx)
}

/// Build and load.
pub fn load(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    build(s)?
        .load()
        .map_err(|e| SeccompError::Build(format!("load filter: {e}")))
}
