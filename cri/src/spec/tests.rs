//! Pure tests of the translation: small CRI configs in, spec fields out. No root needed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxDeviceType, LinuxNamespaceType, LinuxSeccompAction, Mount, Spec,
};
use tempfile::TempDir;

use super::*;
use crate::api::{
    self, Capability as CriCapability, ContainerMetadata, Device, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceOption, PodSandboxMetadata, SecurityProfile,
    security_profile::ProfileType,
};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
alice:x:1000:1000::/home/alice:/bin/sh\n";
const GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
www-data:x:33:\n\
alice:x:1000:\n\
audio:x:29:alice,bob\n\
video:x:44:bob, alice\n\
staff:x:50:\n";

/// A rootfs with /etc/passwd and /etc/group, and the pod's files beside it.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("rootfs/etc");
        fs::create_dir_all(&etc).expect("mkdir etc");
        fs::write(etc.join("passwd"), PASSWD).expect("passwd");
        fs::write(etc.join("group"), GROUP).expect("group");
        fs::create_dir_all(dir.path().join("pod/shm")).expect("shm");
        for file in ["hostname", "hosts", "resolv.conf"] {
            fs::write(dir.path().join("pod").join(file), "").expect("pod file");
        }
        Fixture { dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn pod<'a>(&self, config: &'a PodSandboxConfig) -> PodContext<'a> {
        let p = self.dir.path().join("pod");
        PodContext {
            id: "pod1",
            config,
            net_ns: Some(p.join("ns/net")),
            ipc_ns: Some(p.join("ns/ipc")),
            uts_ns: Some(p.join("ns/uts")),
            pid_ns: None,
            hostname_file: p.join("hostname"),
            resolv_conf: p.join("resolv.conf"),
            hosts_file: p.join("hosts"),
            shm: Some(p.join("shm")),
            cgroup_parent: "/kubepods/pod1".into(),
        }
    }

    fn spec(
        &self,
        pod: &PodSandboxConfig,
        ctr: &ContainerConfig,
        image: &RuntimeConfig,
    ) -> Result<Spec, SpecError> {
        let rootfs = self.rootfs();
        container_spec(&self.pod(pod), &self.ctx(ctr, image, &rootfs))
    }

    fn ctx<'a>(
        &self,
        config: &'a ContainerConfig,
        image: &'a RuntimeConfig,
        rootfs: &'a Path,
    ) -> ContainerContext<'a> {
        ContainerContext {
            id: "ctr1",
            config,
            image,
            rootfs,
            target_pid_ns: None,
        }
    }
}

fn pod_config() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        ..Default::default()
    }
}

fn privileged_pod() -> PodSandboxConfig {
    PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..pod_config()
    }
}

fn image() -> RuntimeConfig {
    serde_json::from_value(serde_json::json!({
        "Env": ["PATH=/image/bin:/bin", "LANG=C", "FOO=image"],
        "Entrypoint": ["/entry"],
        "Cmd": ["cmd-arg"],
        "WorkingDir": "/srv",
    }))
    .expect("image config")
}

fn with_sc(sc: LinuxContainerSecurityContext) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        }),
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(sc),
        }),
        ..Default::default()
    }
}

fn ctr() -> ContainerConfig {
    with_sc(LinuxContainerSecurityContext::default())
}

fn process(s: &Spec) -> &oci_spec::runtime::Process {
    s.process().as_ref().expect("process")
}

fn linux(s: &Spec) -> &oci_spec::runtime::Linux {
    s.linux().as_ref().expect("linux")
}

fn mount_at<'a>(s: &'a Spec, dest: &str) -> Option<&'a Mount> {
    s.mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

fn opts(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

fn caps_of(s: &Spec) -> Vec<Capability> {
    let mut v: Vec<_> = process(s)
        .capabilities()
        .as_ref()
        .expect("caps")
        .bounding()
        .clone()
        .expect("bounding")
        .into_iter()
        .collect();
    v.sort_by_key(|c| c.to_string());
    v
}

fn cap_list(names: &[&str]) -> Vec<Capability> {
    let mut v: Vec<_> = names.iter().map(|n| caps::parse(n).expect("cap")).collect();
    v.sort_by_key(|c| c.to_string());
    v
}

// ---------------------------------------------------------------- process

#[test]
fn args_merge_like_containerd() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let img = |ep: Option<&[&str]>, cmd: Option<&[&str]>| RuntimeConfig {
        entrypoint: ep.map(s),
        cmd: cmd.map(s),
        ..Default::default()
    };
    // (command, args, entrypoint, cmd) -> process args
    type Row<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        Option<&'a [&'a str]>,
        Option<&'a [&'a str]>,
        &'a [&'a str],
    );
    let table: Vec<Row> = vec![
        (
            &[],
            &[],
            Some(&["/ep", "x"]),
            Some(&["c1", "c2"]),
            &["/ep", "x", "c1", "c2"],
        ),
        (&[], &["a1"], Some(&["/ep"]), Some(&["c1"]), &["/ep", "a1"]),
        (&["/cmd"], &[], Some(&["/ep"]), Some(&["c1"]), &["/cmd"]),
        (
            &["/cmd"],
            &["a1", "a2"],
            Some(&["/ep"]),
            Some(&["c1"]),
            &["/cmd", "a1", "a2"],
        ),
        (
            &[],
            &[],
            None,
            Some(&["/bin/sh", "-c", "x"]),
            &["/bin/sh", "-c", "x"],
        ),
        (&[], &["/bin/true"], None, None, &["/bin/true"]),
        (&[], &[], Some(&[""]), Some(&["/bin/sh"]), &["/bin/sh"]),
        (&[], &["x"], Some(&[""]), Some(&["/bin/sh"]), &["x"]),
    ];
    for (command, args, ep, cmd, want) in table {
        let c = ContainerConfig {
            command: s(command),
            args: s(args),
            ..Default::default()
        };
        let got = process_args(&c, &img(ep, cmd)).expect("args");
        assert_eq!(
            got,
            s(want),
            "command {command:?} args {args:?} ep {ep:?} cmd {cmd:?}"
        );
    }
    let err = process_args(&ContainerConfig::default(), &img(None, None)).unwrap_err();
    assert!(matches!(err, SpecError::NoCommand), "{err}");
    let err = process_args(&ContainerConfig::default(), &img(Some(&[""]), None)).unwrap_err();
    assert!(matches!(err, SpecError::NoCommand), "{err}");
}

