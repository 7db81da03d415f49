//! The embedded TURN relay (`[turn]`): `tandem up` runs one for sites
//! without an Edge of their own, so that a cascade with `ice_policy =
//! "relay"` works out of the box. It is webrtc-rs' TURN server (UDP only;
//! the crate has no TCP listener) with TURN REST credentials, coturn's
//! `--use-auth-secret`: username `EXPIRY:name`, password
//! base64(HMAC-SHA1(secret, username)), refused once `EXPIRY` (Unix seconds)
//! has passed.
//!
//! ## How data moves
//! The server owns its tasks and its sockets (webrtc-rs spawns one read loop
//! per listener and one task per allocation); we give it the listening
//! socket wrapped in [`ObservedSocket`], which is where the metrics come
//! from: every request that carries credentials is checked on the way in
//! (the server's [`AuthHandler`] only supplies a key and never learns whether
//! the message integrity matched), every Allocate success response is
//! counted on the way out, and the server's close notifications take
//! allocations off the open gauge.
//!
//! When cascade is on and no `[[cascade.turn]]` is configured, the node's
//! agents use this relay ([`TurnRelay::offer_to_cascade`]) with credentials
//! they mint themselves from the same secret.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use prometheus::{IntCounter, IntGauge};
use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_REALM, ATTR_USERNAME};
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_REQUEST, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH,
    Message, is_message,
};
use stun::textattrs::TextAttribute;
use tandem_cascade::agent::mint_turn_credential;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::relay_range::RelayAddressGeneratorRanges;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::Conn;
use webrtc_util::vnet::net::Net;

use crate::config::{CascadeConfig, TurnConfig, TurnRelayConfig};
use crate::metrics::Metrics;

/// The name the node's own cascade agents put in their usernames.
const CASCADE_USER: &str = "tandem";
/// Random ports tried for one allocation before it is refused (the range
/// may be partly taken by other programs).
const RELAY_PORT_TRIES: u16 = 40;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnRelayError {
    #[error(
        "binding the TURN relay's UDP {addr} (turn.listen): {source}; \
         another TURN server there? set turn.listen, or turn.enabled = false"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the TURN relay: {0}")]
    Server(#[from] turn::Error),
}

/// How a request's credentials checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Ok,
    /// Wrong password, another realm, or a username not of the form
    /// `EXPIRY:name`.
    Bad,
    /// A TURN REST username whose time has passed.
    Expired,
}

impl AuthResult {
    fn label(self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Bad => "bad",
            AuthResult::Expired => "expired",
        }
    }
}

/// The relay's shared secret and realm, and the rules that check a
/// username against them. Plain functions of their inputs (the wall-clock
/// time included), so the rules are unit-tested without a server.
pub struct Credentials {
    secret: String,
    realm: String,
}

