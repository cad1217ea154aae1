//! Turning a validated config into a running agent: XDP attached, carp
//! interfaces created, sockets opened. Anything created is undone if a later
//! step fails, so a failed start leaves the system as it was.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, bail};
use tracing::{info, warn};

use tokio::sync::mpsc;

use super::demotion::Boot;
use super::heartbeat::Heartbeat;
use super::tracking::Tracker;
use super::vhid::{SendHealth, Vhid};
use super::{Agent, EVENT_QUEUE, Inputs};
use crate::api::Counters;
use crate::clock;
use crate::config::{BalanceMode, Balancing, CarpConfig, Config, SyncConfig};
use crate::dataplane::{Dataplane, PinDir, PinnedState, Previous, vip_key};
use crate::fsm::{self, Interval, Machine};
use crate::groups::Groups;
use crate::hooks::Hooks;
use crate::net::advert_socket::{AdvertSocketV4, AdvertSocketV6, Destination};
use crate::net::link::{Link, Links};
use crate::net::link_monitor;
use crate::net::packet_socket::PacketSocket;
use crate::net::sysctl::Sysctls;
use crate::net::{multicast_virtual_mac, virtual_mac};
use crate::sync::service::SyncHandle;
use crate::track;
use crate::wire::{Authenticator, Key};

pub(super) async fn build(config: &Config, fresh: bool) -> anyhow::Result<(Agent, Inputs)> {
    let links = Links::connect().context("opening rtnetlink")?;
    // Subscribed before the carpdevs' carrier is read below, so no change is lost.
    let (carrier_tx, carrier) = mpsc::channel(EVENT_QUEUE);
    let link_monitor = link_monitor::watch(carrier_tx).context("watching link changes")?;
    let pins = PinDir::open(&config.pin_dir).context("the pin directory (pin_dir)")?;
    let adopted = previous_dataplane(config, &links, &pins, fresh).await?;
    let mut dataplane = Dataplane::load(Some(&pins)).context("loading the XDP program")?;
    if adopted.is_some() {
        // Before anything else: the predecessor's last beat is ageing.
        dataplane
            .beat(clock::now(), Heartbeat::new(intervals(config)).bound())
            .context("writing the XDP heartbeat")?;
    }
    let adverts = dataplane
        .take_adverts()
        .context("opening the advertisement ring buffer")?;
    let claims = dataplane
        .take_claims()
        .context("opening the VIP claim ring buffer")?;
    let now = clock::now();
    let mut agent = Agent {
        vhids: Vec::with_capacity(config.carp.len()),
        groups: Groups::new(
            config
                .carp
                .iter()
                .flat_map(|c| c.groups.iter().map(String::as_str)),
        ),
        trackers: config
            .track
            .iter()
            .map(|t| Tracker::new(t.clone(), now))
            .collect(),
        hooks: Hooks::new(&config.hooks),
        boot: Boot::new(config.boot_timeout),
        dataplane,
        links,
        sysctls: Sysctls::with_journal(&config.control_socket.with_extension("sysctls")),
        carpdevs: BTreeMap::new(),
        carpdev_drops: BTreeMap::new(),
        carp_interfaces: Vec::new(),
        send_error_changes: Vec::new(),
        heartbeat: Heartbeat::new(intervals(config)),
        detach_requested: false,
        resumed: adopted.is_some(),
        sync: None,
        sync_told_master: false,
    };
    if let Some(sync) = &config.sync {
        match start_sync(&agent.links, sync).await {
            Ok(handle) => agent.sync = Some(handle),
            Err(error) => {
                agent.abandon_setup().await;
                return Err(error.context(format!("sync on {}", sync.syncdev)));
            }
        }
    }
    let ipv6_router = Sysctls::get("net.ipv6.conf.all.forwarding").is_ok_and(|v| v == "1");
    for carp in &config.carp {
        match add_carp(
            &mut agent,
            carp,
            config.preempt,
            ipv6_router,
            adopted.as_ref(),
        )
        .await
        {
            Ok(vhids) => agent.vhids.extend(vhids),
            Err(error) => {
                agent.abandon_setup().await;
                return Err(error.context(format!("{}: setting up", carp.name)));
            }
        }
    }
    let (checks_tx, checks) = mpsc::channel(EVENT_QUEUE);
    let trackers = track::spawn(&config.track, checks_tx);
    let inputs = Inputs {
        sync_demotion: agent.sync.as_ref().map(|sync| sync.demotion.clone()),
        adverts,
        claims,
        carrier,
        checks,
        _link_monitor: link_monitor,
        _trackers: trackers,
    };
    Ok((agent, inputs))
}

