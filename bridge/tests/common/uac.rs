//! A scripted SIP dialog ([`Uac`]) and an RTP endpoint whose codec, tone and
//! sending the test changes mid-call ([`RtpPeer`]). They exist for what
//! [`super::sip::RawCall`] cannot do, since it hard-wires one PCMU INVITE:
//! a late offer (INVITE without SDP, answer in the ACK), re-INVITEs (hold,
//! codec change), session-timer headers, INFO, and a leg that sends no RTP.
//!
//! Both run on std threads (no runtime), like the rest of the raw peers:
//! [`Uac`] has one reader thread that answers whatever the node asks in the
//! dialog (BYE above all) with 200 and hands responses to the test through a
//! channel; [`RtpPeer`] has a paced sender and a receiver that counts packets
//! by payload type and decodes G.711 (PCMU and PCMA) to check what is heard.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::audio::{Audio, ulaw_decode, ulaw_encode};
use super::sip::{SipResponse, token, udp_socket};
use super::{Node, ports};

/// An SDP offer or answer for audio on `rtp_port` of 127.0.0.1 with the
/// given static payload types (`(0, "PCMU/8000")`, ...) and direction
/// (`sendrecv`, `sendonly`, ...). `version` is the o= version; a re-offer
/// must raise it (RFC 3264 §8).
pub fn audio_sdp(rtp_port: u16, codecs: &[(u8, &str)], direction: &str, version: u32) -> String {
    let pts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut s = format!(
        "v=0\r\no=uac 4242 {version} IN IP4 127.0.0.1\r\ns=tandem-test\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=audio {rtp_port} RTP/AVP {}\r\n",
        pts.join(" ")
    );
    for (pt, map) in codecs {
        s += &format!("a=rtpmap:{pt} {map}\r\n");
    }
    s += &format!("a=ptime:20\r\na={direction}\r\n");
    s
}

/// The `a=rtpmap:` encodings of an SDP body's first audio m-line, upper-cased
/// (`["OPUS/48000/2", "G722/8000", ...]`).
pub fn sdp_rtpmaps(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
        .filter_map(|v| {
            v.split_once(' ')
                .map(|(_, enc)| enc.trim().to_ascii_uppercase())
        })
        .collect()
}

/// The media direction attribute of an SDP body (`sendrecv` when absent).
pub fn sdp_direction(sdp: &str) -> String {
    sdp.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("a="))
        .find(|a| ["sendrecv", "sendonly", "recvonly", "inactive"].contains(a))
        .unwrap_or("sendrecv")
        .to_string()
}

/// G.711 A-law (ITU-T G.711), for PCMA in [`RtpPeer`].
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm >= 0 { 0xD5u8 } else { 0x55u8 };
    if pcm < 0 {
        pcm = -pcm - 1;
    }
    let pcm = (pcm.min(0x7FFF) >> 3) as u16; // 13-bit magnitude
    let byte = if pcm < 32 {
        (pcm >> 1) as u8
    } else {
        let mut seg = 1u8;
        let mut v = pcm >> 5;
        while v > 1 {
            v >>= 1;
            seg += 1;
        }
        (seg << 4) | (((pcm >> seg) & 0x0F) as u8)
    };
    byte ^ sign
}

pub fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let seg = (a & 0x70) >> 4;
    let mut t = i32::from(a & 0x0F) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

struct SendState {
    dest: Option<SocketAddr>,
    pt: u8,
    tone_hz: f32,
    enabled: bool,
}

struct RtpShared {
    stop: AtomicBool,
    send: Mutex<SendState>,
    sent: AtomicU64,
    rx_packets: AtomicU64,
    rx_by_pt: Mutex<[u64; 128]>,
    rx_audio: Mutex<Vec<i16>>,
}

/// A G.711 RTP endpoint on an even loopback port. Sends nothing until
/// [`RtpPeer::send`]; receives from the start.
pub struct RtpPeer {
    socket: Arc<UdpSocket>,
    shared: Arc<RtpShared>,
    threads: Vec<JoinHandle<()>>,
}

