//! Meeting rooms (VMRs): the records an operator keeps for each conference ID.
//! Stored under `/tandem/vmrs/<id>`; CRUD over the REST API (`api.rs`); read
//! by the nodes through a [`RoomDirectory`] (PIN, layout, size, binding).

use serde::{Deserialize, Serialize};

/// One meeting room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Vmr {
    /// The conference ID callers dial (`sip:<id>@front-door`): digits,
    /// letters, `-`, `_` and `.`, 1 to 64 characters.
    pub id: String,
    /// Shown in the API and the dashboard.
    #[serde(default)]
    pub name: String,
    /// Digits a caller must enter before joining (`None`: no PIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// Default layout (`auto`, `1x1`, `2x2`, ... as `[video] layout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Participants the conference accepts in all (every node together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<usize>,
    /// The native meeting it cascades into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeBinding>,
    /// Sites to place it in, in order (empty: the caller's site, then any).
    #[serde(default)]
    pub pool: Vec<String>,
}

/// A VMR's native meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeBinding {
    /// The meeting server's room number.
    pub room: u64,
    /// Another meeting server than the node's `[cascade] janus_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub janus_url: Option<String>,
}

/// The layouts a VMR may name (the mixer's names).
pub const LAYOUTS: &[&str] = &[
    "auto", "1x1", "2x2", "3x3", "4x4", "5x5", "1+5", "1+7", "2+8", "1+21",
];

/// Why a record was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// Whether `id` can be a conference ID (and a SIP user part and an etcd key
/// segment): 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_conference_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Vmr {
    /// A room with just an ID.
    pub fn new(id: impl Into<String>) -> Self {
        Vmr {
            id: id.into(),
            ..Vmr::default()
        }
    }

    /// Checks every field; the first problem found is the error.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !valid_conference_id(&self.id) {
            return Err(invalid(
                "id",
                "1 to 64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        if self.name.len() > 128 {
            return Err(invalid("name", "at most 128 characters"));
        }
        if let Some(pin) = &self.pin
            && (pin.is_empty() || pin.len() > 12 || !pin.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("pin", "1 to 12 digits"));
        }
        if let Some(layout) = &self.layout
            && !LAYOUTS.contains(&layout.as_str())
        {
            return Err(invalid("layout", format!("one of {}", LAYOUTS.join(", "))));
        }
        if self.max_participants == Some(0) {
            return Err(invalid("max_participants", "at least 1"));
        }
        if let Some(c) = &self.cascade {
            if c.room == 0 {
                return Err(invalid("cascade.room", "a room number above 0"));
            }
            if let Some(url) = &c.janus_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(invalid("cascade.janus_url", "an http:// or https:// URL"));
            }
        }
        for site in &self.pool {
            if !valid_conference_id(site) {
                return Err(invalid("pool", format!("{site:?} is not a site name")));
            }
        }
        Ok(())
    }
}

/// Where a node looks up a conference's room: without blocking (the node's
/// signalling asks for every INVITE), so implementations keep a copy that a
/// watch keeps current.
pub trait RoomDirectory: Send + Sync {
    /// The room with this conference ID, if one is configured.
    fn room(&self, id: &str) -> Option<Vmr>;
}

/// A fixed set of rooms (tests, and a node without a control plane).
#[derive(Debug, Default, Clone)]
pub struct StaticRooms(pub std::collections::HashMap<String, Vmr>);

impl StaticRooms {
    pub fn with(rooms: impl IntoIterator<Item = Vmr>) -> Self {
        StaticRooms(rooms.into_iter().map(|r| (r.id.clone(), r)).collect())
    }
}

impl RoomDirectory for StaticRooms {
    fn room(&self, id: &str) -> Option<Vmr> {
        self.0.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_round_trips_through_json_and_validates() {
        let json = r#"{"id":"4711","name":"Board","pin":"1234","layout":"2x2",
            "max_participants":40,"cascade":{"room":4711},"pool":["east","west"]}"#;
        let vmr: Vmr = serde_json::from_str(json).expect("parses");
        assert_eq!(vmr.validate(), Ok(()));
        let back: Vmr = serde_json::from_str(&serde_json::to_string(&vmr).expect("json"))
            .expect("parses again");
        assert_eq!(back, vmr);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut vmr = Vmr::new("4711");
        vmr.pin = Some("12a4".into());
        assert_eq!(vmr.validate().map_err(|e| e.field), Err("pin"));
        vmr.pin = None;
        vmr.layout = Some("9x9".into());
        assert_eq!(vmr.validate().map_err(|e| e.field), Err("layout"));
        assert_eq!(Vmr::new("a/b").validate().map_err(|e| e.field), Err("id"));
        assert_eq!(Vmr::new("").validate().map_err(|e| e.field), Err("id"));
        let unknown = serde_json::from_str::<Vmr>(r#"{"id":"1","colour":"red"}"#);
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
