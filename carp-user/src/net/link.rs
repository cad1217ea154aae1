//! Links and addresses over rtnetlink: the carpdevs we attach to and the carp
//! interfaces (one macvlan per vhid, like OpenBSD's carpN) that carry the VIPs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("netlink connection: {0}")]
    Connect(#[from] std::io::Error),
    #[error("{name}: no such interface")]
    Missing { name: String },
    #[error(
        "{name}: exists and is not a carp interface of {carpdev} (a macvlan with MAC {mac}); remove it or rename the carp interface"
    )]
    NotOurs {
        name: String,
        carpdev: String,
        mac: String,
    },
}

/// What we need to know of an existing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub parent: Option<u32>,
    pub is_macvlan: bool,
    pub up: bool,
    /// Administratively up with a carrier (`IFF_UP` and `IFF_LOWER_UP`).
    pub carrier: bool,
}

/// Up and with a carrier: frames can pass.
pub fn has_carrier(message: &LinkMessage) -> bool {
    message.header.flags.contains(LinkFlags::Up)
        && message.header.flags.contains(LinkFlags::LowerUp)
}

impl Link {
    fn from_message(message: &LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            mac: None,
            parent: None,
            is_macvlan: false,
            up: message.header.flags.contains(LinkFlags::Up),
            carrier: has_carrier(message),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
                }
                LinkAttribute::Link(parent) => link.parent = Some(*parent),
                LinkAttribute::LinkInfo(infos) => {
                    link.is_macvlan = infos
                        .iter()
                        .any(|info| matches!(info, LinkInfo::Kind(InfoKind::MacVlan)));
                }
                _ => {}
            }
        }
        link
    }
}

/// A handle on rtnetlink; the connection runs as its own task.
#[derive(Clone)]
pub struct Links {
    handle: Handle,
}

fn is_not_found(error: &rtnetlink::Error) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(message)
        if message.code.is_some_and(|code| code.get() == -libc::ENODEV))
}

impl Links {
    /// Opens the netlink socket; must be called inside the tokio runtime.
    pub fn connect() -> Result<Self, LinkError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The link called `name`, if there is one.
    pub async fn get(&self, name: &str) -> Result<Option<Link>, LinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(message) => Ok(message.as_ref().map(Link::from_message)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The link called `name`, or an error naming it.
    pub async fn require(&self, name: &str) -> Result<Link, LinkError> {
        self.get(name).await?.ok_or_else(|| LinkError::Missing {
            name: name.to_owned(),
        })
    }

    /// The first IPv4 address of an interface: the source of our IPv4 adverts.
    pub async fn first_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>, LinkError> {
        Ok(self
            .addresses(index)
            .await?
            .into_iter()
            .find_map(|address| match address {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            }))
    }

    /// The interface's link-local IPv6 address, the source of its IPv6 adverts.
    pub async fn link_local_ipv6(&self, index: u32) -> Result<Option<Ipv6Addr>, LinkError> {
        Ok(self
            .addresses(index)
            .await?
            .into_iter()
            .find_map(|address| match address {
                IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
                _ => None,
            }))
    }

    /// Every address of an interface, in the kernel's order.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpAddr>, LinkError> {
        let mut messages = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut addresses = Vec::new();
        while let Some(message) = messages.try_next().await? {
            // IFA_LOCAL is the interface's own address on point-to-point
            // links; IFA_ADDRESS the peer's there, and ours everywhere else.
            let local = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(address) => Some(*address),
                    _ => None,
                });
            let address = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Address(address) => Some(*address),
                    _ => None,
                });
            addresses.extend(local.or(address));
        }
        Ok(addresses)
    }

    /// Creates the carp interface `name` on `carpdev` with the virtual MAC,
    /// administratively down. A leftover one of ours (same kind, parent and
    /// MAC, e.g. after a crash) is adopted; anything else by that name is an error.
    pub async fn ensure_carp_interface(
        &self,
        name: &str,
        carpdev: &str,
        carpdev_index: u32,
        mac: [u8; 6],
        adopt: bool,
    ) -> Result<u32, LinkError> {
        if let Some(existing) = self.get(name).await? {
            if existing.is_macvlan
                && existing.parent == Some(carpdev_index)
                && existing.mac == Some(mac)
            {
                // Left by a crashed carpd: down until we are MASTER. Adopted
                // in a hitless restart: as it is.
                if !adopt {
                    self.set_up(existing.index, false).await?;
                }
                return Ok(existing.index);
            }
            return Err(LinkError::NotOurs {
                name: name.to_owned(),
                carpdev: carpdev.to_owned(),
                mac: super::format_mac(&mac),
            });
        }
        // Bridge mode so carp interfaces on one carpdev can reach each other.
        let message = LinkMacVlan::new(name, carpdev_index, MacVlanMode::Bridge)
            .address(mac.to_vec())
            .down()
            .build();
        self.handle.link().add(message).execute().await?;
        Ok(self.require(name).await?.index)
    }

    pub async fn set_up(&self, index: u32, up: bool) -> Result<(), LinkError> {
        let builder = LinkUnspec::new_with_index(index);
        let message = if up { builder.up() } else { builder.down() }.build();
        self.handle.link().set(message).execute().await?;
        Ok(())
    }

    /// Adds (or refreshes) an address. IPv6 VIPs skip duplicate address
    /// detection: the peer holds the same address by design.
    pub async fn add_address(&self, index: u32, net: IpNet) -> Result<(), LinkError> {
        let mut request = self
            .handle
            .address()
            .add(index, net.addr(), net.prefix_len())
            .replace();
        if net.addr().is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await?;
        Ok(())
    }

    pub async fn delete(&self, index: u32) -> Result<(), LinkError> {
        match self.handle.link().del(index).execute().await {
            Err(error) if is_not_found(&error) => Ok(()),
            other => Ok(other?),
        }
    }
}
