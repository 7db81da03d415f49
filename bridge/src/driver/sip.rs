//! SIP socket readers. They parse (the parsers are cheap and bounded), answer
//! what is malformed with 400 where a response is possible, count it, and hand
//! good messages to the signalling task. A bad peer costs one parse, never a
//! stall for anyone else.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::debug;

use tandem_proto::sip::message::{MAX_MESSAGE_SIZE, Message, parse_datagram, parse_stream};
use tandem_proto::sip::transaction::Transport;

use crate::metrics::Metrics;
use crate::signalling::SipInbound;

pub async fn udp_reader(
    socket: Arc<UdpSocket>,
    tx: mpsc::Sender<SipInbound>,
    metrics: Arc<Metrics>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                debug!(%e, "sip udp receive");
                continue;
            }
        };
        let data = &buf[..n];
        // RFC 5626 keepalives (CRLF) are not messages.
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            continue;
        }
        match parse_datagram(data) {
            Ok(msg) => {
                let input = SipInbound::Message {
                    msg,
                    from,
                    transport: Transport::Udp,
                    reply: None,
                };
                if tx.try_send(input).is_err() {
                    metrics.malformed("sip", "overload");
                }
            }
            Err(e) => {
                metrics.malformed("sip", e.kind().as_str());
                if let Some(resp) = e.bad_request() {
                    metrics.sip_responses.with_label_values(&["400"]).inc();
                    let _ = socket
                        .send_to(&Message::Response(resp).to_bytes(), from)
                        .await;
                }
            }
        }
    }
}

pub async fn tcp_acceptor(
    listener: TcpListener,
    tx: mpsc::Sender<SipInbound>,
    metrics: Arc<Metrics>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(tcp_connection(stream, from, tx.clone(), metrics.clone()));
            }
            Err(e) => {
                debug!(%e, "sip tcp accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn tcp_connection(
    stream: TcpStream,
    from: SocketAddr,
    tx: mpsc::Sender<SipInbound>,
    metrics: Arc<Metrics>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16384];
    'conn: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parse_stream(&buf) {
                Ok(Some((msg, used))) => {
                    buf.drain(..used);
                    let input = SipInbound::Message {
                        msg,
                        from,
                        transport: Transport::Tcp,
                        reply: Some(out_tx.clone()),
                    };
                    if tx.send(input).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(None) => {
                    if buf.len() > MAX_MESSAGE_SIZE {
                        metrics.malformed("sip", "oversized");
                        break 'conn;
                    }
                    break;
                }
                Err(e) => {
                    // A stream that lost its framing cannot be resynchronised:
                    // answer if we can, then close it (RFC 3261 §18.3).
                    metrics.malformed("sip", e.kind().as_str());
                    if let Some(resp) = e.bad_request() {
                        metrics.sip_responses.with_label_values(&["400"]).inc();
                        let _ = out_tx.send(Message::Response(resp).to_bytes()).await;
                    }
                    break 'conn;
                }
            }
        }
    }
    let _ = tx.send(SipInbound::TcpClosed { from }).await;
    drop(out_tx);
    let _ = writer.await;
}