/// Starts the sync service on the syncdev, from its address of the peer's
/// family (its first IPv4 address for multicast).
async fn start_sync(links: &Links, sync: &SyncConfig) -> anyhow::Result<SyncHandle> {
    let syncdev = links.require(&sync.syncdev).await?;
    let addresses = links.addresses(syncdev.index).await?;
    let wanted_v6 = sync.peer.is_some_and(|peer| peer.is_ipv6());
    let Some(local) = addresses
        .into_iter()
        .find(|address| address.is_ipv6() == wanted_v6 && !is_link_local(address))
    else {
        bail!(
            "{} has no {} address to sync from",
            sync.syncdev,
            if wanted_v6 { "global IPv6" } else { "IPv4" }
        );
    };
    crate::sync::service::start(sync, syncdev.index, local, syncdev.carrier)
}

fn is_link_local(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

fn intervals(config: &Config) -> impl Iterator<Item = Interval> + '_ {
    config.carp.iter().flat_map(|c| {
        c.nodes().into_iter().map(|node| Interval {
            advbase: c.advbase,
            advskew: node.advskew,
        })
    })
}

/// The pinned state of an earlier carpd to resume, if there is one that can
/// be. A stale or foreign pin is an error unless `fresh` says to discard it.
async fn previous_dataplane(
    config: &Config,
    links: &Links,
    pins: &PinDir,
    fresh: bool,
) -> anyhow::Result<Option<PinnedState>> {
    let problem = match pins.inspect(clock::now())? {
        Previous::Nothing => return Ok(None),
        Previous::Live(state) => match state.mismatch(&expected_state(config, links).await?) {
            None => {
                let masters = state.roles.values().filter(|m| **m).count();
                info!(
                    "{}: resuming the pinned dataplane of the last carpd (MASTER of {masters} of {} vhid(s))",
                    pins.path().display(),
                    state.roles.len()
                );
                return Ok(Some(state));
            }
            Some(reason) => format!("it does not match this configuration: {reason}"),
        },
        Previous::Stale { age, bound } => format!(
            "it is stale: the last carpd's heartbeat is {:.1} s old, past its bound of {:.1} s, so its dataplane fails closed and the peer may own the VIPs now",
            age.as_secs_f64(),
            bound.as_secs_f64()
        ),
        Previous::Foreign { reason } => format!("it is not this carpd's dataplane: {reason}"),
    };
    if !fresh {
        bail!(
            "{}: an earlier carpd left a pinned dataplane that cannot be resumed: {problem}; start with --fresh to discard it",
            pins.path().display()
        );
    }
    warn!(
        "{}: discarding the pinned dataplane (--fresh): {problem}",
        pins.path().display()
    );
    pins.clear()?;
    Ok(None)
}

/// The pinned state this configuration would leave (roles aside).
async fn expected_state(config: &Config, links: &Links) -> anyhow::Result<PinnedState> {
    let mut expected = PinnedState::default();
    for carp in &config.carp {
        let carpdev = links.require(&carp.carpdev).await?;
        for node in carp.nodes() {
            expected
                .roles
                .insert(carp_common::VhidKey::new(carpdev.index, node.vhid), false);
        }
        for net in &carp.addresses {
            expected
                .vips
                .insert(vip_key(carpdev.index, net.addr()), carp.vhid);
        }
        expected.links.insert(carp.carpdev.clone());
    }
    Ok(expected)
}

