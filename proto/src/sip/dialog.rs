//! Dialog state (RFC 3261 §12) for the UAS side of a conference leg.
//!
//! A [`Dialog`] is created from the INVITE the bridge accepts; it then builds
//! the in-dialog requests the bridge sends (BYE, re-INVITE, INFO, UPDATE) and
//! checks the order of the ones it receives. No randomness lives here: tags
//! and branches come from the caller, or from [`new_tag`]/[`new_branch`]
//! with a caller-provided seed.

use super::message::{MAGIC_COOKIE, Method, Request, parse_name_addr};

/// Why an INVITE cannot create a dialog, or an in-dialog request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    #[error("request has no usable {0} header")]
    MissingHeader(&'static str),
    /// CSeq not above the last one seen (§12.2.2): answer 500.
    #[error("CSeq {got} is not above the last remote CSeq {last}")]
    CSeqOutOfOrder { got: u32, last: u32 },
    /// Call-ID or tags do not belong to this dialog: answer 481.
    #[error("request does not belong to this dialog")]
    Mismatch,
}

/// Looks a dialog up from an incoming request (§12.2.2): our tag is the To
/// tag, the peer's is the From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    /// Absent for RFC 2543 peers that send no From tag.
    pub remote_tag: Option<String>,
}

/// The dialog id of an incoming in-dialog request; `None` when it has no To
/// tag (then it is not in a dialog) or no Call-ID.
pub fn dialog_id(req: &Request) -> Option<DialogId> {
    Some(DialogId {
        call_id: req.call_id()?.to_owned(),
        local_tag: req.to_tag()?.to_owned(),
        remote_tag: req.from_tag().map(str::to_owned),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our URI (the To URI of the INVITE).
    pub local_uri: String,
    /// The peer's URI (the From URI of the INVITE).
    pub remote_uri: String,
    /// Where in-dialog requests go (the peer's Contact URI).
    pub remote_target: String,
    /// Record-Route values, in the order received (§12.1.1), e.g. `<sip:p1;lr>`.
    pub route_set: Vec<String>,
    /// The last CSeq we used; 0 before our first request.
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    pub secure: bool,
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` with a 2xx (or a
    /// 1xx with a To tag) carrying `local_tag` (§12.1.1).
    pub fn new_uas(invite: &Request, local_tag: String) -> Result<Dialog, DialogError> {
        let call_id = invite
            .call_id()
            .ok_or(DialogError::MissingHeader("Call-ID"))?;
        let from = invite
            .headers
            .get("From")
            .and_then(parse_name_addr)
            .ok_or(DialogError::MissingHeader("From"))?;
        let to = invite
            .headers
            .get("To")
            .and_then(parse_name_addr)
            .ok_or(DialogError::MissingHeader("To"))?;
        let contact = invite
            .contact()
            .ok_or(DialogError::MissingHeader("Contact"))?;
        let (remote_seq, _) = invite.cseq().ok_or(DialogError::MissingHeader("CSeq"))?;
        Ok(Dialog {
            call_id: call_id.to_owned(),
            local_tag,
            remote_tag: invite.from_tag().map(str::to_owned),
            local_uri: to.uri,
            remote_uri: from.uri,
            remote_target: contact.uri,
            route_set: invite
                .headers
                .get_all("Record-Route")
                .map(str::to_owned)
                .collect(),
            local_seq: 0,
            remote_seq: Some(remote_seq),
            secure: invite
                .uri
                .get(..5)
                .is_some_and(|s| s.eq_ignore_ascii_case("sips:")),
        })
    }

    pub fn id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.remote_tag.clone(),
        }
    }

    /// Builds an in-dialog request (§12.2.1.1). `via_sent_by` is `host:port`
    /// (sent as `SIP/2.0/UDP host:port;rport`) or a whole Via value without
    /// branch such as `SIP/2.0/TCP host:port`. ACK and CANCEL reuse the
    /// current CSeq (the INVITE's); everything else takes the next one. The
    /// body is empty; set it and Content-Type on the result.
    pub fn create_request(
        &mut self,
        method: Method,
        local_contact: &str,
        via_sent_by: &str,
        branch: &str,
    ) -> Request {
        let cseq = match method {
            Method::Ack | Method::Cancel => self.local_seq,
            _ => {
                self.local_seq = self.local_seq.wrapping_add(1) & 0x7fff_ffff;
                self.local_seq
            }
        };
        let (uri, routes) = match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if is_loose_route(first) => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some(first) => {
                // Strict routing (RFC 2543 proxies, §12.2.1.1): the first
                // route becomes the Request-URI, the target goes last.
                let first_uri = parse_name_addr(first).map_or_else(|| first.clone(), |na| na.uri);
                let mut routes: Vec<String> = self.route_set[1..].to_vec();
                routes.push(format!("<{}>", self.remote_target));
                (first_uri, routes)
            }
        };
        let mut req = Request::new(method.clone(), uri);
        let via = if via_sent_by.starts_with("SIP/2.0/") {
            format!("{via_sent_by};branch={branch}")
        } else {
            format!("SIP/2.0/UDP {via_sent_by};branch={branch};rport")
        };
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        for route in routes {
            req.headers.push("Route", route);
        }
        req.headers.push(
            "From",
            format!("<{}>;tag={}", self.local_uri, self.local_tag),
        );
        match &self.remote_tag {
            Some(tag) => req
                .headers
                .push("To", format!("<{}>;tag={tag}", self.remote_uri)),
            None => req.headers.push("To", format!("<{}>", self.remote_uri)),
        }
        req.headers.push("Call-ID", self.call_id.clone());
        req.headers.push("CSeq", format!("{cseq} {method}"));
        if is_target_refresh(&method) {
            let contact = if local_contact.starts_with('<') {
                local_contact.to_owned()
            } else {
                format!("<{local_contact}>")
            };
            req.headers.push("Contact", contact);
        }
        req
    }

    /// Checks and records an incoming in-dialog request (§12.2.2): CSeq must
    /// grow (except ACK and CANCEL, which reuse the INVITE's), and a target
    /// refresh with a Contact moves the remote target.
    pub fn handle_in_dialog_request(&mut self, req: &Request) -> Result<(), DialogError> {
        let tags_match = req.call_id() == Some(self.call_id.as_str())
            && req.to_tag() == Some(self.local_tag.as_str())
            && match (&self.remote_tag, req.from_tag()) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            };
        if !tags_match {
            return Err(DialogError::Mismatch);
        }
        let (cseq, _) = req.cseq().ok_or(DialogError::MissingHeader("CSeq"))?;
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq
            && cseq <= last
        {
            return Err(DialogError::CSeqOutOfOrder { got: cseq, last });
        }
        self.remote_seq = Some(cseq);
        if is_target_refresh(&req.method)
            && let Some(contact) = req.contact()
        {
            self.remote_target = contact.uri;
        }
        Ok(())
    }
}

fn is_target_refresh(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

fn is_loose_route(route: &str) -> bool {
    let Some(na) = parse_name_addr(route) else {
        return false;
    };
    let uri = na.uri.split('?').next().unwrap_or(&na.uri);
    uri.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("lr"))
    })
}

/// splitmix64: spreads a seed (a counter, or entropy the driver drew) so
/// consecutive seeds give unrelated-looking tags.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A To/From tag from a seed. Uniqueness is the seed's job: the driver should
/// seed from a random source once and count up.
pub fn new_tag(seed: u64) -> String {
    format!("{:016x}", mix(seed))
}

/// A magic-cookie Via branch from a seed (see [`new_tag`]).
pub fn new_branch(seed: u64) -> String {
    format!("{MAGIC_COOKIE}{:016x}", mix(seed ^ 0x5bd1_e995))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sip::message::{Message, Response, parse_datagram};

    fn invite(record_route: &str) -> Request {
        let raw = format!(
            "INVITE sips:4711@bridge.example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.20:5061;branch=z9hG4bK1\r\n\
{record_route}\
From: \"Alice\" <sip:alice@example.com>;tag=alice1\r\n\
To: <sip:4711@bridge.example.com>\r\n\
Call-ID: dlg-1\r\n\
CSeq: 10 INVITE\r\n\
Contact: <sip:alice@192.0.2.20:5061;transport=tls>\r\n\
Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(raw.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!(),
        }
    }

    fn in_dialog(method: &str, cseq: u32, contact: Option<&str>) -> Request {
        let mut r = Request::new(method.parse().unwrap(), "sip:4711@bridge");
        r.headers
            .push("Via", "SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK9");
        r.headers.push("From", "<sip:alice@example.com>;tag=alice1");
        r.headers
            .push("To", "<sip:4711@bridge.example.com>;tag=br1");
        r.headers.push("Call-ID", "dlg-1");
        r.headers.push("CSeq", format!("{cseq} {method}"));
        if let Some(c) = contact {
            r.headers.push("Contact", c);
        }
        r
    }

    #[test]
    fn uas_dialog_from_invite() {
        let d = Dialog::new_uas(
            &invite("Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"),
            "br1".into(),
        )
        .unwrap();
        assert_eq!(d.call_id, "dlg-1");
        assert_eq!(d.remote_tag.as_deref(), Some("alice1"));
        assert_eq!(d.local_uri, "sip:4711@bridge.example.com");
        assert_eq!(d.remote_uri, "sip:alice@example.com");
        assert_eq!(d.remote_target, "sip:alice@192.0.2.20:5061;transport=tls");
        assert_eq!(
            d.route_set,
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        assert_eq!(d.remote_seq, Some(10));
        assert!(d.secure);
        let resp = Response::for_request(&invite(""), 200, "OK").with_to_tag("br1");
        assert_eq!(resp.to_tag(), Some(d.local_tag.as_str()));

        let mut no_contact = invite("");
        no_contact.headers.remove("Contact");
        assert_eq!(
            Dialog::new_uas(&no_contact, "x".into()),
            Err(DialogError::MissingHeader("Contact"))
        );
    }

    #[test]
    fn bye_with_loose_route_set() {
        let mut d = Dialog::new_uas(
            &invite("Record-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr>\r\n"),
            "br1".into(),
        )
        .unwrap();
        let bye = d.create_request(
            Method::Bye,
            "sip:4711@192.0.2.10:5060",
            "192.0.2.10:5060",
            "z9hG4bKbye",
        );
        assert_eq!(bye.uri, "sip:alice@192.0.2.20:5061;transport=tls");
        assert_eq!(
            bye.headers.get_all("Route").collect::<Vec<_>>(),
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        assert_eq!(bye.from_tag(), Some("br1"));
        assert_eq!(bye.to_tag(), Some("alice1"));
        assert_eq!(bye.cseq(), Some((1, Method::Bye)));
        assert_eq!(bye.max_forwards(), Some(70));
        assert_eq!(bye.top_via().unwrap().branch.as_deref(), Some("z9hG4bKbye"));
        assert!(!bye.headers.contains("Contact"));
        // It is a valid message on the wire.
        assert!(parse_datagram(&bye.to_bytes()).is_ok());

        let reinvite = d.create_request(
            Method::Invite,
            "sip:4711@192.0.2.10",
            "SIP/2.0/TCP 192.0.2.10:5060",
            "z9hG4bKre",
        );
        assert_eq!(reinvite.cseq(), Some((2, Method::Invite)));
        assert_eq!(
            reinvite.headers.get("Contact"),
            Some("<sip:4711@192.0.2.10>")
        );
        assert_eq!(reinvite.top_via().unwrap().transport, "TCP");
        let ack = d.create_request(
            Method::Ack,
            "sip:4711@192.0.2.10",
            "192.0.2.10",
            "z9hG4bKack",
        );
        assert_eq!(ack.cseq(), Some((2, Method::Ack)));
    }

    #[test]
    fn strict_route_puts_target_last() {
        let mut d = Dialog::new_uas(
            &invite("Record-Route: <sip:strict.example.com>, <sip:p1.example.com;lr>\r\n"),
            "br1".into(),
        )
        .unwrap();
        let bye = d.create_request(Method::Bye, "sip:b@h", "h", "z9hG4bKx");
        assert_eq!(bye.uri, "sip:strict.example.com");
        assert_eq!(
            bye.headers.get_all("Route").collect::<Vec<_>>(),
            [
                "<sip:p1.example.com;lr>",
                "<sip:alice@192.0.2.20:5061;transport=tls>"
            ]
        );
    }

    #[test]
    fn in_dialog_cseq_and_target_refresh() {
        let mut d = Dialog::new_uas(&invite(""), "br1".into()).unwrap();
        let ack = in_dialog("ACK", 10, None);
        assert_eq!(dialog_id(&ack), Some(d.id()));
        assert_eq!(d.handle_in_dialog_request(&ack), Ok(()));
        assert_eq!(
            d.handle_in_dialog_request(&in_dialog("INFO", 10, None)),
            Err(DialogError::CSeqOutOfOrder { got: 10, last: 10 })
        );
        assert_eq!(
            d.handle_in_dialog_request(&in_dialog("INFO", 11, None)),
            Ok(())
        );
        assert_eq!(
            d.handle_in_dialog_request(&in_dialog(
                "INVITE",
                12,
                Some("<sip:alice@198.51.100.1:5061>")
            )),
            Ok(())
        );
        assert_eq!(d.remote_target, "sip:alice@198.51.100.1:5061");
        assert_eq!(d.remote_seq, Some(12));
        // INFO is not a target refresh.
        d.handle_in_dialog_request(&in_dialog("INFO", 13, Some("<sip:elsewhere>")))
            .unwrap();
        assert_eq!(d.remote_target, "sip:alice@198.51.100.1:5061");
        let mut other = in_dialog("BYE", 20, None);
        other
            .headers
            .set("To", "<sip:4711@bridge>;tag=someone-else");
        assert_eq!(
            d.handle_in_dialog_request(&other),
            Err(DialogError::Mismatch)
        );
        assert_eq!(dialog_id(&invite("")), None, "no To tag: not in a dialog");
    }

    #[test]
    fn tags_are_deterministic_and_distinct() {
        assert_eq!(new_tag(1), new_tag(1));
        assert_ne!(new_tag(1), new_tag(2));
        assert!(new_branch(1).starts_with(MAGIC_COOKIE));
        assert_ne!(new_branch(7), new_branch(8));
    }
}
