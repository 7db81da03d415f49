//! Which native meeting each conference joins (the cascade binding), and
//! the agents running for them.
//!
//! A conference is bound by, in order: the API (`PUT` / `DELETE
//! /api/conferences/{id}/cascade`), `[[cascade.binding]]` in the config, and
//! by default (`bind_numeric`) a numeric conference ID to the room with the
//! same number on the `[cascade] janus_url` server. A bound conference gets
//! an agent while it has participants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::info;

use crate::cascade::{Agent, AgentContext, CascadeSettings};
use crate::config::Config;
use crate::driver::net::PortAllocator;
use crate::metrics::Metrics;
use crate::registry::{ConferenceHandle, Registry};

/// A conference's native meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub conference: String,
    pub room: u64,
    /// The meeting server (Janus HTTP API).
    pub janus_url: String,
    /// Where it comes from: api, config or numeric.
    pub source: &'static str,
}

/// Why a binding was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    /// No meeting server given and none configured.
    NoServer,
    BadUrl,
}

pub struct Cascades {
    settings: CascadeSettings,
    default_url: Option<String>,
    bind_numeric: bool,
    config_bindings: HashMap<String, Binding>,
    /// From the API: `None` unbinds (even a numeric conference).
    api_bindings: Mutex<HashMap<String, Option<Binding>>>,
    agents: Mutex<HashMap<String, Agent>>,
    ports: Arc<PortAllocator>,
    video_ports: Arc<PortAllocator>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    /// The node's floor control server (content on), for native screen
    /// shares; set once the server runs.
    bfcp: std::sync::OnceLock<Arc<crate::bfcp::Bfcp>>,
}

impl Cascades {
    pub fn new(
        config: &Config,
        ports: Arc<PortAllocator>,
        video_ports: Arc<PortAllocator>,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
    ) -> Self {
        let c = &config.cascade;
        let default_url = c.janus_url.clone();
        let config_bindings = c
            .binding
            .iter()
            .filter_map(|b| {
                let url = b.janus_url.clone().or_else(|| default_url.clone())?;
                Some((
                    b.conference.clone(),
                    Binding {
                        conference: b.conference.clone(),
                        room: b.room,
                        janus_url: url,
                        source: "config",
                    },
                ))
            })
            .collect();
        Cascades {
            settings: CascadeSettings::from_config(c, config.qos.audio, config.qos.video),
            default_url,
            bind_numeric: c.bind_numeric,
            config_bindings,
            api_bindings: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
            ports,
            video_ports,
            metrics,
            registry,
            bfcp: std::sync::OnceLock::new(),
        }
    }

    /// The native meeting `conference` joins, if any.
    pub fn binding(&self, conference: &str) -> Option<Binding> {
        if let Some(b) = self
            .api_bindings
            .lock()
            .ok()
            .and_then(|m| m.get(conference).cloned())
        {
            return b;
        }
        if let Some(b) = self.config_bindings.get(conference) {
            return Some(b.clone());
        }
        let room = conference
            .parse::<u64>()
            .ok()
            .filter(|_| self.bind_numeric)?;
        Some(Binding {
            conference: conference.to_owned(),
            room,
            janus_url: self.default_url.clone()?,
            source: "numeric",
        })
    }

    /// Every binding set by the API or the config.
    pub fn bindings(&self) -> Vec<Binding> {
        let api = self
            .api_bindings
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut out: Vec<Binding> = api.values().flatten().cloned().collect();
        out.extend(
            self.config_bindings
                .values()
                .filter(|b| !api.contains_key(&b.conference))
                .cloned(),
        );
        out.sort_by(|a, b| a.conference.cmp(&b.conference));
        out
    }