/// Sets up one `[[carp]]` table: the carp interface and one `Vhid` per
/// node (one, unless the interface is balanced).
async fn add_carp(
    agent: &mut Agent,
    carp: &CarpConfig,
    preempt: bool,
    ipv6_router: bool,
    adopted: Option<&PinnedState>,
) -> anyhow::Result<Vec<Vhid>> {
    let carpdev = agent.links.require(&carp.carpdev).await?;
    if !agent.carpdevs.contains_key(&carpdev.index) {
        agent.dataplane.attach(&carp.carpdev, carpdev.index)?;
        agent.carpdevs.insert(carpdev.index, carp.carpdev.clone());
        prepare_carpdev(&mut agent.sysctls, &carp.carpdev)?;
    }
    let shared = match &carp.balancing {
        Some(balancing) => Some(SharedMacs::of(carp, balancing, &carpdev)?),
        None => None,
    };
    let resume = add_to_dataplane(&mut agent.dataplane, carp, &carpdev, shared, adopted)?;

    let interface_mac = shared.map_or(virtual_mac(carp.vhid), |s| s.interface);
    let carp_index = agent
        .links
        .ensure_carp_interface(
            &carp.name,
            &carp.carpdev,
            carpdev.index,
            interface_mac,
            adopted.is_some(),
        )
        .await?;
    // Registered before anything else can fail, so shutdown removes it.
    agent.carp_interfaces.push((carp.name.clone(), carp_index));
    prepare_carp_interface(&mut agent.sysctls, &carp.name, shared.is_some())?;
    for net in &carp.addresses {
        agent
            .links
            .add_address(carp_index, *net)
            .await
            .with_context(|| format!("adding {net}"))?;
    }
    let mut vhids = Vec::new();
    for (node, resume_master) in carp.nodes().into_iter().zip(resume) {
        let config = CarpConfig {
            vhid: node.vhid,
            advskew: node.advskew,
            ..carp.clone()
        };
        let interface = Interface {
            carpdev: &carpdev,
            carp_index,
            shared,
        };
        let mut vhid = add_node(agent, &config, &interface, preempt, ipv6_router).await?;
        vhid.resume_master = resume_master;
        vhids.push(vhid);
    }
    Ok(vhids)
}

/// The MACs of a balanced interface.
#[derive(Clone, Copy, Debug)]
struct SharedMacs {
    /// What the VIPs resolve to.
    shared: [u8; 6],
    /// The carpdev's own: announcements, and in stealth mode
    /// advertisements, leave from it.
    carpdev: [u8; 6],
    /// The carp interface's own: the shared one for the unicast modes (the
    /// frames for it are the interface's to receive), a locally administered
    /// one for `ip` (an interface cannot have a multicast MAC).
    interface: [u8; 6],
    stealth: bool,
}

impl SharedMacs {
    fn of(carp: &CarpConfig, balancing: &Balancing, carpdev: &Link) -> anyhow::Result<Self> {
        let Some(carpdev_mac) = carpdev.mac else {
            bail!(
                "{} has no MAC address: it cannot carry a balanced interface",
                carp.carpdev
            );
        };
        let leader = carp.vhid;
        let (shared, interface) = match balancing.mode {
            // Locally administered: 02:00:5e:00:01:<leader>.
            BalanceMode::Ip => (multicast_virtual_mac(leader), {
                let mut own = virtual_mac(leader);
                own[0] = 0x02;
                own
            }),
            BalanceMode::IpStealth | BalanceMode::IpUnicast => {
                (virtual_mac(leader), virtual_mac(leader))
            }
        };
        Ok(Self {
            shared,
            carpdev: carpdev_mac,
            interface,
            stealth: balancing.mode == BalanceMode::IpStealth,
        })
    }
}

/// What the nodes of one carp interface share.
struct Interface<'a> {
    carpdev: &'a Link,
    carp_index: u32,
    shared: Option<SharedMacs>,
}