impl Credentials {
    pub fn new(secret: impl Into<String>, realm: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            realm: realm.into(),
        }
    }

    /// The long-term key (RFC 5389 §15.4: MD5 of `username:realm:password`)
    /// for `username`, or why it has none at `now_unix`.
    pub fn key(&self, username: &str, realm: &str, now_unix: u64) -> Result<Vec<u8>, AuthResult> {
        let (expiry, name) = username.split_once(':').ok_or(AuthResult::Bad)?;
        let expiry: u64 = expiry.parse().map_err(|_| AuthResult::Bad)?;
        if realm != self.realm {
            return Err(AuthResult::Bad);
        }
        let (minted, password) = mint_turn_credential(&self.secret, name, expiry);
        // `0017...:x` parses as the same expiry but is another username,
        // with another password: refuse it rather than guess.
        if minted != username {
            return Err(AuthResult::Bad);
        }
        if expiry < now_unix {
            return Err(AuthResult::Expired);
        }
        Ok(generate_auth_key(username, realm, &password))
    }

    /// Checks the credentials of one datagram received by the relay: `None`
    /// if it carries none (relayed media, a first unauthenticated
    /// Allocate, a Binding request), else how they checked out.
    pub fn check(&self, datagram: &[u8], now_unix: u64) -> Option<AuthResult> {
        // Requests only: the class bits of a STUN type are 0x0110 (RFC 5389
        // §6). ChannelData and Send indications are the relayed media.
        if !is_message(datagram) || u16::from_be_bytes([datagram[0], datagram[1]]) & 0x0110 != 0 {
            return None;
        }
        let mut m = Message {
            raw: datagram.to_vec(),
            ..Default::default()
        };
        m.decode().ok()?;
        let authenticated = [
            METHOD_ALLOCATE,
            METHOD_REFRESH,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ];
        if m.typ.class != CLASS_REQUEST
            || !authenticated.contains(&m.typ.method)
            || !m.contains(ATTR_MESSAGE_INTEGRITY)
        {
            return None;
        }
        let (Ok(username), Ok(realm)) = (
            TextAttribute::get_from_as(&m, ATTR_USERNAME),
            TextAttribute::get_from_as(&m, ATTR_REALM),
        ) else {
            return Some(AuthResult::Bad);
        };
        let key = match self.key(&username.text, &realm.text, now_unix) {
            Ok(key) => key,
            Err(result) => return Some(result),
        };
        Some(match MessageIntegrity(key).check(&mut m) {
            Ok(()) => AuthResult::Ok,
            Err(_) => AuthResult::Bad,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the server asks for every authenticated request: the key. The
/// server then checks the message integrity with it.
struct RestAuth(Arc<Credentials>);

impl AuthHandler for RestAuth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        self.0.key(username, realm, unix_now()).map_err(|result| {
            debug!(%src_addr, username, ?result, "TURN credentials refused");
            turn::Error::Other(format!("credentials refused: {}", result.label()))
        })
    }
}

/// Counters resolved once: the socket wrapper sees every relayed packet.
#[derive(Clone)]
struct Counters {
    ok: IntCounter,
    bad: IntCounter,
    expired: IntCounter,
    allocations: IntCounter,
    open: IntGauge,
}

impl Counters {
    fn new(m: &Metrics) -> Self {
        let auth = |r: AuthResult| m.turn.auth.with_label_values(&[r.label()]);
        Self {
            ok: auth(AuthResult::Ok),
            bad: auth(AuthResult::Bad),
            expired: auth(AuthResult::Expired),
            allocations: m.turn.allocations.clone(),
            open: m.turn.allocations_open.clone(),
        }
    }

    fn auth(&self, result: AuthResult) {
        match result {
            AuthResult::Ok => self.ok.inc(),
            AuthResult::Bad => self.bad.inc(),
            AuthResult::Expired => self.expired.inc(),
        }
    }
}

/// The relay's listening socket as the server sees it: a plain UDP socket
/// that counts on the way through (see the module's doc).
struct ObservedSocket {
    socket: UdpSocket,
    credentials: Arc<Credentials>,
    counters: Counters,
}

/// An Allocate success response: STUN type 0x0103 (method 0x003, class
/// success response).
fn is_allocate_success(datagram: &[u8]) -> bool {
    datagram.starts_with(&[0x01, 0x03]) && is_message(datagram)
}

#[async_trait]
impl Conn for ObservedSocket {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Conn::connect(&self.socket, addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Conn::recv(&self.socket, buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, from) = Conn::recv_from(&self.socket, buf).await?;
        if let Some(result) = buf
            .get(..n)
            .and_then(|d| self.credentials.check(d, unix_now()))
        {
            self.counters.auth(result);
        }
        Ok((n, from))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Conn::send(&self.socket, buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        // The allocation exists once the server answers success, whether
        // or not this datagram reaches the client.
        if is_allocate_success(buf) {
            self.counters.allocations.inc();
            self.counters.open.inc();
        }
        Conn::send_to(&self.socket, buf, target).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Conn::local_addr(&self.socket)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// The server calls this when any allocation closes (it hands every
    /// allocation the listener): the socket must stay open.
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// A running relay. [`TurnRelay::close`] stops it and closes every
/// allocation.
pub struct TurnRelay {
    server: Server,
    local_addr: SocketAddr,
    secret: String,
    generated_secret: bool,
    closed_allocations: JoinHandle<()>,
}

impl TurnRelay {
    /// Binds `config.listen` and starts serving; `Err` names the key when
    /// the address is taken.
    pub async fn start(
        config: &TurnRelayConfig,
        metrics: &Metrics,
    ) -> Result<TurnRelay, TurnRelayError> {
        let (secret, generated_secret) = match &config.secret {
            Some(s) => (s.clone(), false),
            None => (random_secret(), true),
        };
        let socket =
            UdpSocket::bind(config.listen)
                .await
                .map_err(|source| TurnRelayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = socket.local_addr().map_err(|source| TurnRelayError::Bind {
            addr: config.listen,
            source,
        })?;
        let credentials = Arc::new(Credentials::new(secret.clone(), config.realm.clone()));
        let counters = Counters::new(metrics);
        let conn = Arc::new(ObservedSocket {
            socket,
            credentials: credentials.clone(),
            counters: counters.clone(),
        });
        // Relay sockets bind where the listener does; `relay_ip` is only
        // what candidates say (a public address in front of a NAT).
        let bind_ip = match local_addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let ports = &config.relay_ports.0;
        let (close_tx, mut close_rx) = mpsc::channel(64);
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn,
                relay_addr_generator: Box::new(RelayAddressGeneratorRanges {
                    relay_address: config.relay_ip(),
                    min_port: *ports.start(),
                    max_port: *ports.end(),
                    max_retries: RELAY_PORT_TRIES,
                    address: bind_ip,
                    net: Arc::new(Net::new(None)),
                }),
            }],
            realm: config.realm.clone(),
            auth_handler: Arc::new(RestAuth(credentials)),
            // Zero: the crate's default (10 minutes).
            channel_bind_timeout: Duration::ZERO,
            alloc_close_notify: Some(close_tx),
        })
        .await?;
        let open = counters.open;
        let closed_allocations = tokio::spawn(async move {
            while close_rx.recv().await.is_some() {
                open.dec();
            }
        });
        info!(
            listen = %local_addr,
            relay_ip = %config.relay_ip(),
            relay_ports = %format!("{}-{}", ports.start(), ports.end()),
            realm = %config.realm,
            generated_secret,
            "embedded TURN relay up (UDP)"
        );
        Ok(TurnRelay {
            server,
            local_addr,
            secret,
            generated_secret,
            closed_allocations,
        })
    }

    /// Where the relay listens (the port the OS chose when `listen` said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the secret was made at start (no `turn.secret`).
    pub fn generated_secret(&self) -> bool {
        self.generated_secret
    }

    /// `turn:IP:PORT?transport=udp`, with a loopback address when the relay
    /// listens on all addresses (it is this host's own).
    pub fn url(&self) -> String {
        let addr = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.local_addr.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.local_addr.port())
            }
            _ => self.local_addr,
        };
        format!("turn:{addr}?transport=udp")
    }

    /// With cascade on and no Edge configured (`[[cascade.turn]]` empty),
    /// makes this relay the agents' TURN server: they mint their own TURN
    /// REST credentials from its secret. Returns whether it did.
    pub fn offer_to_cascade(&self, cascade: &mut CascadeConfig) -> bool {
        if cascade.janus_url.is_none() || !cascade.turn.is_empty() {
            return false;
        }
        cascade.turn.push(TurnConfig {
            url: self.url(),
            username: Some(CASCADE_USER.into()),
            credential: None,
            secret: Some(self.secret.clone()),
        });
        true
    }

    /// Stops the relay: every allocation is closed.
    pub async fn close(self) {
        if let Err(e) = self.server.close().await {
            debug!(error = %e, "closing the TURN relay");
        }
        // The server's tasks drop their notify senders as they end; the
        // counting task then ends by itself. Don't wait on it.
        drop(self.closed_allocations);
    }
}

