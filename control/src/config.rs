//! The control plane's sections of the Tandem configuration (`[control]`,
//! `[front_door]`, `[node]`); the `tandem` binary reads them with the rest
//! (defaults, TOML file, `TANDEM_<SECTION>_<KEY>`).

use std::net::IpAddr;

use serde::Deserialize;

/// `[control]`: where cluster state lives and how the control plane decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// etcd endpoints (`http://127.0.0.1:2379`); empty: state in memory,
    /// one process only (`tandem up`).
    pub etcd: Vec<String>,
    /// Seconds a node's lease lives without renewal: a crashed node's
    /// conferences move after this long.
    pub lease_ttl: u64,
    /// Timeout of one store request, milliseconds.
    pub request_timeout_ms: u64,
    /// A caller from a site the conference is not in gets a node of its own
    /// site, linked to the conference's home (when false: the home takes it).
    pub span_sites: bool,
    /// Which callers belong to which site, by source address.
    pub site: Vec<SiteConfig>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            etcd: Vec::new(),
            lease_ttl: 5,
            request_timeout_ms: 2000,
            span_sites: true,
            site: Vec::new(),
        }
    }
}

/// `[[control.site]]`: a site and the networks its callers come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    /// CIDR blocks, e.g. `10.1.0.0/16`, `127.0.1.0/24`.
    pub networks: Vec<String>,
}

impl ControlConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (i, s) in self.site.iter().enumerate() {
            if !crate::vmr::valid_conference_id(&s.name) {
                return Err(format!(
                    "control.site[{i}].name: {:?} is not a site name",
                    s.name
                ));
            }
            for n in &s.networks {
                Cidr::parse(n).ok_or_else(|| {
                    format!("control.site[{i}].networks: {n:?} is not a CIDR block")
                })?;
            }
        }
        if self.lease_ttl == 0 {
            return Err("control.lease_ttl: at least 1 second".into());
        }
        Ok(())
    }

    /// The site of a caller at `ip` (the most specific block wins).
    pub fn site_of(&self, ip: IpAddr) -> Option<&str> {
        self.site
            .iter()
            .flat_map(|s| {
                s.networks
                    .iter()
                    .filter_map(|n| Cidr::parse(n))
                    .filter(move |c| c.contains(ip))
                    .map(move |c| (c.prefix, s.name.as_str()))
            })
            .max_by_key(|(p, _)| *p)
            .map(|(_, name)| name)
    }
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (
                u128::from(u32::from(a)) << 96,
                u128::from(u32::from(b)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), self.prefix),
            _ => return false,
        };
        if bits == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - u32::from(bits));
        a & mask == b & mask
    }
}

/// `[front_door]`: how calls are routed to nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontDoorConfig {
    /// `proxy`: forward the INVITE (stateless proxy, RFC 3261 §16.11);
    /// `redirect`: answer 302 with the node's address.
    pub mode: FrontDoorMode,
    /// Dial plan: the first rule whose pattern matches `user@host` of the
    /// Request-URI names the conference (`$1`, `${name}`); no match: the
    /// user part is the conference ID.
    pub rule: Vec<DialRule>,
    /// The lobby's number: calls to it go to a node's lobby (prompts for the
    /// conference ID and PIN). Empty: no lobby.
    pub lobby: String,
}

impl Default for FrontDoorConfig {
    fn default() -> Self {
        FrontDoorConfig {
            mode: FrontDoorMode::Proxy,
            rule: Vec::new(),
            lobby: "lobby".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontDoorMode {
    Proxy,
    Redirect,
}

/// `[[front_door.rule]]`: a pattern (a regular expression over
/// `user@host`) and the conference it means.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialRule {
    pub pattern: String,
    pub conference: String,
}

impl FrontDoorConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (i, r) in self.rule.iter().enumerate() {
            regex::Regex::new(&r.pattern)
                .map_err(|e| format!("front_door.rule[{i}].pattern: {e}"))?;
        }
        Ok(())
    }
}

/// `[node]`: a node's place in a fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Unique in the cluster.
    pub name: String,
    pub site: String,
    /// Participants this node takes (all conferences) before it is full:
    /// the control plane places nothing more on it, and calls get 503.
    pub max_participants: usize,
    /// Of those, the HD ports: participants with video (decoded, composed
    /// and encoded for). Callers beyond it join audio-only. Unset: as
    /// many as `max_participants`.
    pub max_hd_participants: Option<usize>,
    /// etcd endpoints of the control plane; empty: standalone.
    pub control: Vec<String>,
}

impl NodeConfig {
    /// The HD ports this node has.
    pub fn hd_ports(&self) -> usize {
        self.max_hd_participants
            .unwrap_or(self.max_participants)
            .min(self.max_participants)
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node-1".into(),
            site: "default".into(),
            max_participants: 1000,
            max_hd_participants: None,
            control: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_put_in_sites_by_the_most_specific_block() {
        let c = ControlConfig {
            site: vec![
                SiteConfig {
                    name: "east".into(),
                    networks: vec!["127.0.0.0/8".into()],
                },
                SiteConfig {
                    name: "west".into(),
                    networks: vec!["127.0.2.0/24".into(), "fd00::/8".into()],
                },
            ],
            ..ControlConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(c.site_of(ip("127.0.1.9")), Some("east"));
        assert_eq!(c.site_of(ip("127.0.2.9")), Some("west"));
        assert_eq!(c.site_of(ip("fd00::1")), Some("west"));
        assert_eq!(c.site_of(ip("10.0.0.1")), None);
        let bad = ControlConfig {
            site: vec![SiteConfig {
                name: "x".into(),
                networks: vec!["127.0.0.0/33".into()],
            }],
            ..ControlConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
