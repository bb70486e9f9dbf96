//! Device rules on cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program compiled from the OCI rules and attached to
//! the container's cgroup (v2 has no `devices.allow`; runc and crun do the same).
//!
//! The program reads the request from `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
//! where `access_type` is `access << 16 | type`, and walks the rules from the last to the first: OCI rules are
//! applied in order, so the last matching rule decides. No match denies.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::error::CgroupError;
use crate::util::serde_name;

const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction in the kernel's layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND_K: u8 = 0x57; // dst &= imm (64-bit)
const RSH_K: u8 = 0x77; // dst >>= imm
const MOV_X: u8 = 0xbf; // dst = src
const MOV_K: u8 = 0xb7; // dst = imm
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const EXIT: u8 = 0x95;

/// Compile OCI device rules into a program.
pub fn compile(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16), // r3 = access
        insn(LDX_W, 4, 1, 4, 0),  // r4 = major
        insn(LDX_W, 5, 1, 8, 0),  // r5 = minor
    ];
    for r in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        let typ = r
            .typ()
            .map(|t| serde_name(&t))
            .unwrap_or_else(|| "a".into());
        match typ.as_str() {
            "c" => block.push(insn(JNE_K, 2, 0, 0, DEV_CHAR)),
            "b" => block.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
            _ => {}
        }
        let access = r.access().clone().unwrap_or_else(|| "rwm".into());
        let mut mask = 0;
        for c in access.chars() {
            mask |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            };
        }
        if mask != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // The request must be a subset of the rule: (access & ~mask) == 0.
            block.push(insn(MOV_X, 6, 3, 0, 0));
            block.push(insn(AND_K, 6, 0, 0, !mask));
            block.push(insn(JNE_K, 6, 0, 0, 0));
        }
        if let Some(m) = r.major().filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor().filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(MOV_K, 0, 0, 0, i32::from(r.allow())));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let unconditional = block.len() == 2;
        // Every conditional jump skips to the end of this block.
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
        if unconditional {
            // Rules before this one can never match; the verifier rejects unreachable code.
            return p;
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: i64, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: bpf(2) with a zero-padded attribute buffer larger than any union member we use.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Load the program for `rules` and attach it to the cgroup v2 directory `dir`.
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let prog = compile(rules);
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    let mut log = vec![0u8; 64 * 1024];
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
    attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    let io = |op: &'static str| {
        move |source| CgroupError::Io {
            op,
            path: dir.to_path_buf(),
            source,
        }
    };
    let prog_fd = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]).trim().to_string();
            return Err(CgroupError::Unsupported(format!(
                "load device filter: {e}: {verifier}"
            )));
        }
    };
    // SAFETY: the kernel returned a new fd we now own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(prog_fd as i32) };
    let cg = std::fs::File::open(dir).map_err(io("open"))?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog_fd.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(io("attach device filter to"))?;
    // The attachment holds the program; our fds can go.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_the_next_rule() {
        let deny_all: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow": false, "access": "rwm"}"#).expect("rule");
        let null: LinuxDeviceCgroup = serde_json::from_str(
            r#"{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}"#,
        )
        .expect("rule");
        let p = compile(&[deny_all, null]);
        // prologue 6, null rule: type, 3 access, major, minor, mov, exit = 8; deny rule: mov, exit = 2 (and it
        // matches everything, so no default follows).
        assert_eq!(p.len(), 6 + 8 + 2);
        for (i, ins) in p.iter().enumerate() {
            if ins.code == JNE_K {
                let target = i as i64 + 1 + ins.off as i64;
                assert_eq!(target, 14, "jump at {i} must land on the next rule");
            }
        }
    }
}
