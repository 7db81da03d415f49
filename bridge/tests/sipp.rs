//! Story: a SIP load tool's calls are answered, carry media and end cleanly.
//!
//! Real peer: sipp 3.6 (Debian's sip-tester) with its built-in scenarios.
//! - `uac_pcap` offers `m=audio <port> RTP/AVP 8 101` (PCMA + telephone-event),
//!   plays ~8 s of G.711 A-law RTP from a pcap plus an RFC 4733 digit, then BYE.
//! - `uac` offers `m=audio <-mp> RTP/AVP 0` (PCMU), sends no RTP, holds the
//!   call for `-d` ms, then BYE.
//!
//! sipp exits 0 only if every call succeeded.

mod common;

use std::time::Duration;

use common::peers::sipp;
use common::{Node, ports, wait_for};

fn base_args(node: &Node, scenario: &str) -> Vec<String> {
    let sip = ports::udp_tcp();
    let media = ports::block(4, false);
    vec![
        "-sn".into(),
        scenario.into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        sip.to_string(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-mp".into(),
        media.to_string(),
        "-s".into(),
        "4711".into(),
        // Bound the whole run; sipp then counts what is pending as failed.
        "-timeout".into(),
        "60s".into(),
        node.sip_addr().to_string(),
    ]
}

#[test]
fn uac_pcap_call_is_answered_and_its_rtp_reaches_the_node() {
    let mut node = Node::start();
    let rtp_in_before = node.metric("tandem_rtp_packets_total", &[("direction", "in")]);
    let mut args = base_args(&node, "uac_pcap");
    args.extend(["-m".into(), "1".into()]);
    let run = sipp(&args, Duration::from_secs(90));
    node.assert_running();
    let (ok, failed) = run.calls();
    assert!(
        run.status.success() && ok == Some(1) && failed == Some(0),
        "sipp uac_pcap: exit {}, successful {ok:?}, failed {failed:?}\n--- sipp ---\n{}\n--- node log ---\n{}",
        run.status,
        run.output,
        node.log_tail()
    );
    let rtp_in = node.metric("tandem_rtp_packets_total", &[("direction", "in")]) - rtp_in_before;
    // g711a.pcap holds ~8 s of 20 ms packets (~400); allow for a slow start.
    assert!(
        rtp_in >= 200.0,
        "the node counted {rtp_in} incoming RTP packets during the uac_pcap call (expected ~400)"
    );
    // uac_pcap also plays dtmf_2833_1.pcap: RFC 4733 events on PT 101, which
    // reach the node as one DTMF event per key press.
    let dtmf = node.metric("tandem_dtmf_events_total", &[]);
    assert!(
        dtmf >= 1.0,
        "the RFC 4733 digits sipp played were not detected (tandem_dtmf_events_total = {dtmf})"
    );
    assert!(
        node.metric("tandem_sip_responses_total", &[("code", "200")]) >= 2.0,
        "tandem_sip_responses_total{{code=\"200\"}} should count the INVITE's and the BYE's 200"
    );
    // The BYE ended it: nobody left.
    wait_for(
        "participants back to 0 after BYE",
        Duration::from_secs(10),
        || (node.metric("tandem_participants", &[]) == 0.0).then_some(()),
    );
}

#[test]
fn fifty_uac_calls_at_ten_per_second_all_succeed() {
    let mut node = Node::start();
    let ok_before = node.metric("tandem_sip_responses_total", &[("code", "200")]);
    let mut args = base_args(&node, "uac");
    args.extend([
        "-r".into(),
        "10".into(),
        "-m".into(),
        "50".into(),
        "-d".into(),
        "1000".into(),
    ]);
    let run = sipp(&args, Duration::from_secs(120));
    node.assert_running();
    let (ok, failed) = run.calls();
    assert!(
        run.status.success() && ok == Some(50) && failed == Some(0),
        "sipp uac -r 10 -m 50: exit {}, successful {ok:?}, failed {failed:?}\n--- sipp ---\n{}\n--- node log ---\n{}",
        run.status,
        run.output,
        node.log_tail()
    );
    let ok_sent = node.metric("tandem_sip_responses_total", &[("code", "200")]) - ok_before;
    assert!(
        ok_sent >= 50.0,
        "tandem_sip_responses_total{{code=\"200\"}} rose by {ok_sent}, expected >= 50 (one per INVITE, plus BYEs)"
    );
    wait_for(
        "participants and conferences back to 0",
        Duration::from_secs(10),
        || {
            let m = node.metrics();
            let p = common::http::metric_sum(&m, "tandem_participants", &[]).unwrap_or(0.0);
            let c = common::http::metric_sum(&m, "tandem_conferences", &[]).unwrap_or(0.0);
            (p == 0.0 && c == 0.0).then_some(())
        },
    );
    // Still answering.
    assert_eq!(
        common::sip::udp_options(&node),
        Some(200),
        "OPTIONS after the load run"
    );
}
