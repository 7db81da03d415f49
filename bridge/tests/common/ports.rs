//! Free loopback ports for nodes and peers.
//!
//! Tests in one binary run on parallel threads and several test binaries (or
//! several developers' runs) may share the machine, so: one process-wide
//! cursor hands out disjoint blocks, it starts at an offset derived from the
//! PID and the clock, and every port of a block is checked by binding it.
//! The range stays below Linux's ephemeral ports (32768+), where the kernel
//! picks source ports for everyone else.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Mutex;

const LOW: u32 = 20000;
const HIGH: u32 = 32000;

static CURSOR: Mutex<Option<u32>> = Mutex::new(None);

fn free(port: u16, tcp: bool) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    if UdpSocket::bind(addr).is_err() {
        return false;
    }
    !tcp || TcpListener::bind(addr).is_ok()
}

/// A block of `len` consecutive ports, each free on UDP (and on TCP too when
/// `tcp`). Returns the first port.
pub fn block(len: u16, tcp: bool) -> u16 {
    let len = u32::from(len.max(1));
    let mut cursor = CURSOR.lock().unwrap_or_else(|p| p.into_inner());
    let mut next = cursor.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = std::process::id()
            .wrapping_mul(7919)
            .wrapping_add(nanos / 1000);
        LOW + (seed % ((HIGH - LOW) / 10)) * 10
    });
    let mut scanned = 0u32;
    loop {
        if next + len > HIGH {
            next = LOW;
        }
        if scanned > HIGH - LOW {
            panic!("no free block of {len} loopback ports in {LOW}-{HIGH}");
        }
        // u16 is guaranteed: HIGH < 65536.
        match (next..next + len).find(|&p| !free(p as u16, tcp)) {
            Some(taken) => {
                scanned += taken + 1 - next;
                next = taken + 1;
            }
            None => {
                *cursor = Some(next + len);
                return next as u16;
            }
        }
    }
}

/// One port free on both UDP and TCP (SIP listens on both).
pub fn udp_tcp() -> u16 {
    block(1, true)
}

/// One port free on UDP.
pub fn udp() -> u16 {
    block(1, false)
}

/// An even port whose successor is free too (RTP on N, RTCP on N+1). Takes a
/// block of three, so that the cursor's parity cannot trap a caller that
/// retries until it gets an even port (blocks of two keep the parity: such a
/// loop scanned, and wrapped, the whole range).
pub fn even_pair() -> u16 {
    let p = block(3, false);
    if p.is_multiple_of(2) { p } else { p + 1 }
}
