//! Carrier changes of every link, from rtnetlink's link multicast group,
//! so a pulled carpdev cable demotes at once (OpenBSD's `carp_carpdev_state`).
//! Subscribe before reading the carpdevs' initial state, so no change falls
//! between the two.

use futures::StreamExt;
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkMessage;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::link::has_carrier;

/// A link's carrier as rtnetlink reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarrierEvent {
    pub ifindex: u32,
    pub carrier: bool,
}

/// The monitor task; aborted when dropped.
pub struct LinkMonitor {
    task: JoinHandle<()>,
}

impl Drop for LinkMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts forwarding carrier events of every link to `events`. Must be
/// called inside the tokio runtime.
pub fn watch(events: mpsc::Sender<CarrierEvent>) -> std::io::Result<LinkMonitor> {
    let (connection, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    let task = tokio::spawn(async move {
        let connection = tokio::spawn(connection);
        while let Some((message, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(inner) = message.payload else {
                continue;
            };
            let event = match inner {
                RouteNetlinkMessage::NewLink(link) => carrier_event(&link, true),
                RouteNetlinkMessage::DelLink(link) => carrier_event(&link, false),
                _ => continue,
            };
            if events.send(event).await.is_err() {
                break;
            }
        }
        connection.abort();
    });
    Ok(LinkMonitor { task })
}

fn carrier_event(link: &LinkMessage, exists: bool) -> CarrierEvent {
    CarrierEvent {
        ifindex: link.header.index,
        carrier: exists && has_carrier(link),
    }
}
