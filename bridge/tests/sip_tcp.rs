//! Story: SIP over TCP works, and one broken TCP peer is cut off without
//! disturbing the others.

mod common;

use std::io::Write;
use std::time::Duration;

use common::Node;
use common::sip::{request, tcp_connect, tcp_options, tcp_read_message};

#[test]
fn options_over_tcp_gets_200() {
    let node = Node::start();
    let mut s = tcp_connect(&node);
    let r = tcp_options(&mut s, &node).unwrap_or_else(|| {
        panic!(
            "no final response to OPTIONS over TCP\n--- node log ---\n{}",
            node.log_tail()
        )
    });
    assert_eq!(r.code, 200, "OPTIONS over TCP: {}", r.raw);
    // The connection stays usable for a second request.
    let r = tcp_options(&mut s, &node).expect("second OPTIONS on the same connection");
    assert_eq!(r.code, 200, "second OPTIONS over TCP: {}", r.raw);
}

#[test]
fn malformed_tcp_stream_gets_400_and_is_closed_without_affecting_others() {
    let mut node = Node::start();
    let mut good = tcp_connect(&node);
    assert_eq!(
        tcp_options(&mut good, &node).map(|r| r.code),
        Some(200),
        "OPTIONS on the well-behaved connection before"
    );

    // A request whose headers are all there but whose Content-Length is not a
    // number: the stream can no longer be framed. RFC 3261 18.3: answer 400
    // and close the connection.
    let mut bad = tcp_connect(&node);
    let local = bad.local_addr().expect("local addr");
    let msg = request("OPTIONS", &node.uri("tcp"), local, "TCP", "", "")
        .replace("Content-Length: 0", "Content-Length: abc");
    bad.write_all(msg.as_bytes())
        .expect("write malformed request");
    let r = tcp_read_message(&mut bad, Duration::from_secs(5))
        .unwrap_or_else(|e| {
            panic!(
                "reading the answer to a malformed request over TCP: {e}\n{}",
                node.log_tail()
            )
        })
        .unwrap_or_else(|| {
            panic!(
                "the node closed the TCP connection without answering 400\n{}",
                node.log_tail()
            )
        });
    assert_eq!(r.code, 400, "malformed request over TCP: {}", r.raw);
    // Then the node closes it: EOF (or a reset), not more data, within 5 s.
    match tcp_read_message(&mut bad, Duration::from_secs(5)) {
        Ok(None) => {}
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut => {}
        other => panic!("the node should close a TCP connection it cannot frame; got {other:?}"),
    }

    // Pure garbage on a third connection: closed too (answering is optional).
    let mut junk = tcp_connect(&node);
    junk.write_all(&[0u8, 1, 2, 0xff, b'\r', b'\n', b'\r', b'\n'])
        .ok();
    junk.write_all(&[b'x'; 4096]).ok();
    match tcp_read_message(&mut junk, Duration::from_secs(5)) {
        Ok(None) => {}
        Ok(Some(r)) if r.code == 400 => {}
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut => {}
        other => panic!("garbage over TCP should be closed (optionally after 400); got {other:?}"),
    }

    // The well-behaved connection was not affected.
    node.assert_running();
    assert_eq!(
        tcp_options(&mut good, &node).map(|r| r.code),
        Some(200),
        "OPTIONS on the well-behaved connection after the broken ones"
    );
    assert!(
        node.metric("tandem_malformed_total", &[("protocol", "sip")]) >= 1.0,
        "tandem_malformed_total{{protocol=\"sip\"}} should count the malformed TCP input"
    );
}