    /// Binds `conference` to `room` (on `janus_url`, or the configured
    /// server), or unbinds it (`room: None`). A running conference's agent
    /// follows at once.
    pub fn bind(
        &self,
        conference: &str,
        room: Option<u64>,
        janus_url: Option<String>,
    ) -> Result<Option<Binding>, BindError> {
        let binding = match room {
            Some(room) => {
                let url = janus_url
                    .or_else(|| self.default_url.clone())
                    .ok_or(BindError::NoServer)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(BindError::BadUrl);
                }
                Some(Binding {
                    conference: conference.to_owned(),
                    room,
                    janus_url: url,
                    source: "api",
                })
            }
            None => None,
        };
        if let Ok(mut m) = self.api_bindings.lock() {
            m.insert(conference.to_owned(), binding.clone());
        }
        info!(conference, ?binding, "cascade binding");
        // A running conference: leave the old meeting, join the new one.
        if let Some(handle) = self.registry.handle(conference) {
            self.conference_ended(conference);
            self.conference_started(&handle);
        }
        Ok(binding)
    }

    /// The node's floor control server: native screen shares take the
    /// floor through it.
    pub fn set_bfcp(&self, bfcp: Arc<crate::bfcp::Bfcp>) {
        let _ = self.bfcp.set(bfcp);
    }

    /// A conference got its first participant: its agent starts.
    pub fn conference_started(&self, handle: &ConferenceHandle) {
        let Some(b) = self.binding(&handle.id) else {
            return;
        };
        let mut settings = self.settings.clone();
        settings.janus.server_url = b.janus_url.trim_end_matches('/').to_owned();
        let agent = Agent::start(AgentContext {
            conference: handle.id.clone(),
            room: b.room,
            commands: handle.commands.clone(),
            ports: self.ports.clone(),
            video_ports: self.video_ports.clone(),
            metrics: self.metrics.clone(),
            settings: Arc::new(settings),
            snapshot: handle.snapshot.clone(),
            bfcp: self.bfcp.get().cloned(),
        });
        if let Ok(mut agents) = self.agents.lock()
            && let Some(old) = agents.insert(handle.id.clone(), agent)
        {
            old.stop();
        }
    }

    /// A conference's last participant left: its agent leaves the meeting.
    pub fn conference_ended(&self, conference: &str) {
        let agent = self
            .agents
            .lock()
            .ok()
            .and_then(|mut a| a.remove(conference));
        if let Some(agent) = agent {
            agent.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cascades(toml: &str) -> Cascades {
        let path = std::env::temp_dir().join(format!(
            "tandem-bindings-{}-{}.toml",
            std::process::id(),
            toml.len()
        ));
        std::fs::write(&path, toml).expect("config written");
        let config = Config::load(Some(&path), []).expect("config");
        let _ = std::fs::remove_file(&path);
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let range = crate::config::PortRange::parse("30000-30010").expect("range");
        let ports = Arc::new(PortAllocator::new(ip, range));
        Cascades::new(
            &config,
            ports.clone(),
            ports,
            Arc::new(Metrics::new()),
            Arc::new(Registry::default()),
        )
    }

    #[test]
    fn numeric_conferences_config_bindings_and_the_api_in_that_order() {
        let c = cascades(
            "[cascade]\njanus_url = \"http://janus:8088/janus\"\n\
             [[cascade.binding]]\nconference = \"sales\"\nroom = 77\n\
             [[cascade.binding]]\nconference = \"board\"\nroom = 5\njanus_url = \"http://other/janus\"\n",
        );
        let b = c.binding("4711").expect("numeric");
        assert_eq!(
            (b.room, b.janus_url.as_str(), b.source),
            (4711, "http://janus:8088/janus", "numeric")
        );
        let b = c.binding("sales").expect("config");
        assert_eq!((b.room, b.source), (77, "config"));
        assert_eq!(
            c.binding("board").expect("config").janus_url,
            "http://other/janus"
        );
        assert!(c.binding("lobby").is_none());
        // The API overrides, unbinds, and validates.
        let b = c
            .bind("lobby", Some(9), None)
            .expect("bind")
            .expect("bound");
        assert_eq!((b.room, b.source), (9, "api"));
        assert_eq!(c.binding("lobby"), Some(b));
        c.bind("4711", None, None).expect("unbind");
        assert!(c.binding("4711").is_none());
        assert_eq!(
            c.bind("x", Some(1), Some("ftp://x".into())),
            Err(BindError::BadUrl)
        );
        let names: Vec<String> = c.bindings().into_iter().map(|b| b.conference).collect();
        assert_eq!(names, ["board", "lobby", "sales"]);
    }

    #[test]
    fn without_a_meeting_server_nothing_is_bound_unless_the_binding_names_one() {
        let c = cascades("[cascade]\n[[cascade.binding]]\nconference = \"sales\"\nroom = 77\n");
        assert!(c.binding("4711").is_none());
        assert!(c.binding("sales").is_none());
        assert_eq!(c.bind("lobby", Some(1), None), Err(BindError::NoServer));
        assert!(
            c.bind("lobby", Some(1), Some("http://j/janus".into()))
                .is_ok()
        );
    }
}