impl RtpPeer {
    pub fn bind() -> RtpPeer {
        let socket = loop {
            let p = ports::even_pair();
            if let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, p)) {
                break s;
            }
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        let socket = Arc::new(socket);
        let shared = Arc::new(RtpShared {
            stop: AtomicBool::new(false),
            send: Mutex::new(SendState {
                dest: None,
                pt: 0,
                tone_hz: 0.0,
                enabled: false,
            }),
            sent: AtomicU64::new(0),
            rx_packets: AtomicU64::new(0),
            rx_by_pt: Mutex::new([0; 128]),
            rx_audio: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        // Sender: 20 ms G.711 frames, paced against a deadline so the rate
        // does not drift with scheduling; sequence and timestamp keep running
        // while paused, as a real endpoint's clock does.
        {
            let (socket, shared) = (socket.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                let ssrc: u32 = 0x5ca1_0000 ^ std::process::id().rotate_left(9);
                let start = Instant::now();
                let (mut seq, mut ts, mut frame) = (1u16, 0u32, 0u64);
                let mut phase = 0.0f64;
                let mut last_pt: Option<u8> = None;
                while !shared.stop.load(Ordering::Relaxed) {
                    let (dest, pt, hz, enabled) = {
                        let s = shared.send.lock().unwrap_or_else(|e| e.into_inner());
                        (s.dest, s.pt, s.tone_hz, s.enabled)
                    };
                    if let (Some(dest), true) = (dest, enabled) {
                        let marker = last_pt != Some(pt);
                        last_pt = Some(pt);
                        let mut pkt = Vec::with_capacity(172);
                        pkt.extend_from_slice(&[0x80, if marker { 0x80 | pt } else { pt }]);
                        pkt.extend_from_slice(&seq.to_be_bytes());
                        pkt.extend_from_slice(&ts.to_be_bytes());
                        pkt.extend_from_slice(&ssrc.to_be_bytes());
                        let step = std::f64::consts::TAU * f64::from(hz) / 8000.0;
                        for _ in 0..160 {
                            let s = (0.5 * phase.sin() * 32767.0) as i16;
                            pkt.push(if pt == 8 {
                                alaw_encode(s)
                            } else {
                                ulaw_encode(s)
                            });
                            phase = (phase + step) % std::f64::consts::TAU;
                        }
                        if socket.send_to(&pkt, dest).is_ok() {
                            shared.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        seq = seq.wrapping_add(1);
                    }
                    ts = ts.wrapping_add(160);
                    frame += 1;
                    let next = start + Duration::from_millis(20 * frame);
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            }));
        }
        // Receiver: counts RTP by payload type; decodes PCMU and PCMA.
        {
            let (socket, shared) = (socket.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !shared.stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let p = &buf[..n];
                    if n < 12 || p[0] >> 6 != 2 {
                        continue;
                    }
                    let pt = p[1] & 0x7f;
                    // RTCP on a muxed port: types 200-204 read as PT 72-76.
                    if (72..=76).contains(&pt) {
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
                    shared.rx_by_pt.lock().unwrap_or_else(|e| e.into_inner())[usize::from(pt)] += 1;
                    let decode: Option<fn(u8) -> i16> = match pt {
                        0 => Some(ulaw_decode),
                        8 => Some(alaw_decode),
                        _ => None,
                    };
                    if let Some(decode) = decode {
                        let mut a = shared.rx_audio.lock().unwrap_or_else(|e| e.into_inner());
                        a.extend(p[off..end].iter().map(|&b| decode(b)));
                    }
                }
            }));
        }
        RtpPeer {
            socket,
            shared,
            threads,
        }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("rtp addr").port()
    }

    /// Sends a `tone_hz` tone as payload type `pt` (0 = PCMU, 8 = PCMA) to
    /// `dest` from the next frame on.
    pub fn send(&self, dest: SocketAddr, pt: u8, tone_hz: f32) {
        let mut s = self.shared.send.lock().unwrap_or_else(|e| e.into_inner());
        *s = SendState {
            dest: Some(dest),
            pt,
            tone_hz,
            enabled: true,
        };
    }

    /// Stops sending (the receiver keeps going).
    pub fn pause(&self) {
        self.shared
            .send
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .enabled = false;
    }

    pub fn packets_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// RTP packets received so far (any payload type).
    pub fn rx_packets(&self) -> u64 {
        self.shared.rx_packets.load(Ordering::Relaxed)
    }

    /// RTP packets received so far with payload type `pt`.
    pub fn rx_packets_pt(&self, pt: u8) -> u64 {
        self.shared
            .rx_by_pt
            .lock()
            .unwrap_or_else(|e| e.into_inner())[usize::from(pt & 0x7f)]
    }

    /// Decoded samples received so far (8 kHz).
    pub fn rx_samples(&self) -> usize {
        self.shared
            .rx_audio
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// What was heard from sample `from` on.
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
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct UacShared {
    stop: AtomicBool,
    /// When the node's BYE arrived.
    remote_bye: Mutex<Option<Instant>>,
    /// Methods of every request the node sent us, in order.
    requests: Mutex<Vec<String>>,
    /// The same requests, whole.
    messages: Mutex<Vec<String>>,
}

/// One SIP dialog over UDP, driven step by step by the test. Requests are
/// retransmitted every 500 ms (until a provisional for INVITE, a final
/// response otherwise); each call waits up to 10 s for the final response.
pub struct Uac {
    sip: Arc<UdpSocket>,
    pub local: SocketAddr,
    target: SocketAddr,
    ruri: String,
    from: String,
    /// The To header value; gets the node's tag with the first 2xx.
    to: String,
    call_id: String,
    cseq: u32,
    /// CSeq and To of the last 2xx-answered INVITE, for its ACK.
    invite_cseq: u32,
    responses: mpsc::Receiver<SipResponse>,
    shared: Arc<UacShared>,
    reader: Option<JoinHandle<()>>,
    context: String,
}

impl Uac {
    /// A dialog toward `sip:<conference>@node`, From `"<display>"`.
    pub fn new(node: &Node, conference: &str, display: &str) -> Uac {
        let sip = Arc::new(udp_socket());
        let local = sip.local_addr().expect("local addr");
        let ruri = node.uri(conference);
        let (tx, responses) = mpsc::channel();
        let shared = Arc::new(UacShared {
            stop: AtomicBool::new(false),
            remote_bye: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            messages: Mutex::new(Vec::new()),
        });
        let reader = {
            let (sip, shared) = (sip.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !shared.stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sip.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(r) = SipResponse::parse(&buf[..n]) {
                        let _ = tx.send(r);
                        continue;
                    }
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let method = msg.split_whitespace().next().unwrap_or("").to_string();
                    shared
                        .requests
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(method.clone());
                    shared
                        .messages
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(msg.clone());
                    if method == "ACK" {
                        continue;
                    }
                    if method == "BYE" {
                        let mut at = shared.remote_bye.lock().unwrap_or_else(|e| e.into_inner());
                        at.get_or_insert_with(Instant::now);
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
            })
        };
        Uac {
            sip,
            local,
            target: node.sip_addr(),
            from: format!(
                "\"{display}\" <sip:{}@127.0.0.1>;tag={}",
                display.replace(' ', "-"),
                token("f")
            ),
            to: format!("<{ruri}>"),
            ruri,
            call_id: token("uac"),
            cseq: 0,
            invite_cseq: 0,
            responses,
            shared,
            reader: Some(reader),
            context: String::new(),
        }
    }

    /// Text appended to failure messages (e.g. the node's log tail).
    pub fn set_context(&mut self, context: String) {
        self.context = context;
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// When the node sent us BYE, if it did.
    pub fn remote_bye_at(&self) -> Option<Instant> {
        *self
            .shared
            .remote_bye
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The requests the node sent us so far, whole (head and body).
    pub fn messages_received(&self) -> Vec<String> {
        self.shared
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Methods of the requests the node sent us so far.
    pub fn requests_received(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn message(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        extra: &str,
        ctype: &str,
        body: &str,
    ) -> String {
        let ctype = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ctype}\r\n")
        };
        format!(
            "{method} {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:uac@{local}>\r\n\
             {extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
            ruri = self.ruri,
            local = self.local,
            from = self.from,
            to = self.to,
            call_id = self.call_id,
            len = body.len(),
        )
    }

    /// Sends a request and waits for its final response (matched on Call-ID
    /// and CSeq). Panics after 10 s without one.
    fn transact(
        &mut self,
        method: &str,
        extra: &str,
        ctype: &str,
        body: &str,
    ) -> (SipResponse, String) {
        self.cseq += 1;
        let cseq = self.cseq;
        let branch = token("z9hG4bKu");
        let msg = self.message(method, cseq, &branch, extra, ctype, body);
        let want_cseq = format!("{cseq} {method}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut next_send = Instant::now();
        let mut provisional = false;
        while Instant::now() < deadline {
            if !(method == "INVITE" && provisional) && Instant::now() >= next_send {
                self.sip
                    .send_to(msg.as_bytes(), self.target)
                    .expect("send SIP request");
                next_send = Instant::now() + Duration::from_millis(500);
            }
            let Ok(r) = self.responses.recv_timeout(Duration::from_millis(50)) else {
                continue;
            };
            let ours = r.header("call-id").as_deref() == Some(self.call_id.as_str())
                && r.header("cseq").is_some_and(|c| {
                    c.split_whitespace().collect::<Vec<_>>().join(" ") == want_cseq
                });
            if !ours {
                continue; // a retransmitted 2xx of an earlier INVITE, or stray
            }
            if r.code < 200 {
                provisional = true;
                continue;
            }
            return (r, branch);
        }
        panic!(
            "no final response to {method} (CSeq {cseq}) within 10 s:\n{msg}\n{}",
            self.context
        );
    }

    /// INVITE (initial or re-INVITE) with optional SDP and `extra` headers
    /// (each ending in CRLF). A non-2xx is ACKed at once (same branch); a 2xx
    /// sets the dialog's To tag and is left for [`Uac::ack`].
    pub fn invite(&mut self, extra: &str, sdp: Option<&str>) -> SipResponse {
        let (r, branch) = self.transact("INVITE", extra, "application/sdp", sdp.unwrap_or(""));
        if r.code >= 300 {
            // §17.1.1.3: the ACK of a failure carries the response's To.
            let to = r.header("to").unwrap_or_else(|| self.to.clone());
            let saved = std::mem::replace(&mut self.to, to);
            let ack = self.message("ACK", self.cseq, &branch, "", "", "");
            let _ = self.sip.send_to(ack.as_bytes(), self.target);
            self.to = saved;
        } else if r.code >= 200 {
            if let Some(to) = r.header("to") {
                self.to = to;
            }
            self.invite_cseq = self.cseq;
        }
        r
    }

    /// ACK for the last 2xx to INVITE, carrying `sdp` (late offer's answer).
    pub fn ack(&mut self, sdp: Option<&str>) {
        let body = sdp.unwrap_or("");
        let ack = self.message(
            "ACK",
            self.invite_cseq,
            &token("z9hG4bKa"),
            "",
            "application/sdp",
            body,
        );
        self.sip
            .send_to(ack.as_bytes(), self.target)
            .expect("send ACK");
    }

    /// A re-INVITE with `sdp`; a 2xx is ACKed.
    pub fn reinvite(&mut self, extra: &str, sdp: &str) -> SipResponse {
        let r = self.invite(extra, Some(sdp));
        if (200..300).contains(&r.code) {
            self.ack(None);
        }
        r
    }

    /// Any other in-dialog request (INFO, BYE, UPDATE, ...).
    pub fn request(&mut self, method: &str, extra: &str, ctype: &str, body: &str) -> SipResponse {
        self.transact(method, extra, ctype, body).0
    }

    /// Stops the reader thread (without BYE).
    pub fn close(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Uac {
    fn drop(&mut self) {
        self.close();
    }
}