/// 32 random bytes as hex: the secret when the operator set none. Only this
/// process knows it.
fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn keys_follow_the_turn_rest_rules() {
        let c = Credentials::new("north", "tandem");
        let (user, pass) = mint_turn_credential("north", "agent", NOW + 60);
        let key = c.key(&user, "tandem", NOW).expect("valid username");
        assert_eq!(key, generate_auth_key(&user, "tandem", &pass));
        // Still valid in its last second, expired after it.
        assert!(c.key(&user, "tandem", NOW + 60).is_ok());
        assert_eq!(c.key(&user, "tandem", NOW + 61), Err(AuthResult::Expired));
        assert_eq!(c.key(&user, "elsewhere", NOW), Err(AuthResult::Bad));
        assert_eq!(c.key("agent", "tandem", NOW), Err(AuthResult::Bad));
        assert_eq!(c.key("soon:agent", "tandem", NOW), Err(AuthResult::Bad));
        assert_eq!(
            c.key(&format!("0{}:agent", NOW + 60), "tandem", NOW),
            Err(AuthResult::Bad)
        );
    }

    /// An Allocate request as a client sends it after the 401 challenge.
    fn allocate(username: &str, realm: &str, password: &str) -> Vec<u8> {
        use stun::agent::TransactionId;
        use stun::message::{MessageType, Setter};
        let mut m = Message::new();
        let parts: [Box<dyn Setter>; 6] = [
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(TextAttribute::new(ATTR_USERNAME, username.into())),
            Box::new(TextAttribute::new(ATTR_REALM, realm.into())),
            Box::new(TextAttribute::new(
                stun::attributes::ATTR_NONCE,
                "nonce".into(),
            )),
            Box::new(MessageIntegrity::new_long_term_integrity(
                username.into(),
                realm.into(),
                password.into(),
            )),
        ];
        m.build(&parts).expect("message builds");
        m.raw
    }

    #[test]
    fn datagrams_are_classified() {
        let c = Credentials::new("north", "tandem");
        let (user, pass) = mint_turn_credential("north", "agent", NOW + 60);
        assert_eq!(
            c.check(&allocate(&user, "tandem", &pass), NOW),
            Some(AuthResult::Ok)
        );
        assert_eq!(
            c.check(&allocate(&user, "tandem", "wrong"), NOW),
            Some(AuthResult::Bad)
        );
        assert_eq!(
            c.check(&allocate(&user, "tandem", &pass), NOW + 3600),
            Some(AuthResult::Expired)
        );
        // Relayed media (ChannelData), junk and a truncated request carry no
        // credentials.
        assert_eq!(c.check(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4], NOW), None);
        assert_eq!(c.check(b"hello", NOW), None);
        assert_eq!(c.check(&allocate(&user, "tandem", &pass)[..30], NOW), None);
    }

    #[test]
    fn allocate_success_is_recognised() {
        let mut response = allocate("1:a", "tandem", "p");
        response[0] = 0x01;
        response[1] = 0x03;
        assert!(is_allocate_success(&response));
        assert!(!is_allocate_success(&allocate("1:a", "tandem", "p")));
        assert!(!is_allocate_success(&[0x01, 0x03]));
    }

    #[test]
    fn generated_secrets_differ() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
