//! The control plane with real etcd: `tandem control` (front door, placement,
//! rooms API) and `tandem node`s in two sites, each a process, callers that
//! are synthetic room systems from site-specific loopback addresses.
//!
//! Sites are told apart by the caller's source network: east callers bind
//! 127.0.1.x, west callers 127.0.2.x (all of 127/8 is loopback on Linux).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{self, Etcd, SITES, call, participants_on};
use common::{Node, rooms, wait_for};
use tandem_loadtest::{DtmfMethod, RoomSystem, RoomSystemConfig};

fn put_vmr(control: &Node, id: &str, body: &str) {
    let r = control.request("PUT", &format!("/api/vmrs/{id}"), body);
    assert!(
        r.status == 201 || r.status == 200,
        "PUT /api/vmrs/{id}: {} {}",
        r.status,
        r.body
    );
}

fn print_table(control: &Node, nodes: &[(&str, Node)]) {
    eprintln!("conference | nodes (home first) | reason | participants per node");
    for p in cluster::placements(control) {
        let conf = p["conference"].as_str().unwrap_or("?").to_string();
        let per: Vec<String> = nodes
            .iter()
            .map(|(name, n)| format!("{name}:{}", participants_on(n, &conf)))
            .collect();
        eprintln!(
            "{conf} | {} | {} | {}",
            p["nodes"],
            p["reasons"],
            per.join(" ")
        );
    }
}