#[test]
fn env_image_then_cri_with_path_and_hostname() {
    let f = Fixture::new();
    let mut c = ctr();
    c.envs = vec![
        KeyValue {
            key: "FOO".into(),
            value: b"cri".to_vec(),
        },
        KeyValue {
            key: "NEW".into(),
            value: b"a=b".to_vec(),
        },
    ];
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    let env = process(&s).env().clone().expect("env");
    assert_eq!(
        env,
        [
            "PATH=/image/bin:/bin",
            "HOSTNAME=web-0",
            "LANG=C",
            "FOO=cri",
            "NEW=a=b"
        ]
    );

    // Without an image PATH the default one is kept.
    let s = f
        .spec(
            &pod_config(),
            &c,
            &RuntimeConfig {
                cmd: Some(vec!["/bin/sh".into()]),
                ..Default::default()
            },
        )
        .expect("spec");
    let env = process(&s).env().clone().expect("env");
    assert_eq!(env[0], DEFAULT_PATH);

    for (key, value) in [
        ("", b"x".to_vec()),
        ("A=B", b"x".to_vec()),
        ("BIN", vec![0xff, 0xfe]),
    ] {
        let mut c = ctr();
        c.envs = vec![KeyValue {
            key: key.into(),
            value,
        }];
        let err = f.spec(&pod_config(), &c, &image()).unwrap_err();
        assert!(matches!(err, SpecError::Env { .. }), "{key}: {err}");
    }
}

#[test]
fn cwd_tty_and_defaults() {
    let f = Fixture::new();
    let s = f.spec(&pod_config(), &ctr(), &image()).expect("spec");
    let p = process(&s);
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!(p.oom_score_adj(), Some(0));
    let rl = p.rlimits().clone().expect("rlimits");
    assert_eq!(rl.len(), 1);
    assert_eq!(
        rl[0].typ(),
        oci_spec::runtime::PosixRlimitType::RlimitNofile
    );
    assert!(rl[0].hard() <= 1_048_576 && rl[0].hard() == rl[0].soft() && rl[0].hard() > 0);

    let mut c = ctr();
    c.working_dir = "/work".into();
    c.tty = true;
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    assert_eq!(process(&s).cwd(), Path::new("/work"));
    assert_eq!(process(&s).terminal(), Some(true));

    let s = f
        .spec(
            &pod_config(),
            &ctr(),
            &RuntimeConfig {
                cmd: Some(vec!["x".into()]),
                ..Default::default()
            },
        )
        .expect("spec");
    assert_eq!(process(&s).cwd(), Path::new("/"));

    c.working_dir = "relative".into();
    assert!(f.spec(&pod_config(), &c, &image()).is_err());
}

// ---------------------------------------------------------------- user

fn user_of(
    f: &Fixture,
    sc: LinuxContainerSecurityContext,
    image_user: Option<&str>,
) -> Result<User, SpecError> {
    let img = RuntimeConfig {
        user: image_user.map(String::from),
        ..Default::default()
    };
    resolve_user(&with_sc(sc), &img, &f.rootfs())
}

fn ids(u: &User) -> (u32, u32, Vec<u32>) {
    (u.uid, u.gid, u.additional_gids.clone())
}

#[test]
fn image_user_forms() {
    let f = Fixture::new();
    let sc = LinuxContainerSecurityContext::default;
    assert_eq!(
        ids(&user_of(&f, sc(), None).expect("root")),
        (0, 0, vec![0])
    );
    let alice = user_of(&f, sc(), Some("alice")).expect("alice");
    assert_eq!(ids(&alice), (1000, 1000, vec![1000, 29, 44]));
    assert_eq!(alice.username.as_deref(), Some("alice"));
    assert_eq!(
        ids(&user_of(&f, sc(), Some("1000")).expect("uid")),
        (1000, 1000, vec![1000, 29, 44])
    );
    assert_eq!(
        ids(&user_of(&f, sc(), Some("alice:staff")).expect("name:group")),
        (1000, 50, vec![50, 29, 44])
    );
    assert_eq!(
        ids(&user_of(&f, sc(), Some("33:44")).expect("uid:gid")),
        (33, 44, vec![44])
    );
    assert_eq!(
        ids(&user_of(&f, sc(), Some("www-data:0")).expect("name:gid")),
        (33, 0, vec![0])
    );
    // A uid /etc/passwd does not know runs with gid 0.
    assert_eq!(
        ids(&user_of(&f, sc(), Some("4242")).expect("unknown uid")),
        (4242, 0, vec![0])
    );

    let err = user_of(&f, sc(), Some("mallory")).unwrap_err();
    assert!(
        matches!(err, SpecError::UserNotFound(ref u) if u == "mallory"),
        "{err}"
    );
    let err = user_of(&f, sc(), Some("alice:nogroup")).unwrap_err();
    assert!(matches!(err, SpecError::GroupNotFound(_)), "{err}");
    for bad in [":1", "alice:", "-1", "99999999999"] {
        assert!(user_of(&f, sc(), Some(bad)).is_err(), "{bad}");
    }
}