/// One node's election: its sockets, machine and authenticator.
async fn add_node(
    agent: &mut Agent,
    carp: &CarpConfig,
    interface: &Interface<'_>,
    preempt: bool,
    ipv6_router: bool,
) -> anyhow::Result<Vhid> {
    let carpdev = interface.carpdev;
    let mac = virtual_mac(carp.vhid);
    // Stealth: no frame may leave from a virtual MAC, or switches learn it.
    let advert_mac = match interface.shared {
        Some(shared) if shared.stealth => shared.carpdev,
        _ => mac,
    };
    let has_v4 = carp.addresses.iter().any(|n| n.addr().is_ipv4());
    let has_v6 = carp.addresses.iter().any(|n| n.addr().is_ipv6());
    let destination = carp.peer.map_or(Destination::Multicast, Destination::Peer);
    let v4 = if has_v4 {
        let Some(source) = agent.links.first_ipv4(carpdev.index).await? else {
            bail!(
                "{} has no IPv4 address: IPv4 advertisements are sent from the carpdev's first IPv4 address",
                carp.carpdev
            );
        };
        let socket = AdvertSocketV4::open(&carp.carpdev, carpdev.index, destination, advert_mac)
            .with_context(|| format!("IPv4 advertisement socket on {}", carp.carpdev))?;
        Some((socket, source))
    } else {
        None
    };
    let v6 = if has_v6 {
        let link_local = agent.links.link_local_ipv6(carpdev.index).await?;
        if link_local.is_none() {
            warn!(
                "{}: {} has no link-local IPv6 address yet: IPv6 advertisements leave from its own MAC",
                carp.name, carp.carpdev
            );
        }
        Some(
            AdvertSocketV6::open(&carp.carpdev, carpdev.index, destination, mac, link_local)
                .with_context(|| format!("IPv6 advertisement socket on {}", carp.carpdev))?,
        )
    } else {
        None
    };
    let announcer = PacketSocket::open(carpdev.index)
        .with_context(|| format!("packet socket on {}", carp.carpdev))?;
    if let Some(shared) = interface.shared
        && shared.shared[0] & 1 == 1
    {
        announcer
            .join_multicast(shared.shared)
            .with_context(|| format!("{}: joining the shared multicast MAC", carp.carpdev))?;
    }

    let key = Key::from_passphrase(carp.pass.as_bytes())?;
    let addresses: Vec<IpAddr> = carp.addresses.iter().map(ipnet::IpNet::addr).collect();
    let machine = Machine::new(
        fsm::Config {
            interval: Interval {
                advbase: carp.advbase,
                advskew: carp.advskew,
            },
            preempt,
        },
        rand::random(),
    );
    info!(
        "{}: vhid {} on {}, advbase {} advskew {}, {} address(es){}",
        carp.name,
        carp.vhid,
        carp.carpdev,
        carp.advbase,
        carp.advskew,
        carp.addresses.len(),
        carp.balancing
            .as_ref()
            .map_or(String::new(), |b| format!(", balancing {}", b.mode))
    );
    Ok(Vhid {
        config: carp.clone(),
        carpdev_index: carpdev.index,
        carp_index: interface.carp_index,
        machine,
        auth: Authenticator::new(&key, carp.vhid, &addresses),
        v4,
        v6,
        announcer,
        counters: Counters::default(),
        ipv6_router,
        admin_down: false,
        carpdev_carrier: carpdev.carrier,
        send_health: SendHealth::default(),
        resume_master: None,
        announced_mac: interface.shared.map_or(mac, |s| s.shared),
        announced_from: interface.shared.map_or(mac, |s| s.carpdev),
    })
}

