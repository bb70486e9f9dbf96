//! Pods and containers as the kubelet drives them, against a real daemon, runtime and registry.

use std::time::Duration;

use berth_cri::api::*;
use berth_tests::kubelet::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_lifecycle_of_a_pod_and_its_container() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "web").await;
    let s = env
        .c
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.0.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.status.as_ref().unwrap().state,
        PodSandboxState::SandboxReady as i32
    );
    assert_eq!(
        s.status.as_ref().unwrap().metadata.as_ref().unwrap().name,
        "web"
    );

    let id = create_new(
        &mut env,
        &pod,
        (
            "app",
            &["sh", "-c", "echo hello; echo oops >&2; sleep 3600"],
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        status(&mut env, &id).await.state,
        ContainerState::ContainerCreated as i32
    );
    start(&mut env, &id).await;
    let st = status(&mut env, &id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    assert!(st.started_at > 0);
    assert_eq!(st.image_id, env.reg.image.id());
    assert!(std::path::Path::new(&st.log_path).is_absolute());

    // The container sees its pod: hostname, DNS, PID 1.
    let out = exec(&mut env, &id, &["hostname"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web");
    let out = exec(&mut env, &id, &["cat", "/etc/resolv.conf"], 10)
        .await
        .unwrap();
    let resolv = String::from_utf8_lossy(&out.stdout);
    assert!(
        resolv.contains("nameserver 10.96.0.10")
            && resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );
    let out = exec(
        &mut env,
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
        (3, &b"out\n"[..], &b"err\n"[..])
    );

    // Logs in the CRI format, in the file the kubelet reads.
    let log = std::fs::read_to_string(&st.log_path).unwrap();
    assert!(log.lines().any(|l| l.ends_with(" stdout F hello")), "{log}");
    assert!(log.lines().any(|l| l.ends_with(" stderr F oops")), "{log}");

    env.c
        .runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        })
        .await
        .unwrap();
    let st = wait_exited(&mut env, &id).await;
    assert!(st.finished_at >= st.started_at);

    let listed = env
        .c
        .runtime
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod.0.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);

    env.c
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    let pods = env
        .c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty());
    // Nothing left pinned.
    assert!(!env.d.dir.path().join("s/pods").join(&pod.0).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_reasons() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "exits").await;
    let ok = create_new(&mut env, &pod, ("ok", &["true"])).await.unwrap();
    let three = create_new(&mut env, &pod, ("three", &["sh", "-c", "exit 3"]))
        .await
        .unwrap();
    start(&mut env, &ok).await;
    start(&mut env, &three).await;
    let s = wait_exited(&mut env, &ok).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    let s = wait_exited(&mut env, &three).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_codes() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "errs").await;
    let dup = run_pod_again(&mut env, "errs").await;
    assert_eq!(dup.code(), tonic::Code::AlreadyExists, "{dup:?}");

    let mut missing_image = container_config(&env, "x", &["true"]);
    missing_image.image = Some(ImageSpec {
        image: "never/pulled:v1".into(),
        ..Default::default()
    });
    let e = create(&mut env, &pod, missing_image).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    let first = create_new(&mut env, &pod, ("same", &["true"]))
        .await
        .unwrap();
    let e = create_new(&mut env, &pod, ("same", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains(&first), "{}", e.message());

    let e = create_new(
        &mut env,
        &("nosuchpod".into(), pod.1.clone()),
        ("y", &["true"]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    let e = env
        .c
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: "nosuch".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Idempotent calls on unknown ids succeed.
    env.c
        .runtime
        .stop_container(StopContainerRequest {
            container_id: "nosuch".into(),
            timeout: 0,
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: "nosuch".into(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: "nosuch".into(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: "nosuch".into(),
        })
        .await
        .unwrap();
}

async fn run_pod_again(env: &mut Env, name: &str) -> tonic::Status {
    env.c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config(env, name)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_timeout_kills_the_command() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "slow").await;
    let id = create_new(&mut env, &pod, ("app", &["sleep", "3600"]))
        .await
        .unwrap();
    start(&mut env, &id).await;
    let started = std::time::Instant::now();
    let e = exec(&mut env, &id, &["sleep", "60"], 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Debian's busybox-static has no pgrep: read ps.
    let out = exec(&mut env, &id, &["ps"], 10).await.unwrap();
    let ps = String::from_utf8_lossy(&out.stdout);
    assert!(
        !ps.contains("sleep 60"),
        "the timed-out sleep must be gone:\n{ps}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_finds_its_pods_and_containers_again() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "survivor").await;
    let running = create_new(&mut env, &pod, ("running", &["sleep", "3600"]))
        .await
        .unwrap();
    let exits = create_new(&mut env, &pod, ("exits", &["sh", "-c", "sleep 1; exit 7"]))
        .await
        .unwrap();
    start(&mut env, &running).await;
    start(&mut env, &exits).await;

    env.d.kill().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // `exits` finishes while the daemon is down
    env.d.spawn().await.unwrap();
    env.c = env.d.client().await.unwrap();

    let pods = env
        .c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, PodSandboxState::SandboxReady as i32);
    assert_eq!(
        status(&mut env, &running).await.state,
        ContainerState::ContainerRunning as i32
    );
    let s = wait_exited(&mut env, &exits).await;
    assert_eq!(s.exit_code, 7);
    assert!(s.finished_at > 0);
    // Still controllable.
    let out = exec(&mut env, &running, &["echo", "alive"], 10)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"alive\n");
    env.c
        .runtime
        .stop_container(StopContainerRequest {
            container_id: running.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        wait_exited(&mut env, &running).await.state,
        ContainerState::ContainerExited as i32
    );
    env.c
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_shared_pid_namespace_has_the_pods_init_as_pid_1() {
    let mut env = env().await;
    let pod = run_shared_pid_pod(&mut env, "sharedpid").await;
    let id = pod.0.clone();
    let a = create_new(&mut env, &pod, ("a", &["sleep", "3601"]))
        .await
        .unwrap();
    let b = create_new(&mut env, &pod, ("b", &["sleep", "3602"]))
        .await
        .unwrap();
    start(&mut env, &a).await;
    start(&mut env, &b).await;
    let out = exec(&mut env, &a, &["cat", "/proc/1/comm"], 10)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "berth-pod-init"
    );
    // Each container sees the other's processes.
    let ps = exec(&mut env, &a, &["ps"], 10).await.unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        ps.contains("sleep 3602"),
        "container a should see b's process:\n{ps}"
    );

    let init = std::fs::read_to_string(
        env.d
            .dir
            .path()
            .join("s/pods")
            .join(&id)
            .join("ns/pid-init"),
    )
    .unwrap();
    let init_pid = init.split_whitespace().next().unwrap().to_string();
    let cgroups = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup")).unwrap();
    assert!(
        cgroups.contains(&format!("/berth/pod-{id}")),
        "the pod init belongs in the pod cgroup:\n{cgroups}"
    );
    env.c
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    for _ in 0..100 {
        let comm = std::fs::read_to_string(format!("/proc/{init_pid}/comm")).unwrap_or_default();
        if comm.trim() != "berth-pod-init" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the pod init {init_pid} outlived its pod");
}

fn with_security(
    mut config: ContainerConfig,
    f: impl FnOnce(&mut LinuxContainerSecurityContext),
) -> ContainerConfig {
    let linux = config.linux.get_or_insert_with(Default::default);
    f(linux.security_context.get_or_insert_with(Default::default));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_oom_killed_and_reported_so() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "oom").await;
    let mut config = container_config(
        &env,
        "hog",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=20M"],
    );
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 15 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut env, &pod, config).await.unwrap();
    start(&mut env, &id).await;
    let s = wait_exited(&mut env, &id).await;
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (137, "OOMKilled"),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_an_image_user_name_and_a_read_only_rootfs() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "secure").await;
    let config = with_security(container_config(&env, "app", &["sleep", "3600"]), |sc| {
        sc.run_as_username = "berth".into();
        sc.readonly_rootfs = true;
    });
    let id = create(&mut env, &pod, config).await.unwrap();
    start(&mut env, &id).await;
    let out = exec(&mut env, &id, &["id", "-u"], 10).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1000",
        "the image's user berth is uid 1000"
    );
    let st = status(&mut env, &id).await;
    assert_eq!(st.user.and_then(|u| u.linux).map(|l| l.uid), Some(1000));
    let out = exec(&mut env, &id, &["touch", "/newfile"], 10)
        .await
        .unwrap();
    assert_ne!(out.exit_code, 0, "a read-only rootfs must refuse writes");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only"),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ghost = with_security(container_config(&env, "ghost", &["true"]), |sc| {
        sc.run_as_username = "nosuchuser".into()
    });
    let e = create(&mut env, &pod, ghost).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_container_resources_reaches_the_cgroup() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "resize").await;
    let id = create_new(&mut env, &pod, ("app", &["sleep", "3600"]))
        .await
        .unwrap();
    start(&mut env, &id).await;
    env.c
        .runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let pid = env
        .c
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info["info"]
        .clone();
    let pid = serde_json::from_str::<serde_json::Value>(&pid).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mem_path = cgroup
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()));
    if let Some(p) = mem_path {
        let limit =
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{p}/memory.limit_in_bytes"))
                .unwrap();
        assert_eq!(limit.trim(), (64u64 << 20).to_string());
    } else {
        let max = std::fs::read_to_string(format!(
            "/sys/fs/cgroup{}/memory.max",
            cgroup.trim().trim_start_matches("0::")
        ))
        .unwrap();
        assert_eq!(max.trim(), (64u64 << 20).to_string());
    }
    let st = status(&mut env, &id).await;
    assert_eq!(
        st.resources
            .and_then(|r| r.linux)
            .map(|l| l.memory_limit_in_bytes),
        Some(64 << 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_arrive_in_order() {
    let mut env = env().await;
    let mut events = env
        .c
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let pod = run_pod(&mut env, "events").await;
    let id = create_new(&mut env, &pod, ("app", &["sleep", "3600"]))
        .await
        .unwrap();
    start(&mut env, &id).await;
    env.c
        .runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if e.container_id == id {
            seen.push(e.container_event_type);
        }
    }
    use ContainerEventType::*;
    assert_eq!(
        seen,
        [
            ContainerCreatedEvent,
            ContainerStartedEvent,
            ContainerStoppedEvent,
            ContainerDeletedEvent
        ]
        .map(|e| e as i32)
    );
}

/// Regression: in a pod-shared PID namespace the killed exec was left a zombie of the pod init (critest's
/// "execSync with timeout" runs `pgrep sleep` afterwards and wants nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_timeout_leaves_no_zombie_in_a_shared_pid_namespace() {
    let mut env = env().await;
    let pod = run_shared_pid_pod(&mut env, "sharedexec").await;
    let ctr = create_new(&mut env, &pod, ("app", &["tail", "-f", "/dev/null"]))
        .await
        .unwrap();
    start(&mut env, &ctr).await;
    let e = exec(&mut env, &ctr, &["sleep", "4321"], 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
    // Right away, as critest looks: it runs `pgrep sleep`; Debian's busybox-static has no pgrep, and ps shows a
    // zombie as `[sleep]`.
    let out = exec(&mut env, &ctr, &["ps"], 10).await.unwrap();
    let ps = String::from_utf8_lossy(&out.stdout);
    assert!(
        !ps.contains("sleep"),
        "the timed-out sleep is still there:\n{ps}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_id_prefix_state_and_labels() {
    let mut env = env().await;
    let a = run_pod(&mut env, "fa").await;
    let b = run_pod(&mut env, "fb").await;
    env.c
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: b.0.clone(),
        })
        .await
        .unwrap();
    let pods = |filter: PodSandboxFilter| {
        let mut c = env.c.clone();
        async move {
            let mut ids: Vec<String> = c
                .runtime
                .list_pod_sandbox(ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let ready = PodSandboxStateValue {
        state: PodSandboxState::SandboxReady as i32,
    };
    assert_eq!(
        pods(PodSandboxFilter {
            state: Some(ready),
            ..Default::default()
        })
        .await,
        vec![a.0.clone()]
    );
    let by_label = PodSandboxFilter {
        label_selector: [("app".to_string(), "fb".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(pods(by_label).await, vec![b.0.clone()]);
    assert_eq!(
        pods(PodSandboxFilter {
            id: a.0[..12].to_string(),
            ..Default::default()
        })
        .await,
        vec![a.0.clone()]
    );

    let running = create_new(&mut env, &a, ("running", &["sleep", "3600"]))
        .await
        .unwrap();
    let created = create_new(&mut env, &a, ("created", &["true"]))
        .await
        .unwrap();
    start(&mut env, &running).await;
    let containers = |filter: ContainerFilter| {
        let mut c = env.c.clone();
        async move {
            c.runtime
                .list_containers(ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        }
    };
    let state = |s: ContainerState| Some(ContainerStateValue { state: s as i32 });
    assert_eq!(
        containers(ContainerFilter {
            state: state(ContainerState::ContainerRunning),
            ..Default::default()
        })
        .await,
        vec![running.clone()]
    );
    assert_eq!(
        containers(ContainerFilter {
            state: state(ContainerState::ContainerCreated),
            ..Default::default()
        })
        .await,
        vec![created.clone()]
    );
    let by_label = ContainerFilter {
        label_selector: [("container".to_string(), "created".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(containers(by_label).await, vec![created]);
    assert!(
        containers(ContainerFilter {
            pod_sandbox_id: b.0.clone(),
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

/// A RuntimeClass handler other than the built-in runtime: the same bundle, run by runc under the same monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_can_ask_for_the_runc_handler() {
    let mut env = env().await;
    let config = pod_config(&env, "viarunc");
    let id = env
        .c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "runc".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let pod = (id.clone(), config);
    let ctr = create_new(
        &mut env,
        &pod,
        ("app", &["sh", "-c", "echo via-runc; sleep 3600"]),
    )
    .await
    .unwrap();
    start(&mut env, &ctr).await;
    let out = exec(&mut env, &ctr, &["hostname"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "viarunc");
    let status = env
        .c
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id,
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status.unwrap().runtime_handler, "runc");
    let info = env
        .c
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info["info"]
        .clone();
    assert!(info.contains("\"runtimeHandler\":\"runc\""), "{info}");
    env.c
        .runtime
        .stop_container(StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        wait_exited(&mut env, &ctr).await.state,
        ContainerState::ContainerExited as i32
    );

    let e = env
        .c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config(&env, "nohandler")),
            runtime_handler: "kata".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
}

/// Log rotation as the kubelet does it: rename the file, ask for a reopen, and new lines go to a fresh file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_container_log_follows_a_rotation() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "rotate").await;
    let script = "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done";
    let ctr = create_new(&mut env, &pod, ("talker", &["sh", "-c", script]))
        .await
        .unwrap();
    start(&mut env, &ctr).await;
    let log = std::path::PathBuf::from(status(&mut env, &ctr).await.log_path);
    for _ in 0..100 {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("line3")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    env.c
        .runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
    let mut fresh = String::new();
    for _ in 0..100 {
        fresh = std::fs::read_to_string(&log).unwrap_or_default();
        if fresh.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fresh.lines().count() >= 2,
        "no new lines after the reopen: {fresh:?}"
    );
    assert!(
        fresh.lines().all(|l| l.contains(" stdout F line")),
        "{fresh}"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    let last_old: u32 = old
        .lines()
        .last()
        .and_then(|l| l.rsplit("line").next())
        .unwrap()
        .parse()
        .unwrap();
    let first_new: u32 = fresh
        .lines()
        .next()
        .and_then(|l| l.rsplit("line").next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        first_new > last_old,
        "lines continue in order across files: {last_old} then {first_new}"
    );

    env.c
        .runtime
        .stop_container(StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let e = env
        .c
        .runtime
        .reopen_container_log(ReopenContainerLogRequest { container_id: ctr })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_pod_sandbox_resources_limits_the_pod_cgroup() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "podres").await;
    let ctr = create_new(&mut env, &pod, ("app", &["sleep", "3600"]))
        .await
        .unwrap();
    start(&mut env, &ctr).await;
    env.c
        .runtime
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.0.clone(),
            overhead: Some(LinuxContainerResources {
                memory_limit_in_bytes: 8 << 20,
                ..Default::default()
            }),
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 120 << 20,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // The pod cgroup is Berth's own here (no cgroup_parent given): /berth/pod-<id>.
    let dir = format!("pod-{}", pod.0);
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory/berth")
        .join(&dir)
        .join("memory.limit_in_bytes");
    let v2 = std::path::Path::new("/sys/fs/cgroup/berth")
        .join(&dir)
        .join("memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert_eq!(
        limit.trim(),
        (128u64 << 20).to_string(),
        "resources plus overhead"
    );
    let e = env
        .c
        .runtime
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "nosuch".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

/// A pod whose containers share one PID namespace (`namespace_options.pid = POD`).
async fn run_shared_pid_pod(env: &mut Env, name: &str) -> (String, PodSandboxConfig) {
    let mut config = pod_config(env, name);
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = NamespaceMode::Pod as i32;
    }
    let id = env
        .c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    (id, config)
}