#[test]
fn cri_user_overrides_image_user() {
    let f = Fixture::new();
    let sc = LinuxContainerSecurityContext {
        run_as_username: "daemon".into(),
        ..Default::default()
    };
    assert_eq!(
        ids(&user_of(&f, sc, Some("alice")).expect("daemon")),
        (1, 1, vec![1])
    );

    let sc = LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 1000 }),
        run_as_group: Some(Int64Value { value: 3000 }),
        supplemental_groups: vec![4000, 29],
        ..Default::default()
    };
    assert_eq!(
        ids(&user_of(&f, sc, Some("daemon")).expect("uid:gid")),
        (1000, 3000, vec![3000, 29, 44, 4000])
    );

    // run_as_user 0 is explicit root, not "unset".
    let sc = LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 0 }),
        ..Default::default()
    };
    assert_eq!(user_of(&f, sc, Some("alice")).expect("root").uid, 0);

    let sc = LinuxContainerSecurityContext {
        run_as_group: Some(Int64Value { value: 5 }),
        ..Default::default()
    };
    assert!(matches!(
        user_of(&f, sc, None).unwrap_err(),
        SpecError::GroupWithoutUser
    ));

    let sc = LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: -1 }),
        ..Default::default()
    };
    assert!(matches!(
        user_of(&f, sc, None).unwrap_err(),
        SpecError::User { .. }
    ));

    // Strict: /etc/group memberships are not added.
    let sc = LinuxContainerSecurityContext {
        run_as_username: "alice".into(),
        supplemental_groups: vec![7],
        supplemental_groups_policy: api::SupplementalGroupsPolicy::Strict as i32,
        ..Default::default()
    };
    assert_eq!(
        ids(&user_of(&f, sc, None).expect("strict")),
        (1000, 1000, vec![1000, 7])
    );
}

#[test]
fn missing_passwd_allows_only_numeric_ids() {
    let f = Fixture::new();
    fs::remove_file(f.rootfs().join("etc/passwd")).expect("rm");
    fs::remove_file(f.rootfs().join("etc/group")).expect("rm");
    let sc = LinuxContainerSecurityContext::default;
    assert_eq!(
        ids(&user_of(&f, sc(), Some("1000:1000")).expect("numeric")),
        (1000, 1000, vec![1000])
    );
    assert!(matches!(
        user_of(&f, sc(), Some("alice")).unwrap_err(),
        SpecError::UserNotFound(_)
    ));
    assert!(matches!(
        user_of(&f, sc(), Some("0:staff")).unwrap_err(),
        SpecError::GroupNotFound(_)
    ));
}

#[test]
fn symlinked_passwd_is_not_followed_to_the_host() {
    let f = Fixture::new();
    let outside = f.dir.path().join("host-passwd");
    fs::write(&outside, "evil:x:666:666::/:/bin/sh\n").expect("host file");
    let passwd = f.rootfs().join("etc/passwd");
    fs::remove_file(&passwd).expect("rm");
    std::os::unix::fs::symlink(&outside, &passwd).expect("absolute symlink");
    let sc = LinuxContainerSecurityContext::default;
    let err = user_of(&f, sc(), Some("evil")).unwrap_err();
    assert!(matches!(err, SpecError::UserNotFound(_)), "{err}");

    // A relative link climbing out with .. stays inside the rootfs too.
    fs::remove_file(&passwd).expect("rm");
    std::os::unix::fs::symlink("../../../../../../host-passwd", &passwd).expect("relative symlink");
    let err = user_of(&f, sc(), Some("evil")).unwrap_err();
    assert!(matches!(err, SpecError::UserNotFound(_)), "{err}");

    // A link that stays inside the rootfs works.
    fs::remove_file(&passwd).expect("rm");
    fs::write(f.rootfs().join("etc/passwd.real"), PASSWD).expect("real");
    std::os::unix::fs::symlink("/etc/passwd.real", &passwd).expect("inner symlink");
    assert_eq!(user_of(&f, sc(), Some("alice")).expect("alice").uid, 1000);
}

#[test]
fn user_lands_in_the_spec() {
    let f = Fixture::new();
    let mut img = image();
    img.user = Some("alice".into());
    let s = f.spec(&pod_config(), &ctr(), &img).expect("spec");
    let u = process(&s).user();
    assert_eq!((u.uid(), u.gid()), (1000, 1000));
    assert_eq!(
        u.additional_gids().clone().expect("gids"),
        vec![1000, 29, 44]
    );
}

// ---------------------------------------------------------------- capabilities, privileged