/// Tells the program about the interface's vhids and its VIPs (and its
/// balanced group). Adopted, the pinned maps hold them already and the
/// roles stay as the predecessor left them until `start`: returns them,
/// per node.
fn add_to_dataplane(
    dataplane: &mut Dataplane,
    carp: &CarpConfig,
    carpdev: &Link,
    shared: Option<SharedMacs>,
    adopted: Option<&PinnedState>,
) -> anyhow::Result<Vec<Option<bool>>> {
    let nodes = carp.nodes();
    if let Some(state) = adopted {
        return Ok(nodes
            .iter()
            .map(|node| {
                let key = carp_common::VhidKey::new(carpdev.index, node.vhid);
                Some(state.roles.get(&key).copied().unwrap_or(false))
            })
            .collect());
    }
    if let Some(shared) = shared {
        let mut group = carp_common::BalanceGroup {
            count: u8::try_from(nodes.len()).unwrap_or(u8::MAX),
            mode: carp.balancing.as_ref().map_or(0, |b| b.mode.as_u8()),
            shared_mac: shared.shared,
            carpdev_mac: shared.carpdev,
            ..carp_common::BalanceGroup::default()
        };
        for (slot, node) in group.nodes.iter_mut().zip(&nodes) {
            *slot = node.vhid;
        }
        dataplane.add_balance_group(carpdev.index, &group)?;
    }
    for (position, node) in nodes.iter().enumerate() {
        dataplane.add_vhid(carpdev.index, node.vhid, shared.is_some() && position == 0)?;
    }
    for net in &carp.addresses {
        dataplane.add_vip(carpdev.index, carp.vhid, net.addr(), shared.is_some())?;
    }
    Ok(vec![None; nodes.len()])
}

/// The carpdev must not answer ARP for the VIPs itself: with Linux's default
/// `arp_ignore=0` any interface answers for any local address, which would hand
/// out the carpdev's own MAC instead of the virtual one.
fn prepare_carpdev(sysctls: &mut Sysctls, carpdev: &str) -> anyhow::Result<()> {
    sysctls
        .set(&format!("net.ipv4.conf.{carpdev}.arp_ignore"), "1")
        .with_context(|| format!("{carpdev}: setting arp_ignore"))?;
    sysctls
        .set(&format!("net.ipv4.conf.{carpdev}.arp_announce"), "2")
        .with_context(|| format!("{carpdev}: setting arp_announce"))?;
    Ok(())
}

/// The carp interface is down while BACKUP; its VIPs must survive that (IPv6
/// flushes addresses on link down by default), it must not run DAD or derive
/// a link-local address from the virtual MAC that both nodes share, and
/// traffic to a VIP arrives on it while replies leave by the carpdev (loose
/// reverse-path filtering). It answers ARP only for its own addresses, the
/// VIPs: with Linux's default `arp_ignore=0` it also answered for the node's
/// own addresses (it hears the broadcast requests for the carpdev's) with
/// the virtual MAC, which then follows the vhid to the other node.
///
/// A balanced interface carries IPv4 only and runs no IPv6 at all: its
/// multicast listener reports would leave from the shared MAC, and a switch
/// that learns it stops flooding it (`ip-stealth`, `ip-unicast`).
fn prepare_carp_interface(sysctls: &mut Sysctls, name: &str, balanced: bool) -> anyhow::Result<()> {
    if balanced {
        let key = format!("net.ipv6.conf.{name}.disable_ipv6");
        if let Err(error) = sysctls.set(&key, "1") {
            warn!("{name}: cannot set {key}: {error}");
        }
    }
    for (key, value) in [
        (format!("net.ipv6.conf.{name}.keep_addr_on_down"), "1"),
        (format!("net.ipv6.conf.{name}.addr_gen_mode"), "1"),
        (format!("net.ipv6.conf.{name}.accept_dad"), "0"),
        (format!("net.ipv4.conf.{name}.rp_filter"), "2"),
        (format!("net.ipv4.conf.{name}.arp_ignore"), "1"),
    ] {
        if let Err(error) = sysctls.set(&key, value) {
            // IPv6 may be disabled on the host; only an IPv4 setting is fatal.
            if key.starts_with("net.ipv4") {
                return Err(error).with_context(|| format!("setting {key}"));
            }
            warn!("{name}: cannot set {key}: {error}");
        }
    }
    Ok(())
}
