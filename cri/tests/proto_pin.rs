//! Pins the wire interface: the RPCs of CRI v1 as of cri-api v0.36, and the newer fields an older copy lacks.
//! A change here means the proto drifted from the published API, which kubelets and crictl would notice.

use std::collections::BTreeMap;

const PROTO: &str = include_str!("../proto/api.proto");

/// `service -> [rpc (request) returns (response)]`, read from the proto text.
fn rpcs() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut service = None;
    for line in PROTO.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("service ") {
            service = rest.split_whitespace().next().map(str::to_string);
        } else if line == "}" {
            service = None;
        } else if let (Some(s), Some(rpc)) = (&service, line.strip_prefix("rpc ")) {
            let sig = rpc
                .trim_end_matches("{}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            out.entry(s.clone()).or_default().push(sig);
        }
    }
    out
}

#[test]
fn runtime_service_has_the_35_rpcs_of_v0_36() {
    let expected = [
        "Version(VersionRequest) returns (VersionResponse)",
        "RunPodSandbox(RunPodSandboxRequest) returns (RunPodSandboxResponse)",
        "StopPodSandbox(StopPodSandboxRequest) returns (StopPodSandboxResponse)",
        "RemovePodSandbox(RemovePodSandboxRequest) returns (RemovePodSandboxResponse)",
        "PodSandboxStatus(PodSandboxStatusRequest) returns (PodSandboxStatusResponse)",
        "ListPodSandbox(ListPodSandboxRequest) returns (ListPodSandboxResponse)",
        "StreamPodSandboxes(StreamPodSandboxesRequest) returns (stream StreamPodSandboxesResponse)",
        "CreateContainer(CreateContainerRequest) returns (CreateContainerResponse)",
        "StartContainer(StartContainerRequest) returns (StartContainerResponse)",
        "StopContainer(StopContainerRequest) returns (StopContainerResponse)",
        "RemoveContainer(RemoveContainerRequest) returns (RemoveContainerResponse)",
        "ListContainers(ListContainersRequest) returns (ListContainersResponse)",
        "StreamContainers(StreamContainersRequest) returns (stream StreamContainersResponse)",
        "ContainerStatus(ContainerStatusRequest) returns (ContainerStatusResponse)",
        "UpdateContainerResources(UpdateContainerResourcesRequest) returns (UpdateContainerResourcesResponse)",
        "ReopenContainerLog(ReopenContainerLogRequest) returns (ReopenContainerLogResponse)",
        "ExecSync(ExecSyncRequest) returns (ExecSyncResponse)",
        "Exec(ExecRequest) returns (ExecResponse)",
        "Attach(AttachRequest) returns (AttachResponse)",
        "PortForward(PortForwardRequest) returns (PortForwardResponse)",
        "ContainerStats(ContainerStatsRequest) returns (ContainerStatsResponse)",
        "ListContainerStats(ListContainerStatsRequest) returns (ListContainerStatsResponse)",
        "StreamContainerStats(StreamContainerStatsRequest) returns (stream StreamContainerStatsResponse)",
        "PodSandboxStats(PodSandboxStatsRequest) returns (PodSandboxStatsResponse)",
        "ListPodSandboxStats(ListPodSandboxStatsRequest) returns (ListPodSandboxStatsResponse)",
        "StreamPodSandboxStats(StreamPodSandboxStatsRequest) returns (stream StreamPodSandboxStatsResponse)",
        "UpdateRuntimeConfig(UpdateRuntimeConfigRequest) returns (UpdateRuntimeConfigResponse)",
        "Status(StatusRequest) returns (StatusResponse)",
        "CheckpointContainer(CheckpointContainerRequest) returns (CheckpointContainerResponse)",
        "GetContainerEvents(GetEventsRequest) returns (stream ContainerEventResponse)",
        "ListMetricDescriptors(ListMetricDescriptorsRequest) returns (ListMetricDescriptorsResponse)",
        "ListPodSandboxMetrics(ListPodSandboxMetricsRequest) returns (ListPodSandboxMetricsResponse)",
        "StreamPodSandboxMetrics(StreamPodSandboxMetricsRequest) returns (stream StreamPodSandboxMetricsResponse)",
        "RuntimeConfig(RuntimeConfigRequest) returns (RuntimeConfigResponse)",
        "UpdatePodSandboxResources(UpdatePodSandboxResourcesRequest) returns (UpdatePodSandboxResourcesResponse)",
    ];
    assert_eq!(rpcs()["RuntimeService"], expected);
}

#[test]
fn image_service_has_the_6_rpcs_of_v0_36() {
    let expected = [
        "ListImages(ListImagesRequest) returns (ListImagesResponse)",
        "StreamImages(StreamImagesRequest) returns (stream StreamImagesResponse)",
        "ImageStatus(ImageStatusRequest) returns (ImageStatusResponse)",
        "PullImage(PullImageRequest) returns (PullImageResponse)",
        "RemoveImage(RemoveImageRequest) returns (RemoveImageResponse)",
        "ImageFsInfo(ImageFsInfoRequest) returns (ImageFsInfoResponse)",
    ];
    assert_eq!(rpcs()["ImageService"], expected);
    assert_eq!(rpcs().len(), 2, "exactly two services");
}

#[test]
fn newer_fields_have_their_v0_36_numbers_and_types() {
    // Compile-time: the generated types carry the fields older bindings lack.
    let m = berth_cri::api::Mount {
        image_sub_path: "sub".into(),
        ..Default::default()
    };
    let kv = berth_cri::api::KeyValue {
        key: "k".into(),
        value: b"\xffbytes".to_vec(),
    };
    let cfg = berth_cri::api::ContainerConfig {
        stop_signal: berth_cri::api::Signal::Sigquit as i32,
        ..Default::default()
    };
    assert_eq!(
        (m.image_sub_path.as_str(), kv.value.len(), cfg.stop_signal),
        ("sub", 6, 18)
    );
    // Wire numbers, from the proto text.
    for (message, field) in [
        ("Mount", "string image_sub_path = 10;"),
        ("KeyValue", "bytes value = 2;"),
        ("ContainerConfig", "Signal stop_signal = 18;"),
        ("ContainerStatus", "Signal stop_signal = 19;"),
        ("CpuUsage", "PsiStats psi = 4;"),
    ] {
        let body = PROTO
            .split(&format!("message {message} {{"))
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap_or_else(|| panic!("message {message} missing"));
        assert!(body.contains(field), "{message} lacks `{field}`");
    }
}