#[test]
fn default_capabilities_and_add_drop() {
    let f = Fixture::new();
    let s = f.spec(&pod_config(), &ctr(), &image()).expect("spec");
    assert_eq!(caps_of(&s), cap_list(caps::DEFAULT_CAPABILITIES));

    let with = |add: &[&str], drop: &[&str], ambient: &[&str]| {
        with_sc(LinuxContainerSecurityContext {
            capabilities: Some(CriCapability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: ambient.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        })
    };
    let s = f
        .spec(
            &pod_config(),
            &with(
                &["NET_ADMIN", "cap_sys_time"],
                &["CAP_CHOWN", "MKNOD", "KILL"],
                &[],
            ),
            &image(),
        )
        .expect("spec");
    let mut want: Vec<&str> = caps::DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| !["CHOWN", "MKNOD", "KILL"].contains(c))
        .collect();
    want.extend(["NET_ADMIN", "SYS_TIME"]);
    assert_eq!(caps_of(&s), cap_list(&want));

    let s = f
        .spec(
            &pod_config(),
            &with(&["NET_ADMIN"], &["ALL"], &[]),
            &image(),
        )
        .expect("spec");
    assert_eq!(caps_of(&s), cap_list(&["NET_ADMIN"]));
    let s = f
        .spec(&pod_config(), &with(&["ALL"], &["CHOWN"], &[]), &image())
        .expect("spec");
    let all = caps_of(&s);
    assert!(!all.contains(&Capability::Chown));
    assert_eq!(all.len() + 1, caps::available().len());

    let s = f
        .spec(
            &pod_config(),
            &with(&[], &["ALL"], &["NET_BIND_SERVICE"]),
            &image(),
        )
        .expect("spec");
    let c = process(&s).capabilities().clone().expect("caps");
    assert_eq!(caps_of(&s), cap_list(&["NET_BIND_SERVICE"]));
    for set in [c.ambient(), c.inheritable()] {
        assert_eq!(
            set.clone().expect("set").into_iter().collect::<Vec<_>>(),
            vec![Capability::NetBindService]
        );
    }

    let err = f
        .spec(&pod_config(), &with(&["NOT_A_CAP"], &[], &[]), &image())
        .unwrap_err();
    assert!(matches!(err, SpecError::Capability(_)), "{err}");
}

#[test]
fn privileged_needs_privileged_pod() {
    let f = Fixture::new();
    let c = with_sc(LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    });
    assert!(matches!(
        f.spec(&pod_config(), &c, &image()).unwrap_err(),
        SpecError::PrivilegedPod
    ));
    let s = f.spec(&privileged_pod(), &c, &image()).expect("spec");
    let l = linux(&s);
    assert_eq!(caps_of(&s).len(), caps::available().len());
    assert!(l.masked_paths().is_none() && l.readonly_paths().is_none());
    assert!(l.seccomp().is_none());
    assert!(opts(mount_at(&s, "/sys").expect("sys")).contains(&"rw".to_string()));
    assert!(opts(mount_at(&s, "/sys/fs/cgroup").expect("cgroup")).contains(&"rw".to_string()));
    let rules = l
        .resources()
        .as_ref()
        .expect("res")
        .devices()
        .clone()
        .expect("rules");
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow() && rules[0].typ() == Some(LinuxDeviceType::A));
    assert!(
        l.devices()
            .iter()
            .flatten()
            .any(|d| d.path() == Path::new("/dev/null")),
        "host devices are passed through"
    );
    assert!(
        !l.namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    );
}

#[test]
fn unprivileged_security_defaults() {
    let f = Fixture::new();
    let s = f.spec(&pod_config(), &ctr(), &image()).expect("spec");
    let l = linux(&s);
    assert_eq!(
        l.masked_paths().clone().expect("masked"),
        DEFAULT_MASKED_PATHS
    );
    assert_eq!(
        l.readonly_paths().clone().expect("ro"),
        DEFAULT_READONLY_PATHS
    );
    assert!(opts(mount_at(&s, "/sys").expect("sys")).contains(&"ro".to_string()));
    let rules = l
        .resources()
        .as_ref()
        .expect("res")
        .devices()
        .clone()
        .expect("rules");
    assert!(!rules[0].allow() && rules[0].access().as_deref() == Some("rwm"));
    assert!(
        rules
            .iter()
            .any(|r| r.allow() && r.major() == Some(1) && r.minor() == Some(3))
    );
    // No seccomp field: unconfined, as containerd.
    assert!(l.seccomp().is_none());

    let c = with_sc(LinuxContainerSecurityContext {
        masked_paths: vec!["/proc/x".into()],
        readonly_paths: vec!["/proc/y".into()],
        no_new_privs: true,
        ..Default::default()
    });
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    assert_eq!(
        linux(&s).masked_paths().clone().expect("masked"),
        ["/proc/x"]
    );
    assert_eq!(linux(&s).readonly_paths().clone().expect("ro"), ["/proc/y"]);
    assert_eq!(process(&s).no_new_privileges(), Some(true));
}

// ---------------------------------------------------------------- root, mounts

#[test]
fn readonly_rootfs_makes_pod_files_readonly() {
    let f = Fixture::new();
    let s = f.spec(&pod_config(), &ctr(), &image()).expect("spec");
    let root = s.root().as_ref().expect("root");
    assert_eq!(root.path(), &f.rootfs());
    assert_eq!(root.readonly(), Some(false));
    for d in [
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/dev/shm",
    ] {
        assert!(
            opts(mount_at(&s, d).expect(d)).contains(&"rw".to_string()),
            "{d}"
        );
    }

    let c = with_sc(LinuxContainerSecurityContext {
        readonly_rootfs: true,
        ..Default::default()
    });
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    assert_eq!(s.root().as_ref().expect("root").readonly(), Some(true));
    for d in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
        let m = mount_at(&s, d).expect(d);
        assert_eq!(opts(m), ["rbind", "rprivate", "ro"], "{d}");
    }
    assert!(opts(mount_at(&s, "/dev/shm").expect("shm")).contains(&"rw".to_string()));
}

