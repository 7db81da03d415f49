//! Sockets: binding with DSCP marking, and the RTP port allocator.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::PortRange;

/// DSCP goes in the upper six bits of the IP TOS / traffic class byte.
fn tos(dscp: u8) -> u32 {
    u32::from(dscp) << 2
}

fn domain(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

fn set_dscp(socket: &Socket, addr: &SocketAddr, dscp: u8) -> std::io::Result<()> {
    if addr.is_ipv4() {
        socket.set_tos(tos(dscp))
    } else {
        socket.set_tclass_v6(tos(dscp))
    }
}

/// A non-blocking UDP socket bound to `addr`, marked with `dscp`.
pub fn udp_socket(addr: SocketAddr, dscp: u8) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(domain(&addr), Type::DGRAM, Some(Protocol::UDP))?;
    set_dscp(&socket, &addr, dscp)?;
    // Media sockets take bursts of a whole conference's worth of packets.
    let _ = socket.set_recv_buffer_size(1 << 20);
    let _ = socket.set_send_buffer_size(1 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr`; accepted streams inherit the DSCP mark.
pub fn tcp_listener(addr: SocketAddr, dscp: u8) -> std::io::Result<tokio::net::TcpListener> {
    let socket = Socket::new(domain(&addr), Type::STREAM, Some(Protocol::TCP))?;
    set_dscp(&socket, &addr, dscp)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Hands out RTP ports from a range. RTP takes an even port and keeps the odd
/// one above it free for RTCP when the peer does not multiplex (RFC 3550 §11).
pub struct PortAllocator {
    ip: IpAddr,
    range: PortRange,
    in_use: Mutex<BTreeSet<u16>>,
    next: Mutex<u16>,
}

/// What became of a datagram handed on by [`spawn_datagram_reader`].
pub enum Delivery {
    Delivered,
    /// The consumer's queue is full: dropped and counted.
    Full,
    /// The consumer is gone: the reader ends.
    Closed,
}

/// Reads `socket` until it fails or `deliver` says the consumer is gone,
/// handing each datagram on with its source and arrival time. A full queue
/// drops the datagram and counts it (`tandem_malformed_total{rtp,queue_overflow}`).
pub fn spawn_datagram_reader(
    socket: Arc<tokio::net::UdpSocket>,
    metrics: Arc<crate::metrics::Metrics>,
    mut deliver: impl FnMut(Vec<u8>, SocketAddr, std::time::Instant) -> Delivery + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    match deliver(buf[..n].to_vec(), from, std::time::Instant::now()) {
                        Delivery::Delivered => {}
                        Delivery::Full => metrics.malformed("rtp", "queue_overflow"),
                        Delivery::Closed => break,
                    }
                }
                // ICMP port unreachable from a peer that went away surfaces
                // here on Linux; keep listening.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    tracing::debug!(%e, "RTP receive ended");
                    break;
                }
            }
        }
    })
}

/// The node's two RTP port ranges.
pub struct MediaPorts {
    pub audio: Arc<PortAllocator>,
    pub video: Arc<PortAllocator>,
}

/// The sockets of one media stream. Dropping it does not free the port: call
/// [`PortAllocator::release`] with `port` (the conference does, when a leg ends).
pub struct MediaSockets {
    pub port: u16,
    pub rtp: tokio::net::UdpSocket,
    pub rtcp: tokio::net::UdpSocket,
}

impl MediaSockets {
    /// The same two sockets (the same ports, bindings and DSCP marks) under
    /// new handles, for a leg that moves from one conference task to
    /// another (lobby → conference): the old handles' readers are being
    /// aborted and may still hold them for a moment.
    pub fn reopen(
        port: u16,
        rtp: &tokio::net::UdpSocket,
        rtcp: &tokio::net::UdpSocket,
    ) -> std::io::Result<MediaSockets> {
        fn dup(s: &tokio::net::UdpSocket) -> std::io::Result<tokio::net::UdpSocket> {
            let std: std::net::UdpSocket = socket2::SockRef::from(s).try_clone()?.into();
            std.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(std)
        }
        Ok(MediaSockets {
            port,
            rtp: dup(rtp)?,
            rtcp: dup(rtcp)?,
        })
    }
}

impl PortAllocator {
    pub fn new(ip: IpAddr, range: PortRange) -> Self {
        let first = *range.0.start();
        Self {
            ip,
            range,
            in_use: Mutex::new(BTreeSet::new()),
            next: Mutex::new(first),
        }
    }

    pub fn capacity(&self) -> usize {
        (usize::from(*self.range.0.end()) - usize::from(*self.range.0.start())).div_ceil(2)
    }

    pub fn in_use(&self) -> usize {
        self.in_use.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Binds an RTP/RTCP socket pair on the next free even port. Ports taken by
    /// other programs are skipped. `None` when the range is exhausted.
    pub fn allocate(&self, dscp: u8) -> Option<MediaSockets> {
        let (start, end) = (*self.range.0.start(), *self.range.0.end());
        let first_even = start + (start % 2);
        let slots = self.capacity().max(1);
        let mut in_use = self.in_use.lock().ok()?;
        let mut next = self.next.lock().ok()?;
        for _ in 0..slots {
            let mut port = *next + (*next % 2);
            if port < first_even || port >= end {
                port = first_even;
            }
            *next = port.wrapping_add(2);
            if in_use.contains(&port) {
                continue;
            }
            let rtp = udp_socket(SocketAddr::new(self.ip, port), dscp);
            let rtcp = udp_socket(SocketAddr::new(self.ip, port + 1), dscp);
            if let (Ok(rtp), Ok(rtcp)) = (rtp, rtcp) {
                in_use.insert(port);
                return Some(MediaSockets { port, rtp, rtcp });
            }
        }
        None
    }

    pub fn release(&self, port: u16) {
        if let Ok(mut s) = self.in_use.lock() {
            s.remove(&port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_carry_their_dscp_mark() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let audio = udp_socket(any, 46).expect("udp");
        assert_eq!(
            socket2::SockRef::from(&audio).tos().expect("tos"),
            46 << 2,
            "EF"
        );
        let sip = tcp_listener(any, 24).expect("tcp");
        assert_eq!(
            socket2::SockRef::from(&sip).tos().expect("tos"),
            24 << 2,
            "CS3"
        );
    }

    #[tokio::test]
    async fn allocates_even_ports_and_reuses_released_ones() {
        let alloc = PortAllocator::new("127.0.0.1".parse().expect("ip"), PortRange(47100..=47105));
        assert_eq!(alloc.capacity(), 3);
        let a = alloc.allocate(46).expect("first");
        let b = alloc.allocate(46).expect("second");
        assert_eq!(a.port % 2, 0);
        assert_ne!(a.port, b.port);
        let c = alloc.allocate(46).expect("third");
        assert!(alloc.allocate(46).is_none(), "range exhausted");
        let freed = b.port;
        drop(b);
        alloc.release(freed);
        let d = alloc.allocate(46).expect("reused");
        assert_eq!(d.port, freed);
        drop((a, c, d));
    }
}
