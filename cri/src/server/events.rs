//! Container and pod lifecycle events for `GetContainerEvents`, fanned out to every subscriber.

use tokio::sync::broadcast;

use crate::api::{ContainerEventResponse, ContainerEventType};

/// How many events a slow subscriber may lag behind before it misses some (it is told, and may re-list).
const BACKLOG: usize = 1024;

pub struct Events {
    tx: broadcast::Sender<ContainerEventResponse>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEventResponse> {
        self.tx.subscribe()
    }

    /// A container event; sending with no subscriber is not an error.
    pub fn container(&self, id: &str, kind: ContainerEventType) {
        let _ = self.tx.send(ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: crate::pod::now_nanos(),
            pod_sandbox_status: None,
            containers_statuses: Vec::new(),
        });
    }

    /// A pod event: as containerd does, the pod's id stands in the container id.
    pub fn pod(&self, id: &str, kind: ContainerEventType) {
        self.container(id, kind);
    }
}