#[test]
fn default_mounts_and_pod_files() {
    let f = Fixture::new();
    let s = f.spec(&pod_config(), &ctr(), &image()).expect("spec");
    let dests: Vec<String> = s
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().display().to_string())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm",
        ]
    );
    let shm = mount_at(&s, "/dev/shm").expect("shm");
    assert_eq!(
        shm.source().as_deref(),
        Some(f.dir.path().join("pod/shm").as_path())
    );
    assert_eq!(shm.typ().as_deref(), Some("bind"));
    let cg = mount_at(&s, "/sys/fs/cgroup").expect("cgroup");
    assert_eq!(cg.typ().as_deref(), Some("cgroup"));
    assert!(
        s.hostname().is_none(),
        "the pod's UTS namespace already has the hostname"
    );

    fs::remove_file(f.dir.path().join("pod/hostname")).expect("rm hostname");
    let s = f.spec(&pod_config(), &ctr(), &image()).expect("spec");
    assert!(mount_at(&s, "/etc/hostname").is_none());

    // IPC NODE: the host's /dev/shm.
    let config = pod_config();
    let mut pod = f.pod(&config);
    pod.shm = None;
    let rootfs = f.rootfs();
    let (c, img) = (ctr(), image());
    let s = container_spec(&pod, &f.ctx(&c, &img, &rootfs)).expect("spec");
    assert_eq!(
        mount_at(&s, "/dev/shm").expect("shm").source().as_deref(),
        Some(Path::new("/dev/shm"))
    );
}

fn cri_mount(
    container: &str,
    host: &Path,
    readonly: bool,
    prop: api::MountPropagation,
) -> api::Mount {
    api::Mount {
        container_path: container.into(),
        host_path: host.display().to_string(),
        readonly,
        propagation: prop as i32,
        ..Default::default()
    }
}

#[test]
fn cri_mounts_sorted_with_overrides() {
    let f = Fixture::new();
    let host = f.dir.path().join("host");
    fs::create_dir_all(&host).expect("host dir");
    fs::write(host.join("hosts"), "127.0.0.1 x\n").expect("hosts");
    let mut c = ctr();
    c.mounts = vec![
        cri_mount(
            "/data/sub/deep",
            &host,
            false,
            api::MountPropagation::PropagationPrivate,
        ),
        cri_mount(
            "/data",
            &host,
            true,
            api::MountPropagation::PropagationPrivate,
        ),
        cri_mount(
            "/etc/hosts",
            &host.join("hosts"),
            false,
            api::MountPropagation::PropagationPrivate,
        ),
        cri_mount(
            "/shared/",
            &host,
            false,
            api::MountPropagation::PropagationPrivate,
        ),
        cri_mount(
            "/created",
            &f.dir.path().join("missing/dir"),
            false,
            api::MountPropagation::PropagationPrivate,
        ),
    ];
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    let dests: Vec<String> = s
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().display().to_string())
        .collect();
    let pos = |d: &str| {
        dests
            .iter()
            .position(|x| x == d)
            .unwrap_or_else(|| panic!("{d} in {dests:?}"))
    };
    assert!(pos("/data") < pos("/data/sub/deep"));
    assert!(pos("/sys") < pos("/sys/fs/cgroup"));
    assert_eq!(dests.iter().filter(|d| *d == "/etc/hosts").count(), 1);
    assert_eq!(
        mount_at(&s, "/etc/hosts")
            .expect("hosts")
            .source()
            .as_deref(),
        Some(host.join("hosts").as_path()),
        "the CRI mount replaces the pod's /etc/hosts"
    );
    assert_eq!(
        opts(mount_at(&s, "/data").expect("data")),
        ["rbind", "rprivate", "ro"]
    );
    assert_eq!(
        opts(mount_at(&s, "/data/sub/deep").expect("deep")),
        ["rbind", "rprivate", "rw"]
    );
    assert!(
        mount_at(&s, "/shared").is_some(),
        "destinations are cleaned"
    );
    assert!(linux(&s).rootfs_propagation().is_none());
    assert!(
        f.dir.path().join("missing/dir").is_dir(),
        "a missing host path is created"
    );

    // Relative destinations, empty host paths, image volumes are refused.
    let bad = [
        cri_mount(
            "relative",
            &host,
            false,
            api::MountPropagation::PropagationPrivate,
        ),
        api::Mount {
            container_path: "/x".into(),
            ..Default::default()
        },
        api::Mount {
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..cri_mount(
                "/img",
                &host,
                true,
                api::MountPropagation::PropagationPrivate,
            )
        },
    ];
    for m in bad {
        let mut c = ctr();
        c.mounts = vec![m];
        let err = f.spec(&pod_config(), &c, &image()).unwrap_err();
        assert!(matches!(err, SpecError::Mount { .. }), "{err}");
    }
}

const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 0:50 / /var/lib/kubelet rw,relatime master:7 - ext4 /dev/vdb rw
41 40 0:51 / /var/lib/kubelet/pods rw,relatime - tmpfs tmpfs rw
42 27 0:52 / /mnt/with\\040space rw,relatime shared:9 - tmpfs tmpfs rw
43 27 0:53 / /private rw,relatime - tmpfs tmpfs rw
44 27 0:54 / /private rw,relatime shared:12 - tmpfs tmpfs rw
";