/// 30 calls to 6 conferences from two sites land as the policy says; then a
/// node is SIGKILLed: its conferences move within the lease TTL + 2 s, new
/// calls to them succeed, and calls on the other nodes keep their media.
#[test]
fn calls_land_as_the_placement_policy_says_and_a_killed_nodes_conferences_move() {
    let etcd = Etcd::start();
    let control = cluster::control(&etcd, SITES, "", &[]);
    let mut nodes: Vec<(&str, Node)> = vec![
        ("node-a", cluster::node(&etcd, "node-a", "east", 20, &[])),
        ("node-b", cluster::node(&etcd, "node-b", "east", 20, &[])),
        ("node-c", cluster::node(&etcd, "node-c", "west", 10, &[])),
    ];
    cluster::wait_nodes(&control, 3);
    fn node_of<'a>(nodes: &'a [(&str, Node)], name: &str) -> &'a Node {
        nodes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, n)| n)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
    put_vmr(&control, "1004", r#"{"name":"West pool","pool":["west"]}"#);
    put_vmr(
        &control,
        "1006",
        r#"{"name":"Both","pool":["west","east"]}"#,
    );

    let rt = rooms::runtime();
    // (conference, callers' site, expected reason of the home)
    let plan = [
        ("1001", "east", "site"),
        ("1002", "east", "site"),
        ("1003", "west", "site"),
        ("1004", "east", "pool"),
        ("1005", "west", "overflow"),
        ("1006", "east", "site"),
    ];
    let mut calls = Vec::new();
    let mut homes = Vec::new();
    for (i, (conf, site, reason)) in plan.iter().enumerate() {
        for k in 0..5u8 {
            let name = format!("{conf}-{site}-{k}");
            // Two talkers per conference (the mixer mixes the three
            // loudest; the others are quiet rooms).
            let hz = (k < 2).then_some(300.0 + 100.0 * k as f32);
            let room = call(&rt, &control, conf, &name, site, (i as u8) * 5 + k, hz);
            calls.push((conf.to_string(), name, hz, room));
        }
        let p = cluster::placement(&control, conf)
            .unwrap_or_else(|| panic!("conference {conf} has no placement"));
        let home = p["nodes"][0].as_str().unwrap_or_default().to_string();
        assert_eq!(p["reason"], *reason, "conference {conf}: placement {p}");
        // The 5 calls are all on the home (it has room for them).
        wait_for(
            &format!("5 participants of {conf} on its home {home}"),
            Duration::from_secs(10),
            || (participants_on(node_of(&nodes, &home), conf) == 5).then_some(()),
        );
        homes.push((conf.to_string(), home));
    }
    print_table(&control, &nodes);
    let home = |conf: &str| {
        homes
            .iter()
            .find(|(c, _)| c == conf)
            .map(|(_, h)| h.clone())
            .unwrap_or_default()
    };
    // Site: east conferences on east nodes, the second on the other (least
    // loaded) east node; west on the west node.
    let east = ["node-a", "node-b"];
    assert!(east.contains(&home("1001").as_str()));
    assert!(east.contains(&home("1002").as_str()));
    assert_ne!(home("1001"), home("1002"), "least loaded east node");
    assert_eq!(home("1003"), "node-c");
    // Pool: the room's pool (west) wins over the caller's site.
    assert_eq!(home("1004"), "node-c");
    // Overflow: west is full (10 of 10), so a west caller's new conference
    // goes east.
    assert!(east.contains(&home("1005").as_str()));
    // The least loaded east node (5 against 10) for the east caller of a room
    // pooled west-then-east... west first is the pool's order, but the
    // caller's site is in the pool: site first.
    let loads: Vec<usize> = east
        .iter()
        .map(|n| {
            ["1001", "1002", "1005", "1006"]
                .iter()
                .filter(|c| home(c) == *n)
                .count()
        })
        .collect();
    assert_eq!(loads, vec![2, 2], "east nodes carry two conferences each");
    let m = control.metrics();
    assert!(
        common::http::metric_sum(
            &m,
            "tandem_front_door_calls_total",
            &[("outcome", "proxied")]
        )
        .unwrap_or(0.0)
            >= 30.0
    );
    assert!(
        common::http::metric_sum(&m, "tandem_placements_total", &[("reason", "overflow")])
            .unwrap_or(0.0)
            >= 1.0
    );

    // Every participant hears the others of its conference (tone check on
    // two conferences).
    std::thread::sleep(Duration::from_secs(2));
    for (conf, name, own_hz, room) in calls.iter().filter(|(c, ..)| c == "1001" || c == "1003") {
        let heard = room.heard();
        for k in 0..2 {
            let hz = 300.0 + 100.0 * k as f32;
            let own = *own_hz == Some(hz);
            assert_eq!(
                heard.contains(hz),
                !own,
                "{conf}: {name} hears {hz} Hz: {} (own tone: {own})",
                heard.contains(hz)
            );
        }
    }

    // SIGKILL the node with 1002's home.
    let victim = home("1002");
    let moved: Vec<String> = homes
        .iter()
        .filter(|(_, h)| *h == victim)
        .map(|(c, _)| c.clone())
        .collect();
    let survivors: Vec<&(String, String, Option<f32>, RoomSystem)> =
        calls.iter().filter(|(c, ..)| home(c) != victim).collect();
    let before: Vec<u64> = survivors
        .iter()
        .map(|(.., r)| r.stats().packets_received)
        .collect();
    let killed = Instant::now();
    nodes
        .iter_mut()
        .find(|(n, _)| *n == victim)
        .expect("victim")
        .1
        .kill();
    for conf in &moved {
        let new_home = wait_for(
            &format!("{conf} re-placed off {victim} within lease TTL (3 s) + 2 s"),
            Duration::from_secs(5),
            || {
                let p = cluster::placement(&control, conf)?;
                let h = p["nodes"][0].as_str()?.to_string();
                (h != victim && p["reason"] == "failover").then_some(h)
            },
        );
        eprintln!(
            "{conf}: re-placed on {new_home} {:.1} s after SIGKILL",
            killed.elapsed().as_secs_f64()
        );
    }
    // A new call to a moved conference lands on its new home.
    let conf = &moved[0];
    let fresh = call(
        &rt,
        &control,
        conf,
        "after-failover",
        "east",
        60,
        Some(1500.0),
    );
    let new_home = cluster::placement(&control, conf).expect("placement")["nodes"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    wait_for(
        &format!("the new call on {conf}'s new home {new_home}"),
        Duration::from_secs(10),
        || (participants_on(node_of(&nodes, &new_home), conf) >= 1).then_some(()),
    );
    assert!(fresh.is_active());
    // Calls on the surviving nodes kept their media throughout.
    std::thread::sleep(Duration::from_secs(1));
    for ((conf, name, _, room), before) in survivors.iter().zip(before) {
        let now = room.stats().packets_received;
        assert!(
            now > before + 40,
            "{conf}: {name} received {before} then {now} packets across the failover"
        );
    }
    nodes.retain(|(n, _)| *n != victim);
    print_table(&control, &nodes);
}

/// What the front door and the rooms API refuse, and how: unknown conference
/// (auto-create off) 404, too many hops 483, malformed REST input 400 with a
/// JSON error; a second front door in redirect mode answers 302 naming the
/// node, and the dial plan maps other URIs to conferences.
#[test]
fn the_front_door_refuses_clearly_redirects_when_asked_and_follows_the_dial_plan() {
    let etcd = Etcd::start();
    let rules = r#"
[[front_door.rule]]
pattern = '^meet-(\d+)@'
conference = "$1"
"#;
    let proxy = cluster::control(
        &etcd,
        SITES,
        rules,
        &[("TANDEM_CONFERENCE_AUTO_CREATE", "false")],
    );
    let redirect = cluster::control(
        &etcd,
        SITES,
        "",
        &[
            ("TANDEM_CONFERENCE_AUTO_CREATE", "false"),
            ("TANDEM_FRONT_DOOR_MODE", "redirect"),
        ],
    );
    let a = cluster::node(&etcd, "node-a", "east", 20, &[]);
    cluster::wait_nodes(&proxy, 1);

    // REST: malformed input is a 400 with a JSON error body.
    for (body, code, what) in [
        ("{not json", "bad_request", "not JSON"),
        (
            r#"{"id":"2001","colour":"red"}"#,
            "bad_request",
            "unknown field",
        ),
        (
            r#"{"id":"2001","pin":"12ab"}"#,
            "invalid",
            "PIN with a letter",
        ),
        (r#"{"id":"a/b"}"#, "invalid", "bad ID"),
        (r#"[1,2]"#, "bad_request", "not an object"),
    ] {
        let r = proxy.request("POST", "/api/vmrs", body);
        assert_eq!(r.status, 400, "{what}: {} {}", r.status, r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {}", r.body));
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let r = proxy.request(
        "POST",
        "/api/vmrs",
        r#"{"id":"2001","name":"Ops","layout":"2x2"}"#,
    );
    assert_eq!(r.status, 201, "create: {}", r.body);
    let r = proxy.request("POST", "/api/vmrs", r#"{"id":"2001"}"#);
    assert_eq!(r.status, 409, "duplicate: {}", r.body);
    let r = proxy.request("PUT", "/api/vmrs/2001", r#"{"id":"2002"}"#);
    assert_eq!(r.status, 400, "id differs from the path: {}", r.body);
    let r = proxy.get("/api/vmrs/2999");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("not_found"), "{}", r.body);
    let r = proxy.get("/api/openapi.json");
    let spec: serde_json::Value = serde_json::from_str(&r.body).expect("OpenAPI JSON");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    assert!(spec["paths"]["/api/vmrs/{id}"]["put"].is_object());
    assert!(proxy.metric("tandem_control_api_errors_total", &[]) >= 8.0);

    // SIP: unknown conference with auto-create off.
    let invite = common::sip::request(
        "INVITE",
        &format!("sip:2999@{}", proxy.sip_addr()),
        "127.0.1.5:5999".parse().expect("addr"),
        "UDP",
        "",
        "",
    );
    let sock = common::sip::udp_socket();
    let local = sock.local_addr().expect("local");
    let invite = invite.replace("127.0.1.5:5999", &local.to_string());
    sock.send_to(invite.as_bytes(), proxy.sip_addr())
        .expect("send");
    let got = common::sip::collect_responses(&sock, Duration::from_secs(3));
    assert!(
        got.iter().any(|r| r.code == 404),
        "unknown conference: {:?}",
        got.iter().map(|r| r.code).collect::<Vec<_>>()
    );
    // Max-Forwards 0: 483.
    let hops = common::sip::request(
        "INVITE",
        &format!("sip:2001@{}", proxy.sip_addr()),
        local,
        "UDP",
        "",
        "",
    )
    .replace("Max-Forwards: 70", "Max-Forwards: 0");
    sock.send_to(hops.as_bytes(), proxy.sip_addr())
        .expect("send");
    let got = common::sip::collect_responses(&sock, Duration::from_secs(3));
    assert!(
        got.iter().any(|r| r.code == 483),
        "{:?}",
        got.iter().map(|r| r.code).collect::<Vec<_>>()
    );
    assert!(proxy.metric("tandem_front_door_calls_total", &[("outcome", "not_found")]) >= 1.0);
    assert!(proxy.metric("tandem_front_door_calls_total", &[("outcome", "loop")]) >= 1.0);

    // Redirect: 302 naming the node; calling it there joins the room.
    let invite = common::sip::request(
        "INVITE",
        &format!("sip:2001@{}", redirect.sip_addr()),
        local,
        "UDP",
        "",
        "",
    );
    sock.send_to(invite.as_bytes(), redirect.sip_addr())
        .expect("send");
    let got = common::sip::collect_responses(&sock, Duration::from_secs(3));
    let moved = got.iter().find(|r| r.code == 302).unwrap_or_else(|| {
        panic!(
            "no 302: {:?}",
            got.iter().map(|r| r.code).collect::<Vec<_>>()
        )
    });
    let contact = moved.header("Contact").expect("302 has a Contact");
    assert_eq!(
        contact,
        format!("<sip:2001@{}>", a.sip_addr()),
        "302 names node-a"
    );
    let rt = rooms::runtime();
    let direct = rooms::call(
        &rt,
        &a,
        "2001",
        "redirected",
        tandem_loadtest::Codec::Opus,
        Some((500.0, 0.2)),
    );
    // The dial plan: meet-2001 is conference 2001.
    let planned = call(
        &rt,
        &proxy,
        "meet-2001",
        "dial-plan",
        "east",
        1,
        Some(700.0),
    );
    wait_for(
        "both callers in 2001 on node-a",
        Duration::from_secs(10),
        || (participants_on(&a, "2001") == 2).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        planned.heard().contains(500.0),
        "the dial-plan caller hears the redirected one"
    );
    assert!(direct.heard().contains(700.0), "and the other way round");

    // A room with a PIN, made through the REST API (so it lives in etcd
    // and reaches the node from there): three wrong PINs through the front
    // door end the call with the spoken goodbye and a BYE that says why.
    let r = proxy.request("PUT", "/api/vmrs/2002", r#"{"name":"Board","pin":"2468"}"#);
    assert_eq!(r.status, 201, "create 2002: {}", r.body);
    let guest = call(&rt, &proxy, "2002", "guest", "east", 2, Some(440.0));
    wait_for(
        "guest at the PIN door of 2002 on node-a",
        Duration::from_secs(10),
        || (a.participant("2002", "guest")?.get("state")?.as_str()? == "pin").then_some(()),
    );
    guest.send_dtmf("1111#", DtmfMethod::Rfc4733);
    std::thread::sleep(Duration::from_millis(2500));
    guest.send_dtmf("2222#", DtmfMethod::Info);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(guest.is_active(), "two wrong PINs leave the call up");
    guest.mark();
    guest.send_dtmf("3333#", DtmfMethod::Rfc4733);
    wait_for(
        "the node's BYE after the third wrong PIN",
        Duration::from_secs(15),
        || guest.stats().ended_by_remote.then_some(()),
    );
    let goodbye = guest.heard();
    assert!(
        goodbye.duration() > Duration::from_millis(2800) && goodbye.rms_db() > -40.0,
        "the guest hears the whole goodbye prompt before the BYE: {:.1} s at {:.1} dBFS",
        goodbye.duration().as_secs_f32(),
        goodbye.rms_db()
    );
    let reason = guest.stats().bye_reason.unwrap_or_default();
    assert!(
        reason.contains("cause=403") && reason.contains("Wrong PIN"),
        "BYE Reason: {reason:?}"
    );
    assert_eq!(
        a.metric("tandem_pin_attempts_total", &[("result", "wrong")]),
        3.0
    );
}

/// etcd restarts under running calls: no call drops, the node registers
/// again, and new calls are routed once it is back (503 meanwhile).
#[test]
fn an_etcd_restart_drops_no_call() {
    let mut etcd = Etcd::start();
    let control = cluster::control(&etcd, SITES, "", &[]);
    let a = cluster::node(&etcd, "node-a", "east", 20, &[]);
    cluster::wait_nodes(&control, 1);
    let rt = rooms::runtime();
    let one = call(&rt, &control, "3001", "one", "east", 1, Some(400.0));
    let two = call(&rt, &control, "3001", "two", "east", 2, Some(900.0));
    wait_for("2 in 3001", Duration::from_secs(10), || {
        (participants_on(&a, "3001") == 2).then_some(())
    });
    let before = one.stats().packets_received;
    etcd.stop();
    // While etcd is away, a new conference cannot be placed: 503 with
    // Retry-After, said at once.
    let sock = common::sip::udp_socket();
    let local = sock.local_addr().expect("local");
    let invite = common::sip::request(
        "INVITE",
        &format!("sip:3999@{}", control.sip_addr()),
        local,
        "UDP",
        "",
        "",
    );
    sock.send_to(invite.as_bytes(), control.sip_addr())
        .expect("send");
    let got = common::sip::collect_responses(&sock, Duration::from_secs(8));
    let refused = got.iter().find(|r| r.code == 503).unwrap_or_else(|| {
        panic!(
            "no 503 while etcd is down: {:?}",
            got.iter().map(|r| r.code).collect::<Vec<_>>()
        )
    });
    assert!(refused.header("Retry-After").is_some());
    etcd.start_again();
    one.mark();
    two.mark();
    let restarted = one.stats().packets_received;
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        one.is_active() && two.is_active(),
        "calls still up after the etcd restart"
    );
    // 50 packets a second: about 100 in the 2 s since, and some while
    // etcd was away.
    let now = one.stats().packets_received;
    assert!(
        restarted > before + 5 && now > restarted + 80,
        "media kept flowing: {before} packets when etcd stopped, {restarted} when it was back, {now} 2 s later"
    );
    assert!(one.heard().contains(900.0) && two.heard().contains(400.0));
    assert!(!one.heard().contains(400.0), "nobody hears themselves");
    // The node is registered (again) and new calls route.
    cluster::wait_nodes(&control, 1);
    let three = call(&rt, &control, "3001", "three", "east", 3, None);
    wait_for(
        "3 in 3001 after the restart",
        Duration::from_secs(10),
        || (participants_on(&a, "3001") == 3).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(three.heard().contains(400.0) && three.heard().contains(900.0));
    let _ = a;
}

/// A caller on TCP through the front door (the proxy forwards to the node
/// over UDP): when the node hangs up, its BYE reaches the caller on the
/// caller's own connection to the front door, and the caller's 200 goes
/// back to the node.
#[test]
fn a_tcp_callers_hang_up_from_the_node_comes_back_through_the_front_door() {
    use std::io::{Read, Write};
    let etcd = Etcd::start();
    let control = cluster::control(&etcd, SITES, "", &[]);
    let mut a = cluster::node(&etcd, "node-a", "east", 20, &[]);
    cluster::wait_nodes(&control, 1);
    let mut s = common::sip::tcp_connect(&control);
    let local = s.local_addr().expect("local");
    let sdp = "v=0\r\no=tcp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    let ruri = format!("sip:5001@{}", control.sip_addr());
    let invite = common::sip::request("INVITE", &ruri, local, "TCP", "", sdp).replace(
        &format!("Contact: <sip:tester@{local}>"),
        &format!("Contact: <sip:tester@{local};transport=tcp>"),
    );
    s.write_all(invite.as_bytes()).expect("send INVITE");
    let ok = loop {
        let r = common::sip::tcp_read_message(&mut s, Duration::from_secs(10))
            .expect("read")
            .unwrap_or_else(|| panic!("no answer to the TCP INVITE\n{}", control.log_tail()));
        if r.code >= 200 {
            break r;
        }
    };
    assert_eq!(ok.code, 200, "{}", ok.raw);
    let node_contact = ok.header("Contact").expect("Contact in the 200");
    let to = ok.header("To").expect("To");
    let ack = common::sip::request("ACK", &ruri, local, "TCP", "", "")
        .replace(&format!("To: <{ruri}>"), &format!("To: {to}"));
    let call_id = ok.header("Call-ID").expect("Call-ID");
    let from = common::sip::header(&invite, "From").expect("From");
    let ack = replace_header(&replace_header(&ack, "Call-ID", &call_id), "From", &from);
    s.write_all(ack.as_bytes()).expect("send ACK");
    wait_for("the TCP caller in 5001", Duration::from_secs(10), || {
        (participants_on(&a, "5001") == 1).then_some(())
    });
    eprintln!("node's Contact: {node_contact}");

    // The node hangs up (it shuts down): the BYE comes on our connection.
    a.signal("TERM");
    s.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let bye = String::from_utf8_lossy(&got).into_owned();
    assert!(
        bye.starts_with("BYE "),
        "the node's BYE should reach the TCP caller through the front door; got {bye:?}\n--- control ---\n{}",
        control.log_tail()
    );
    assert!(bye.contains(&call_id), "{bye}");
    // Our 200 goes back the way it came; the node then exits at once
    // rather than after its BYE's timeout.
    let head_end = bye.find("\r\n\r\n").unwrap_or(bye.len());
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for line in bye[..head_end].lines().skip(1) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            resp.push_str(line);
            resp.push_str("\r\n");
        }
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    let sent = Instant::now();
    s.write_all(resp.as_bytes()).expect("send 200 to BYE");
    let status = a.wait_exit(Duration::from_secs(10));
    eprintln!(
        "node exited {:.2} s after our 200: {status:?}",
        sent.elapsed().as_secs_f64()
    );
    assert!(
        status.is_some(),
        "the node ends after its BYEs are answered"
    );
}

fn replace_header(msg: &str, name: &str, value: &str) -> String {
    msg.lines()
        .map(|l| {
            if l.split(':')
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            {
                format!("{name}: {value}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The lobby number through the front door lands on the least loaded node,
/// which is not the one the conference the caller asks for lives on: the
/// lobby node joins that conference's placement and links its part to the
/// home, so the caller (after the room's PIN) hears the people on the
/// other node and they hear the caller: one conference ID, one conference.
#[test]
fn the_lobby_takes_a_caller_to_a_conference_homed_on_another_node() {
    let etcd = Etcd::start();
    let control = cluster::control(&etcd, SITES, "", &[]);
    let env = [
        ("TANDEM_SPAN_SECRET", "lobby test secret"),
        ("TANDEM_VIDEO_ENABLED", "false"),
        ("TANDEM_SPAN_VIDEO_FLOWS", "0"),
    ];
    let nodes = [
        ("node-a", cluster::node(&etcd, "node-a", "east", 20, &env)),
        ("node-b", cluster::node(&etcd, "node-b", "east", 20, &env)),
    ];
    cluster::wait_nodes(&control, 2);
    put_vmr(&control, "6001", r#"{"name":"Ops","pin":"4321"}"#);
    let rt = rooms::runtime();
    let host = call(&rt, &control, "6001", "host", "east", 1, Some(440.0));
    let home = cluster::placement(&control, "6001").expect("placed")["nodes"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (home_node, other) = if home == nodes[0].0 {
        (&nodes[0].1, &nodes[1])
    } else {
        (&nodes[1].1, &nodes[0])
    };
    home_node.wait_state("6001", "host", "pin");
    host.send_dtmf("4321#", DtmfMethod::Rfc4733);
    home_node.wait_state("6001", "host", "joined");

    // The lobby: to the least loaded node, the other one.
    let guest = call(&rt, &control, "lobby", "guest", "east", 2, Some(1000.0));
    other.1.wait_state("lobby", "guest", "lobby");
    guest.send_dtmf("6001#", DtmfMethod::Rfc4733);
    other.1.wait_state("6001", "guest", "pin");
    guest.send_dtmf("4321#", DtmfMethod::Info);
    other.1.wait_state("6001", "guest", "joined");

    // One conference: the lobby node joined its placement and linked.
    let p = wait_for(
        "the lobby node in 6001's placement",
        Duration::from_secs(5),
        || {
            let p = cluster::placement(&control, "6001")?;
            (p["nodes"].as_array()?.len() == 2).then_some(p)
        },
    );
    eprintln!("placement of 6001: {p}");
    assert_eq!(p["nodes"][0], home.as_str(), "{p}");
    assert_eq!(p["nodes"][1], other.0, "{p}");
    assert_eq!(p["reasons"][1], "joined", "{p}");
    wait_for(
        "the lobby node's part linked to the home",
        Duration::from_secs(10),
        || {
            let span = other.1.conference("6001")?.get("span")?.clone();
            (span["role"] == "satellite" && span["peers"][0]["state"] == "connected").then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    host.mark();
    guest.mark();
    std::thread::sleep(Duration::from_secs(3));
    let (h, g) = (host.heard(), guest.heard());
    assert!(
        h.contains(1000.0) && !h.contains(440.0),
        "the host hears the guest from the other node and not itself: 1000 Hz {:.1} dBFS, 440 Hz {:.1} dBFS",
        h.tone_level(1000.0),
        h.tone_level(440.0)
    );
    assert!(
        g.contains(440.0) && !g.contains(1000.0),
        "the guest hears the host and not itself: 440 Hz {:.1} dBFS, 1000 Hz {:.1} dBFS",
        g.tone_level(440.0),
        g.tone_level(1000.0)
    );
    assert_eq!(
        control.metric("tandem_front_door_calls_total", &[("outcome", "proxied")]),
        2.0
    );
    assert_eq!(
        other
            .1
            .metric("tandem_ivr_calls_total", &[("outcome", "joined")]),
        1.0
    );
}

/// A room's size is the conference's, across the nodes it spans: a room of
/// 3 on nodes that take 2 each spans onto the second node for its third
/// caller, and the fourth is told the room is full (486), not let in on the
/// node with space.
#[test]
fn a_rooms_size_holds_across_the_nodes_it_spans() {
    let etcd = Etcd::start();
    let control = cluster::control(&etcd, SITES, "", &[]);
    let env = [
        ("TANDEM_SPAN_SECRET", "size test secret"),
        ("TANDEM_VIDEO_ENABLED", "false"),
        ("TANDEM_SPAN_VIDEO_FLOWS", "0"),
    ];
    let nodes = [
        cluster::node(&etcd, "node-a", "east", 2, &env),
        cluster::node(&etcd, "node-b", "east", 2, &env),
    ];
    cluster::wait_nodes(&control, 2);
    put_vmr(
        &control,
        "6100",
        r#"{"name":"Huddle","max_participants":3}"#,
    );
    let rt = rooms::runtime();
    let calls: Vec<RoomSystem> = (0..3u8)
        .map(|i| {
            call(
                &rt,
                &control,
                "6100",
                &format!("p{i}"),
                "east",
                30 + i,
                None,
            )
        })
        .collect();
    let p = cluster::placement(&control, "6100").expect("placed");
    assert_eq!(p["reasons"][1], "span_full", "{p}");
    let far = if p["nodes"][1] == "node-a" {
        &nodes[0]
    } else {
        &nodes[1]
    };
    // The far node knows the home's two from the span roster.
    wait_for(
        "the far node listing 3 people in 6100",
        Duration::from_secs(10),
        || (far.conference("6100")?["participants"].as_array()?.len() == 3).then_some(()),
    );
    let cfg = RoomSystemConfig::new(control.sip_addr(), "6100", "p3");
    let fourth = rt.block_on(async {
        let mut cfg = cfg;
        cfg.local_ip = cluster::caller_ip("east", 33);
        tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
    });
    match fourth {
        Ok(Err(tandem_loadtest::Error::Rejected { code, .. })) => assert_eq!(code, 486),
        Ok(Ok(_)) => panic!("a fourth caller got into a room of 3 on the node with space"),
        other => panic!("fourth call: {other:?}"),
    }
    assert!(far.metric("tandem_calls_total", &[("outcome", "conference_full")]) >= 1.0);
    drop(calls);
}

/// HD ports: a node with one HD port takes a second video caller
/// audio-only (it hears and is heard, and sees nothing), counts it, and
/// publishes its HD ports in use, which the control plane shows and
/// weighs when it places conferences.
#[test]
fn a_node_out_of_hd_ports_answers_audio_only_and_says_so_to_the_control_plane() {
    let etcd = Etcd::start();
    let control = cluster::control(&etcd, SITES, "", &[]);
    let a = cluster::node(
        &etcd,
        "node-a",
        "east",
        20,
        &[("TANDEM_NODE_MAX_HD_PARTICIPANTS", "1")],
    );
    cluster::wait_nodes(&control, 1);
    let rt = rooms::runtime();
    let video = |name: &str, hz: f32, colour: tandem_loadtest::Rgb| {
        RoomSystemConfig::new(control.sip_addr(), "6200", name)
            .with_tone(hz, 0.2)
            .with_video(tandem_loadtest::VideoSpec::new(colour))
    };
    let first = cluster::call_as(
        &rt,
        &control,
        video("first", 500.0, (200, 0, 0)),
        "east",
        40,
    );
    let second = cluster::call_as(
        &rt,
        &control,
        video("second", 900.0, (0, 0, 200)),
        "east",
        41,
    );
    wait_for("both in 6200", Duration::from_secs(10), || {
        (participants_on(&a, "6200") == 2).then_some(())
    });
    let has_video = |name: &str| a.participant("6200", name).map(|p| p["video"] == true);
    assert_eq!(
        has_video("first"),
        Some(true),
        "the first caller has the HD port"
    );
    assert_eq!(has_video("second"), Some(false), "the second is audio-only");
    assert_eq!(a.metric("tandem_hd_full_total", &[]), 1.0);
    assert_eq!(a.metric("tandem_sip_hd_calls", &[]), 1.0);
    // Audio-only is still in the conference: both hear each other.
    std::thread::sleep(Duration::from_secs(1));
    first.mark();
    second.mark();
    std::thread::sleep(Duration::from_secs(2));
    assert!(first.heard().contains(900.0) && second.heard().contains(500.0));
    // The control plane sees the HD ports in use.
    let seen = wait_for(
        "control seeing 1 of 1 HD ports in use",
        Duration::from_secs(5),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&control.get("/api/nodes").body).ok()?;
            let load = v.as_array()?.first()?.get("load")?.clone();
            (load["hd_participants"] == 1 && load["max_hd"] == 1).then_some(load)
        },
    );
    eprintln!("node-a's load as control sees it: {seen}");
    assert_eq!(
        control.metric(
            "tandem_control_node_hd_ports",
            &[("node", "node-a"), ("state", "in_use")]
        ),
        1.0
    );
}
