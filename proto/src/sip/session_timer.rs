//! Session timers (RFC 4028) on the UAS side: accept the UAC's refresh
//! interval when it is not below ours, prefer the UAC as refresher, and tell
//! the bridge when a silent session should be torn down.

use std::time::Duration;

use super::message::{Request, Response};

/// RFC 4028 §4: no Session-Expires or Min-SE may be below 90 s.
pub const MIN_SE_FLOOR: u32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// The negotiated session timer of one dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// Session interval in seconds.
    pub interval: u32,
    /// Who sends the refreshing re-INVITE/UPDATE. With `Uas` the bridge must
    /// refresh (after [`SessionTimer::refresh_after`]).
    pub refresher: Refresher,
    /// The UAC listed `timer` in Supported/Require.
    pub uac_supports_timer: bool,
}

/// Reads Session-Expires and Min-SE of an INVITE/UPDATE (RFC 4028 §9).
/// `Ok(None)`: no (usable) Session-Expires, no session timer.
/// `Err(min)`: the interval is too small; answer
/// [`reject_too_small`] (422 with `Min-SE: min`).
pub fn negotiate(req: &Request, min_se: u32) -> Result<Option<SessionTimer>, u32> {
    let min_se = min_se.max(MIN_SE_FLOOR);
    let uac_supports_timer =
        req.headers.has_option("Supported", "timer") || req.headers.has_option("Require", "timer");
    let Some(value) = req.headers.get("Session-Expires") else {
        return Ok(None);
    };
    let mut parts = value.split(';');
    let Some(interval) = parts
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return Ok(None);
    };
    if interval < min_se {
        return Err(min_se);
    }
    let requested = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match value.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        }
    });
    // §9: a refresher the UAC chose is kept; otherwise the UAC refreshes if
    // it can, since that spares the bridge thousands of re-INVITEs.
    let refresher = requested.unwrap_or(if uac_supports_timer {
        Refresher::Uac
    } else {
        Refresher::Uas
    });
    Ok(Some(SessionTimer {
        interval,
        refresher,
        uac_supports_timer,
    }))
}

/// `422 Session Interval Too Small` with our Min-SE (RFC 4028 §6).
pub fn reject_too_small(req: &Request, min_se: u32) -> Response {
    let mut resp = Response::for_request(req, 422, "Session Interval Too Small");
    resp.headers
        .push("Min-SE", min_se.max(MIN_SE_FLOOR).to_string());
    resp
}

impl SessionTimer {
    /// Adds `Session-Expires: N;refresher=...` to the 2xx, and `Require:
    /// timer` when the UAC supports it (RFC 4028 §9).
    pub fn apply(&self, resp: &mut Response) {
        resp.headers.set(
            "Session-Expires",
            format!("{};refresher={}", self.interval, self.refresher.as_str()),
        );
        if self.uac_supports_timer && !resp.headers.has_option("Require", "timer") {
            resp.headers.push("Require", "timer");
        }
    }

    /// When the refresher should refresh: half the interval (§7.4).
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval / 2))
    }

    /// How long without a refresh before the session is considered dead and
    /// should be ended with BYE: interval - min(32, interval/3) (§10).
    pub fn expiry(&self) -> Duration {
        let i = u64::from(self.interval);
        Duration::from_secs(i - (i / 3).min(32))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sip::message::Method;

    fn invite(extra: &[(&str, &str)]) -> Request {
        let mut r = Request::new(Method::Invite, "sip:4711@bridge");
        r.headers.push("Via", "SIP/2.0/UDP h;branch=z9hG4bK1");
        r.headers.push("From", "<sip:a@b>;tag=1");
        r.headers.push("To", "<sip:4711@bridge>");
        r.headers.push("Call-ID", "c");
        r.headers.push("CSeq", "1 INVITE");
        for (n, v) in extra {
            r.headers.push(*n, *v);
        }
        r
    }

    #[test]
    fn accepts_and_prefers_uac() {
        let req = invite(&[("Supported", "timer, 100rel"), ("x", "1800")]);
        let st = negotiate(&req, 90).unwrap().unwrap();
        assert_eq!(st.interval, 1800);
        assert_eq!(st.refresher, Refresher::Uac);
        let mut resp = Response::for_request(&req, 200, "OK");
        st.apply(&mut resp);
        assert_eq!(
            resp.headers.get("Session-Expires"),
            Some("1800;refresher=uac")
        );
        assert!(resp.headers.has_option("Require", "timer"));
        assert_eq!(st.refresh_after(), Duration::from_secs(900));
        assert_eq!(st.expiry(), Duration::from_secs(1768));
    }

    #[test]
    fn keeps_requested_refresher_and_handles_no_support() {
        let req = invite(&[
            ("Supported", "timer"),
            ("Session-Expires", "600;refresher=uas"),
        ]);
        assert_eq!(
            negotiate(&req, 90).unwrap().unwrap().refresher,
            Refresher::Uas
        );

        let req = invite(&[("Session-Expires", "600")]);
        let st = negotiate(&req, 90).unwrap().unwrap();
        assert_eq!(
            st.refresher,
            Refresher::Uas,
            "a UAC without timer support cannot refresh"
        );
        let mut resp = Response::for_request(&req, 200, "OK");
        st.apply(&mut resp);
        assert!(!resp.headers.contains("Require"));
        assert_eq!(resp.headers.get("x"), Some("600;refresher=uas"));
    }

    #[test]
    fn too_small_and_absent() {
        let req = invite(&[
            ("Supported", "timer"),
            ("Session-Expires", "120"),
            ("Min-SE", "90"),
        ]);
        assert_eq!(negotiate(&req, 1800), Err(1800));
        let resp = reject_too_small(&req, 1800);
        assert_eq!(resp.status, 422);
        assert_eq!(resp.headers.get("Min-SE"), Some("1800"));
        assert_eq!(negotiate(&invite(&[("Supported", "timer")]), 90), Ok(None));
        assert_eq!(
            negotiate(&invite(&[("Session-Expires", "soon")]), 90),
            Ok(None)
        );
        assert_eq!(
            negotiate(&invite(&[("Session-Expires", "60")]), 30),
            Err(90)
        );
    }
}