#[test]
fn propagation_needs_a_propagating_source() {
    use mounts::{check_propagation, mount_of};
    let (bi, h2c) = (
        api::MountPropagation::PropagationBidirectional,
        api::MountPropagation::PropagationHostToContainer,
    );
    let (mp, shared, slave) = mount_of(MOUNTINFO, Path::new("/var/lib/kubelet/x")).expect("mount");
    assert_eq!(
        (mp.as_path(), shared, slave),
        (Path::new("/var/lib/kubelet"), false, true)
    );
    assert!(check_propagation(MOUNTINFO, Path::new("/data"), bi).is_ok());
    assert!(check_propagation(MOUNTINFO, Path::new("/var/lib/kubelet/a"), h2c).is_ok());
    assert!(check_propagation(MOUNTINFO, Path::new("/var/lib/kubelet/a"), bi).is_err());
    let err = check_propagation(MOUNTINFO, Path::new("/var/lib/kubelet/pods/p"), h2c).unwrap_err();
    assert!(err.contains("not a shared or slave mount"), "{err}");
    assert!(check_propagation(MOUNTINFO, Path::new("/mnt/with space/d"), bi).is_ok());
    // Stacked on the same mount point: the last one listed is the visible one.
    assert!(check_propagation(MOUNTINFO, Path::new("/private/d"), bi).is_ok());
    // Not a prefix by characters: /var/lib/kubeletx is on /.
    assert_eq!(
        mount_of(MOUNTINFO, Path::new("/var/lib/kubeletx"))
            .expect("root")
            .0,
        Path::new("/")
    );
}

#[test]
fn propagated_cri_mounts() {
    let f = Fixture::new();
    let host = f.dir.path().join("host");
    fs::create_dir_all(&host).expect("host dir");
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let (_, shared, slave) = mounts::mount_of(&info, &host).expect("mount of tempdir");
    for (prop, option, root, ok) in [
        (
            api::MountPropagation::PropagationHostToContainer,
            "rslave",
            "rslave",
            shared || slave,
        ),
        (
            api::MountPropagation::PropagationBidirectional,
            "rshared",
            "rshared",
            shared,
        ),
    ] {
        let mut c = ctr();
        c.mounts = vec![cri_mount("/data", &host, false, prop)];
        match f.spec(&pod_config(), &c, &image()) {
            Ok(s) => {
                assert!(ok, "{prop:?} accepted on a private mount");
                assert_eq!(
                    opts(mount_at(&s, "/data").expect("data")),
                    ["rbind", option, "rw"]
                );
                assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some(root));
            }
            Err(e) => {
                assert!(!ok, "{prop:?}: {e}");
                assert!(matches!(e, SpecError::Mount { .. }), "{e}");
            }
        }
    }
}

#[test]
fn cri_dev_mount_drops_default_dev_mounts() {
    let f = Fixture::new();
    let mut c = ctr();
    c.mounts = vec![cri_mount(
        "/dev",
        Path::new("/dev"),
        false,
        api::MountPropagation::PropagationPrivate,
    )];
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    assert!(mount_at(&s, "/dev/pts").is_none() && mount_at(&s, "/dev/mqueue").is_none());
    assert_eq!(
        mount_at(&s, "/dev").expect("dev").typ().as_deref(),
        Some("bind")
    );
}

// ---------------------------------------------------------------- namespaces, cgroups, resources

