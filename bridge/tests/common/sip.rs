//! Raw SIP over UDP and TCP, and [`RawCall`]: a minimal PCMU participant
//! whose sockets the test owns. It exists for what real peers cannot do:
//! send malformed RTP from the very address the node latched onto, and read
//! the node's RTP port straight from its SDP answer.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::audio::{Audio, ulaw_decode, ulaw_encode};
use super::{Node, ports};

/// A SIP response as the tests need it.
#[derive(Debug, Clone)]
pub struct SipResponse {
    pub code: u16,
    pub raw: String,
}

impl SipResponse {
    pub fn parse(bytes: &[u8]) -> Option<SipResponse> {
        let raw = String::from_utf8_lossy(bytes).into_owned();
        let first = raw.lines().next()?;
        let mut parts = first.split_whitespace();
        if parts.next()? != "SIP/2.0" {
            return None;
        }
        let code = parts.next()?.parse().ok()?;
        Some(SipResponse { code, raw })
    }

    /// First value of header `name`; see [`header`].
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.raw, name)
    }

    pub fn body(&self) -> &str {
        self.raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
    }
}

/// First value of header `name` in a SIP message; knows the compact forms of
/// the headers tests read.
pub fn header(msg: &str, name: &str) -> Option<String> {
    let compact = match name.to_ascii_lowercase().as_str() {
        "call-id" => Some("i"),
        "from" => Some("f"),
        "to" => Some("t"),
        "via" => Some("v"),
        "content-length" => Some("l"),
        "content-type" => Some("c"),
        "contact" => Some("m"),
        _ => None,
    };
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim();
            if k.eq_ignore_ascii_case(name) || compact.is_some_and(|c| k.eq_ignore_ascii_case(c)) {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

static SEQ: AtomicU32 = AtomicU32::new(1);

/// A fresh token for branches, tags and Call-IDs.
pub fn token(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A well-formed request from `local` (UDP unless `transport` says TCP).
/// `extra` headers are added verbatim (each ending in CRLF).
pub fn request(
    method: &str,
    ruri: &str,
    local: SocketAddr,
    transport: &str,
    extra: &str,
    body: &str,
) -> String {
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1>;tag={tag}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {callid}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:tester@{local}>\r\n\
         {extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
        branch = token("b"),
        tag = token("t"),
        callid = token("c"),
        len = body.len(),
    )
}

/// A UDP socket on a free loopback port, with a short read timeout.
pub fn udp_socket() -> UdpSocket {
    for _ in 0..20 {
        let p = ports::udp();
        if let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, p)) {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("set read timeout");
            return s;
        }
    }
    panic!("cannot bind a UDP socket on 127.0.0.1");
}

/// Every SIP response arriving on `sock` within `wait`, stopping early once a
/// final response (>= 200) arrived and 200 ms more brought nothing.
pub fn collect_responses(sock: &UdpSocket, wait: Duration) -> Vec<SipResponse> {
    let deadline = Instant::now() + wait;
    let mut out: Vec<SipResponse> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut final_at: Option<Instant> = None;
    while Instant::now() < deadline {
        if let Some(t) = final_at
            && t.elapsed() > Duration::from_millis(200)
        {
            break;
        }
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Some(r) = SipResponse::parse(&buf[..n])
        {
            if r.code >= 200 {
                final_at = Some(Instant::now());
            }
            out.push(r);
        }
    }
    out
}

/// Sends `bytes` to the node's SIP UDP port from a fresh socket and returns
/// the responses (see [`collect_responses`]).
pub fn udp_exchange(node: &Node, bytes: &[u8], wait: Duration) -> Vec<SipResponse> {
    let sock = udp_socket();
    sock.send_to(bytes, node.sip_addr())
        .expect("send SIP datagram");
    collect_responses(&sock, wait)
}

/// OPTIONS over UDP; the final response code, if any within 3 s (one
/// retransmission after 500 ms, as a UA would).
pub fn udp_options(node: &Node) -> Option<u16> {
    let sock = udp_socket();
    let local = sock.local_addr().expect("local addr");
    let msg = request("OPTIONS", &node.uri("options"), local, "UDP", "", "");
    for _ in 0..2 {
        sock.send_to(msg.as_bytes(), node.sip_addr())
            .expect("send OPTIONS");
        let r = collect_responses(&sock, Duration::from_millis(1500));
        if let Some(f) = r.iter().find(|r| r.code >= 200) {
            return Some(f.code);
        }
    }
    None
}

/// Reads one SIP message (head + Content-Length body) from a TCP stream.
/// Ok(None) on a clean EOF before any byte.
pub fn tcp_read_message(
    s: &mut TcpStream,
    timeout: Duration,
) -> std::io::Result<Option<SipResponse>> {
    s.set_read_timeout(Some(timeout))?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header(&format!("{head}\r\n\r\n"), "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut byte)?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&byte[..n]);
            }
            return Ok(SipResponse::parse(&buf[..(end + 4 + len).min(buf.len())]));
        }
        let n = s.read(&mut byte)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("EOF inside a message: {}", String::from_utf8_lossy(&buf)),
                ))
            };
        }
        buf.extend_from_slice(&byte[..n]);
    }
}