fn namespaces_of(s: &Spec) -> HashMap<LinuxNamespaceType, Option<PathBuf>> {
    linux(s)
        .namespaces()
        .iter()
        .flatten()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

#[test]
fn namespaces_join_the_pod() {
    let f = Fixture::new();
    let s = f.spec(&pod_config(), &ctr(), &image()).expect("spec");
    let ns = namespaces_of(&s);
    let p = f.dir.path().join("pod/ns");
    assert_eq!(ns[&LinuxNamespaceType::Network], Some(p.join("net")));
    assert_eq!(ns[&LinuxNamespaceType::Ipc], Some(p.join("ipc")));
    assert_eq!(ns[&LinuxNamespaceType::Uts], Some(p.join("uts")));
    assert_eq!(ns[&LinuxNamespaceType::Mount], None);
    assert_eq!(
        ns[&LinuxNamespaceType::Pid],
        None,
        "the pod shares no pid namespace: a new one"
    );
    assert_eq!(ns[&LinuxNamespaceType::Cgroup], None);
    assert!(!ns.contains_key(&LinuxNamespaceType::User));
    assert_eq!(
        linux(&s).cgroups_path().as_deref(),
        Some(Path::new("/kubepods/pod1/ctr1"))
    );
    assert_eq!(cgroups_path("berth/p/", "c"), Path::new("/berth/p/c"));
    assert_eq!(cgroups_path("", "c"), Path::new("/c"));
}

#[test]
fn node_namespaces_are_absent() {
    let f = Fixture::new();
    let config = pod_config();
    let mut pod = f.pod(&config);
    pod.net_ns = None;
    pod.ipc_ns = None;
    pod.uts_ns = None;
    let c = with_sc(LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Node as i32,
            ipc: NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let rootfs = f.rootfs();
    let img = image();
    let s = container_spec(&pod, &f.ctx(&c, &img, &rootfs)).expect("spec");
    let ns = namespaces_of(&s);
    for t in [
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Pid,
    ] {
        assert!(!ns.contains_key(&t), "{t:?}");
    }
    assert!(ns.contains_key(&LinuxNamespaceType::Mount));
    assert!(s.hostname().is_none());
}

#[test]
fn pid_namespace_modes() {
    let f = Fixture::new();
    let config = pod_config();
    let rootfs = f.rootfs();
    let img = image();
    let pid = |mode: NamespaceMode| {
        with_sc(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: mode as i32,
                target_id: "other".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let mut pod = f.pod(&config);
    pod.pid_ns = Some(PathBuf::from("/run/pod/pid"));
    let c = pid(NamespaceMode::Pod);
    let s = container_spec(&pod, &f.ctx(&c, &img, &rootfs)).expect("spec");
    assert_eq!(
        namespaces_of(&s)[&LinuxNamespaceType::Pid],
        Some(PathBuf::from("/run/pod/pid"))
    );

    let c = pid(NamespaceMode::Container);
    let s = container_spec(&pod, &f.ctx(&c, &img, &rootfs)).expect("spec");
    assert_eq!(namespaces_of(&s)[&LinuxNamespaceType::Pid], None);

    let c = pid(NamespaceMode::Target);
    let err = container_spec(&pod, &f.ctx(&c, &img, &rootfs)).unwrap_err();
    assert!(matches!(err, SpecError::Namespace(_)), "{err}");
    let mut cx = f.ctx(&c, &img, &rootfs);
    cx.target_pid_ns = Some(PathBuf::from("/proc/42/ns/pid"));
    let s = container_spec(&pod, &cx).expect("spec");
    assert_eq!(
        namespaces_of(&s)[&LinuxNamespaceType::Pid],
        Some(PathBuf::from("/proc/42/ns/pid"))
    );

    let c = with_sc(LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            userns_options: Some(api::UserNamespace {
                mode: NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(matches!(
        container_spec(&pod, &f.ctx(&c, &img, &rootfs)).unwrap_err(),
        SpecError::Namespace(_)
    ));
}

#[test]
fn resources_oom_and_sysctls() {
    let f = Fixture::new();
    let mut c = ctr();
    c.linux.as_mut().expect("linux").resources = Some(LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: 999,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        hugepage_limits: vec![api::HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 << 20,
        }],
        ..Default::default()
    });
    let mut pod = pod_config();
    pod.linux = Some(LinuxPodSandboxConfig {
        sysctls: HashMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]),
        ..Default::default()
    });
    let s = f.spec(&pod, &c, &image()).expect("spec");
    let r = linux(&s).resources().clone().expect("resources");
    let cpu = r.cpu().clone().expect("cpu");
    assert_eq!(
        (cpu.period(), cpu.quota(), cpu.shares()),
        (Some(100_000), Some(50_000), Some(512))
    );
    assert_eq!(
        (cpu.cpus().as_deref(), cpu.mems().as_deref()),
        (Some("0-1"), Some("0"))
    );
    let mem = r.memory().expect("memory");
    assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(64 << 20)));
    let hp = r.hugepage_limits().clone().expect("hugepages");
    assert_eq!(
        (hp[0].page_size().as_str(), hp[0].limit()),
        ("2MB", 4 << 20)
    );
    assert_eq!(process(&s).oom_score_adj(), Some(999));
    assert_eq!(
        linux(&s).sysctl().clone().expect("sysctl")["net.ipv4.ip_forward"],
        "1"
    );

    c.linux.as_mut().expect("linux").resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        memory_swap_limit_in_bytes: 128 << 20,
        ..Default::default()
    });
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    let mem = linux(&s)
        .resources()
        .clone()
        .expect("res")
        .memory()
        .expect("mem");
    assert_eq!(mem.swap(), Some(128 << 20));
    assert!(linux(&s).resources().clone().expect("res").cpu().is_none());
}

// ---------------------------------------------------------------- devices

#[test]
fn cri_devices() {
    let f = Fixture::new();
    let mut c = ctr();
    c.devices = vec![Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    let l = linux(&s);
    let d = l.devices().clone().expect("devices");
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0].path().as_path(),
            d[0].typ(),
            d[0].major(),
            d[0].minor()
        ),
        (Path::new("/dev/mynull"), LinuxDeviceType::C, 1, 3)
    );
    let rules = l
        .resources()
        .as_ref()
        .expect("res")
        .devices()
        .clone()
        .expect("rules");
    let last = rules.last().expect("rule");
    assert!(last.allow() && last.access().as_deref() == Some("rw") && last.major() == Some(1));

    let file = f.dir.path().join("plain");
    fs::write(&file, "x").expect("file");
    for (host, perms) in [
        (file.display().to_string(), "rw"),
        ("/dev/null".into(), "rwx"),
        ("/nonexistent/dev".into(), ""),
    ] {
        c.devices = vec![Device {
            container_path: "/dev/x".into(),
            host_path: host.clone(),
            permissions: perms.into(),
        }];
        let err = f.spec(&pod_config(), &c, &image()).unwrap_err();
        assert!(matches!(err, SpecError::Device { .. }), "{host}: {err}");
    }
}

// ---------------------------------------------------------------- seccomp

fn seccomp_ctr(t: ProfileType, r: &str) -> ContainerConfig {
    with_sc(LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        }),
        ..Default::default()
    })
}

#[test]
fn seccomp_profiles() {
    let f = Fixture::new();
    let s = f
        .spec(
            &pod_config(),
            &seccomp_ctr(ProfileType::RuntimeDefault, ""),
            &image(),
        )
        .expect("spec");
    let sc = linux(&s).seccomp().clone().expect("default profile");
    assert_eq!(sc.default_action(), LinuxSeccompAction::ScmpActErrno);
    let rules = sc.syscalls().clone().expect("rules");
    let allowed = |n: &str| {
        rules.iter().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args().is_none()
                && r.names().iter().any(|x| x == n)
        })
    };
    assert!(allowed("read") && allowed("execve") && allowed("chroot"));
    assert!(!allowed("mount") && !allowed("ptrace") && !allowed("reboot") && !allowed("unshare"));
    assert!(
        rules
            .iter()
            .any(|r| r.names() == &["clone"] && r.args().is_some()),
        "clone without namespace flags"
    );

    let s = f
        .spec(
            &pod_config(),
            &seccomp_ctr(ProfileType::Unconfined, ""),
            &image(),
        )
        .expect("spec");
    assert!(linux(&s).seccomp().is_none());

    let missing = f.dir.path().join("nope.json");
    let err = f
        .spec(
            &pod_config(),
            &seccomp_ctr(ProfileType::Localhost, &missing.display().to_string()),
            &image(),
        )
        .unwrap_err();
    assert!(
        matches!(err, SpecError::Seccomp(ref m) if m.contains("not found")),
        "{err}"
    );
    let err = f
        .spec(
            &pod_config(),
            &seccomp_ctr(ProfileType::Localhost, "rel.json"),
            &image(),
        )
        .unwrap_err();
    assert!(matches!(err, SpecError::Seccomp(_)), "{err}");

    let bad = f.dir.path().join("bad.json");
    fs::write(&bad, "{not json").expect("bad");
    let err = f
        .spec(
            &pod_config(),
            &seccomp_ctr(ProfileType::Localhost, &bad.display().to_string()),
            &image(),
        )
        .unwrap_err();
    assert!(matches!(err, SpecError::Seccomp(_)), "{err}");

    let good = f.dir.path().join("docker.json");
    fs::write(
        &good,
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
            "syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":1},
                        {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
                        {"names":["chmod"],"action":"SCMP_ACT_ERRNO","excludes":{"caps":["CAP_SYS_ADMIN"]},"comment":"x"}]}"#,
    )
    .expect("profile");
    let s = f
        .spec(
            &pod_config(),
            &seccomp_ctr(ProfileType::Localhost, &good.display().to_string()),
            &image(),
        )
        .expect("spec");
    let sc = linux(&s).seccomp().clone().expect("localhost profile");
    assert_eq!(sc.default_action(), LinuxSeccompAction::ScmpActAllow);
    let names: Vec<Vec<String>> = sc
        .syscalls()
        .iter()
        .flatten()
        .map(|r| r.names().clone())
        .collect();
    assert_eq!(
        names,
        vec![vec!["mkdir".to_string()], vec!["chmod".to_string()]]
    );
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(sc.architectures().clone().expect("arches").len(), 2);
    }
}

// ---------------------------------------------------------------- annotations, json, stop signal

#[test]
fn annotations_and_json_round_trip() {
    let f = Fixture::new();
    let mut c = ctr();
    c.annotations = HashMap::from([("user.key".to_string(), "v".to_string())]);
    let s = f.spec(&pod_config(), &c, &image()).expect("spec");
    let a = s.annotations().clone().expect("annotations");
    assert_eq!(a["user.key"], "v");
    assert_eq!(a["io.kubernetes.cri.container-type"], "container");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], "pod1");
    assert_eq!(a["io.kubernetes.cri.container-name"], "app");
    assert_eq!(
        a["io.kubernetes.cri.image-name"],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "default");

    // What the runtime loads from config.json is what we built.
    let json = serde_json::to_string(&s).expect("serialize");
    let back: Spec = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, s);
}

#[test]
fn stop_signal_sources() {
    let img = |s: Option<&str>| RuntimeConfig {
        stop_signal: s.map(String::from),
        ..Default::default()
    };
    let c = ContainerConfig::default();
    assert_eq!(stop_signal(&c, &img(None)).expect("default"), libc::SIGTERM);
    for (raw, want) in [
        ("SIGQUIT", libc::SIGQUIT),
        ("QUIT", libc::SIGQUIT),
        ("sigusr1", libc::SIGUSR1),
        ("3", 3),
        ("9", libc::SIGKILL),
        ("SIGRTMIN+2", 36),
        ("RTMAX-1", 63),
        ("SIGRTMIN", 34),
    ] {
        assert_eq!(stop_signal(&c, &img(Some(raw))).expect(raw), want, "{raw}");
    }
    for bad in ["SIGNOPE", "0", "65", "-1", "RTMIN+40", ""] {
        if bad.is_empty() {
            assert_eq!(
                stop_signal(&c, &img(Some(bad))).expect("empty"),
                libc::SIGTERM
            );
        } else {
            assert!(
                matches!(
                    stop_signal(&c, &img(Some(bad))).unwrap_err(),
                    SpecError::Signal(_)
                ),
                "{bad}"
            );
        }
    }
    // The CRI field wins over the image.
    let c = ContainerConfig {
        stop_signal: api::Signal::Sigint as i32,
        ..Default::default()
    };
    assert_eq!(
        stop_signal(&c, &img(Some("SIGQUIT"))).expect("cri"),
        libc::SIGINT
    );
    let c = ContainerConfig {
        stop_signal: api::Signal::Sigrtminplus3 as i32,
        ..Default::default()
    };
    assert_eq!(stop_signal(&c, &img(None)).expect("rt"), 37);
    let c = ContainerConfig {
        stop_signal: 9999,
        ..Default::default()
    };
    assert!(stop_signal(&c, &img(None)).is_err());
}