/// Opens a TCP connection to the node's SIP port.
pub fn tcp_connect(node: &Node) -> TcpStream {
    let s =
        TcpStream::connect_timeout(&node.sip_addr(), Duration::from_secs(3)).unwrap_or_else(|e| {
            panic!(
                "connect to SIP TCP {}: {e}\n{}",
                node.sip_addr(),
                node.log_tail()
            )
        });
    s.set_write_timeout(Some(Duration::from_secs(3)))
        .expect("set write timeout");
    s
}

/// OPTIONS on an open TCP connection; the first final response.
pub fn tcp_options(s: &mut TcpStream, node: &Node) -> Option<SipResponse> {
    let local = s.local_addr().expect("local addr");
    let msg = request("OPTIONS", &node.uri("options"), local, "TCP", "", "");
    s.write_all(msg.as_bytes()).ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tcp_read_message(s, Duration::from_secs(5)) {
            Ok(Some(r)) if r.code >= 200 => return Some(r),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
    None
}

/// The media part of an SDP answer.
#[derive(Debug, Clone)]
pub struct SdpAudio {
    pub addr: SocketAddr,
    pub rtcp: SocketAddr,
    pub payload_types: Vec<u8>,
}

/// `c=` and the first `m=audio` of an SDP body. RTCP: `a=rtcp-mux` means the
/// RTP port, `a=rtcp:N` means N, otherwise RTP port + 1.
pub fn parse_sdp_audio(sdp: &str) -> Option<SdpAudio> {
    let mut ip: Option<std::net::IpAddr> = None;
    let mut port = None;
    let mut pts = Vec::new();
    let mut in_audio = false;
    let mut mux = false;
    let mut rtcp_port = None;
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            if ip.is_none() || in_audio {
                ip = c.split('/').next()?.trim().parse().ok();
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            let f: Vec<&str> = m.split_whitespace().collect();
            if f.first() == Some(&"audio") && port.is_none() {
                in_audio = true;
                port = f.get(1)?.parse::<u16>().ok();
                pts = f.iter().skip(3).filter_map(|p| p.parse().ok()).collect();
            }
        } else if in_audio && line == "a=rtcp-mux" {
            mux = true;
        } else if in_audio && let Some(r) = line.strip_prefix("a=rtcp:") {
            rtcp_port = r
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
    }
    let ip = ip?;
    let port = port?;
    let rtcp = if mux {
        port
    } else {
        rtcp_port.unwrap_or(port.wrapping_add(1))
    };
    Some(SdpAudio {
        addr: SocketAddr::new(ip, port),
        rtcp: SocketAddr::new(ip, rtcp),
        payload_types: pts,
    })
}

struct Shared {
    stop: AtomicBool,
    rx_packets: AtomicU64,
    rx_audio: Mutex<Vec<i16>>,
    remote_bye: AtomicBool,
}

/// A PCMU call made by hand: INVITE with SDP, ACK, 20 ms RTP carrying a tone
/// from `rtp_socket`, and everything PCMU the node sends back decoded.
pub struct RawCall {
    pub node_rtp: SocketAddr,
    pub node_rtcp: SocketAddr,
    pub answer: SipResponse,
    rtp: Arc<UdpSocket>,
    sip: Arc<UdpSocket>,
    node_sip: SocketAddr,
    bye: String,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl RawCall {
    /// Calls `sip:<conference>@node` offering only PCMU; panics unless the
    /// node answers 200 with an SDP that accepts PCMU.
    pub fn invite(node: &Node, conference: &str, tone_hz: f32) -> RawCall {
        RawCall::invite_to(node.sip_addr(), &node.uri(conference), tone_hz, || {
            node.log_tail()
        })
    }

    /// Calls `ruri` at `target` (any UA that answers PCMU); `context` gives
    /// text for failure messages (the node's log).
    pub fn invite_to(
        target: SocketAddr,
        ruri: &str,
        tone_hz: f32,
        context: impl Fn() -> String,
    ) -> RawCall {
        let sip = udp_socket();
        let rtp = loop {
            let p = ports::even_pair();
            if let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, p)) {
                break s;
            }
        };
        rtp.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        let local = sip.local_addr().expect("local addr");
        let rtp_port = rtp.local_addr().expect("rtp addr").port();
        let sdp = format!(
            "v=0\r\no=rawcall 1 1 IN IP4 127.0.0.1\r\ns=tandem-test\r\nc=IN IP4 127.0.0.1\r\n\
             t=0 0\r\nm=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        let branch = token("z9hG4bKi");
        let from_tag = token("f");
        let call_id = token("rawcall");
        let head = |method: &str, cseq: u32, branch: &str, to_tag: &str| {
            format!(
                "{method} {ruri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:rawcall@127.0.0.1>;tag={from_tag}\r\n\
                 To: <{ruri}>{to_tag}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} {method}\r\n\
                 Contact: <sip:rawcall@{local}>\r\n"
            )
        };
        let invite = format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            head("INVITE", 1, &branch, ""),
            sdp.len()
        );
        // Timer A: retransmit until a provisional or final response.
        let mut answer = None;
        let mut provisional = false;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut next_send = Instant::now();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline && answer.is_none() {
            if !provisional && Instant::now() >= next_send {
                sip.send_to(invite.as_bytes(), target).expect("send INVITE");
                next_send = Instant::now() + Duration::from_millis(500);
            }
            if let Ok((n, _)) = sip.recv_from(&mut buf)
                && let Some(r) = SipResponse::parse(&buf[..n])
            {
                if r.code < 200 {
                    provisional = true;
                } else {
                    answer = Some(r);
                }
            }
        }
        let answer = answer.unwrap_or_else(|| {
            panic!(
                "no final response to INVITE {ruri} within 15 s\n--- node log ---\n{}",
                context()
            )
        });
        let to = answer.header("to").unwrap_or_default();
        let to_tag = to
            .split(';')
            .find_map(|p| p.trim().strip_prefix("tag=").map(|t| format!(";tag={t}")))
            .unwrap_or_default();
        // ACK (also for a failure, so the node's transaction ends cleanly).
        let ack_branch = if answer.code == 200 {
            token("z9hG4bKa")
        } else {
            branch.clone()
        };
        let ack = format!(
            "{}Content-Length: 0\r\n\r\n",
            head("ACK", 1, &ack_branch, &to_tag)
        );
        sip.send_to(ack.as_bytes(), target).expect("send ACK");
        assert_eq!(
            answer.code,
            200,
            "INVITE {ruri} (PCMU only) was answered {}:\n{}\n--- node log ---\n{}",
            answer.code,
            answer.raw,
            context()
        );
        let media = parse_sdp_audio(answer.body()).unwrap_or_else(|| {
            panic!(
                "200 OK to INVITE has no usable SDP (c=IN IP4 + m=audio):\n{}",
                answer.raw
            )
        });
        assert!(
            media.payload_types.contains(&0),
            "SDP answer does not accept PCMU (payload type 0):\n{}",
            answer.body()
        );
        assert_ne!(
            media.addr.port(),
            0,
            "SDP answer rejected audio (port 0):\n{}",
            answer.body()
        );
        let bye = format!(
            "{}Content-Length: 0\r\n\r\n",
            head("BYE", 2, &token("z9hG4bKb"), &to_tag)
        );

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            rx_packets: AtomicU64::new(0),
            rx_audio: Mutex::new(Vec::new()),
            remote_bye: AtomicBool::new(false),
        });
        let rtp = Arc::new(rtp);
        let sip = Arc::new(sip);
        let mut threads = Vec::new();

        // Sender: 20 ms PCMU frames of the tone, paced against a deadline so
        // the rate does not drift with scheduling.
        {
            let (rtp, shared, to) = (rtp.clone(), shared.clone(), media.addr);
            threads.push(std::thread::spawn(move || {
                let ssrc: u32 = 0x7a11_0000 ^ std::process::id();
                let start = Instant::now();
                let mut seq: u16 = 1;
                let mut ts: u32 = 0;
                let mut phase = 0.0f64;
                let step = 2.0 * std::f64::consts::PI * f64::from(tone_hz) / 8000.0;
                let mut frame: u64 = 0;
                while !shared.stop.load(Ordering::Relaxed) {
                    let mut pkt = Vec::with_capacity(172);
                    pkt.extend_from_slice(&[0x80, if frame == 0 { 0x80 } else { 0x00 }]);
                    pkt.extend_from_slice(&seq.to_be_bytes());
                    pkt.extend_from_slice(&ts.to_be_bytes());
                    pkt.extend_from_slice(&ssrc.to_be_bytes());
                    for _ in 0..160 {
                        let s = (0.5 * phase.sin() * 32767.0) as i16;
                        pkt.push(ulaw_encode(s));
                        phase = (phase + step) % (2.0 * std::f64::consts::PI);
                    }
                    let _ = rtp.send_to(&pkt, to);
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(160);
                    frame += 1;
                    let next = start + Duration::from_millis(20 * frame);
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            }));
        }
        // Receiver: counts well-formed PCMU RTP and keeps the decoded audio.
        {
            let (rtp, shared) = (rtp.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !shared.stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = rtp.recv_from(&mut buf) else {
                        continue;
                    };
                    let p = &buf[..n];
                    if n < 12 || p[0] >> 6 != 2 || p[1] & 0x7f != 0 {
                        continue;
                    }
                    let mut off = 12 + 4 * usize::from(p[0] & 0x0f);
                    if p[0] & 0x10 != 0 && n >= off + 4 {
                        off += 4 + 4 * usize::from(u16::from_be_bytes([p[off + 2], p[off + 3]]));
                    }
                    let mut end = n;
                    if p[0] & 0x20 != 0 {
                        end = end.saturating_sub(usize::from(p[n - 1]));
                    }
                    if off > end {
                        continue;
                    }
                    shared.rx_packets.fetch_add(1, Ordering::Relaxed);
                    let mut a = shared.rx_audio.lock().unwrap_or_else(|e| e.into_inner());
                    a.extend(p[off..end].iter().map(|&b| ulaw_decode(b)));
                }
            }));
        }
        // SIP: answer whatever the node asks in-dialog (re-INVITE, UPDATE,
        // OPTIONS, BYE) with 200, so that it never thinks we are gone.
        {
            let (sip, shared) = (sip.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !shared.stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sip.recv_from(&mut buf) else {
                        continue;
                    };
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if msg.starts_with("SIP/2.0") {
                        continue;
                    }
                    let method = msg.split_whitespace().next().unwrap_or("").to_string();
                    if method == "ACK" {
                        continue;
                    }
                    if method == "BYE" {
                        shared.remote_bye.store(true, Ordering::Relaxed);
                    }
                    let mut resp = String::from("SIP/2.0 200 OK\r\n");
                    let head = msg.split("\r\n\r\n").next().unwrap_or("");
                    for line in head.lines().skip(1) {
                        let k = line
                            .split(':')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase();
                        if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"]
                            .contains(&k.as_str())
                        {
                            resp += line;
                            resp += "\r\n";
                        }
                    }
                    resp += "Content-Length: 0\r\n\r\n";
                    let _ = sip.send_to(resp.as_bytes(), from);
                }
            }));
        }

        RawCall {
            node_rtp: media.addr,
            node_rtcp: media.rtcp,
            answer,
            rtp,
            sip,
            node_sip: target,
            bye,
            shared,
            threads,
        }
    }

    /// PCMU packets received from the node so far.
    pub fn rx_packets(&self) -> u64 {
        self.shared.rx_packets.load(Ordering::Relaxed)
    }

    /// Decoded samples received so far (8 kHz).
    pub fn rx_samples(&self) -> usize {
        self.shared
            .rx_audio
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// What was heard from sample `from` on, as [`Audio`].
    pub fn heard_since(&self, from: usize) -> Audio {
        let a = self
            .shared
            .rx_audio
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Audio {
            rate: 8000,
            samples: a[from.min(a.len())..]
                .iter()
                .map(|&s| f32::from(s) / 32768.0)
                .collect(),
        }
    }

    /// True if the node hung up on us.
    pub fn remote_hung_up(&self) -> bool {
        self.shared.remote_bye.load(Ordering::Relaxed)
    }

    /// Sends `bytes` to the node's RTP port from this call's own RTP socket
    /// (the address the node latched onto).
    pub fn send_rtp_raw(&self, bytes: &[u8]) {
        let _ = self.rtp.send_to(bytes, self.node_rtp);
    }

    /// Sends `bytes` to the node's RTCP address from this call's RTP socket.
    pub fn send_rtcp_raw(&self, bytes: &[u8]) {
        let _ = self.rtp.send_to(bytes, self.node_rtcp);
    }

    /// Hangs up (BYE) and stops the media threads.
    pub fn hang_up(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, bye: bool) {
        if self.threads.is_empty() {
            return;
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if bye && !self.remote_hung_up() {
            let _ = self.sip.send_to(self.bye.as_bytes(), self.node_sip);
            let _ = collect_responses(&self.sip, Duration::from_secs(2));
        }
    }
}

impl Drop for RawCall {
    fn drop(&mut self) {
        self.finish(!std::thread::panicking());
    }
}
