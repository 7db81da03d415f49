//! Starting and stopping a node: binds the sockets, starts the signalling task,
//! the socket readers and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

use tandem_control::{RoomDirectory, StaticRooms};

use crate::bindings::Cascades;
use crate::config::Config;
use crate::driver::{net, sip};
use crate::http::{self, ApiState};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::signalling::Signalling;
use crate::span::Spans;

pub struct Node {
    pub sip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    /// Conferences across nodes: `span_addr` is where links reach this
    /// node (`None`: `[span] enabled = false`).
    pub spans: Arc<Spans>,
    pub span_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    signalling: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Node {
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        Node::start_with_metrics(config, Arc::new(Metrics::new())).await
    }

    /// As [`Node::start`], counting into `metrics`: `tandem up` shares them
    /// with the embedded TURN relay, which starts first. Meeting rooms come
    /// from the config's `[[room]]` tables (none by default).
    pub async fn start_with_metrics(config: Config, metrics: Arc<Metrics>) -> anyhow::Result<Node> {
        let rooms = Arc::new(StaticRooms::with(config.room.iter().cloned()));
        Node::start_with(config, metrics, rooms).await
    }

    /// As [`Node::start_with_metrics`], reading meeting rooms (PIN, default
    /// layout, size) from `rooms`: the control plane's live directory.
    pub async fn start_with(
        config: Config,
        metrics: Arc<Metrics>,
        rooms: Arc<dyn RoomDirectory>,
    ) -> anyhow::Result<Node> {
        Node::start_serving(config, metrics, rooms, None).await
    }

    /// As [`Node::start_with`], serving `api` (more routes, e.g. the control
    /// plane's in `tandem up`) beside the node's own.
    pub async fn start_serving(
        config: Config,
        metrics: Arc<Metrics>,
        rooms: Arc<dyn RoomDirectory>,
        api: Option<axum::Router>,
    ) -> anyhow::Result<Node> {
        let config = Arc::new(config);
        let registry = Arc::new(Registry::default());
        let sip_addr = SocketAddr::new(config.sip.listen, config.sip.port);
        let udp = Arc::new(
            net::udp_socket(sip_addr, config.qos.signalling)
                .with_context(|| format!("binding SIP UDP {sip_addr} (sip.listen, sip.port)"))?,
        );
        let tcp = net::tcp_listener(sip_addr, config.qos.signalling)
            .with_context(|| format!("binding SIP TCP {sip_addr} (sip.listen, sip.port)"))?;
        let http_listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("binding HTTP {} (http.listen)", config.http.listen))?;
        let http_addr = http_listener.local_addr()?;
        let ports = Arc::new(net::PortAllocator::new(
            config.media_listen(),
            config.media.audio_ports.clone(),
        ));
        let video_ports = Arc::new(net::PortAllocator::new(
            config.media_listen(),
            config.media.video_ports.clone(),
        ));

        let (in_tx, in_rx) = mpsc::channel(4096);
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let cascades = Arc::new(Cascades::new(
            &config,
            ports.clone(),
            video_ports.clone(),
            metrics.clone(),
            registry.clone(),
        ));
        let spans = Arc::new(Spans::new(
            &config,
            ports.clone(),
            video_ports.clone(),
            metrics.clone(),
            registry.clone(),
            ev_tx.clone(),
        )?);
        let span_addr = spans.listen_addr();
        // The floor control server, when content is on (it rides on video).
        let bfcp = if config.content.enabled && config.video.enabled {
            let contention = config.content.contention().unwrap_or_default();
            Some(
                crate::bfcp::Bfcp::start(
                    config.media_listen(),
                    config.content.bfcp_port,
                    config.qos.signalling,
                    contention,
                    metrics.clone(),
                )
                .await
                .with_context(|| {
                    format!(
                        "binding BFCP {}:{} (content.bfcp_port)",
                        config.media_listen(),
                        config.content.bfcp_port
                    )
                })?,
            )
        } else {
            None
        };
        if let Some(b) = &bfcp {
            cascades.set_bfcp(b.clone());
        }
        // H.323-lite call signalling, when on.
        let h323 = if config.h323.enabled {
            let addr = SocketAddr::new(config.sip.listen, config.h323.port);
            let listener = net::tcp_listener(addr, config.qos.signalling)
                .with_context(|| format!("binding H.323 {addr} (sip.listen, h323.port)"))?;
            Some((listener, bfcp.clone()))
        } else {
            None
        };
        let signalling = Signalling::new(
            config.clone(),
            metrics.clone(),
            registry.clone(),
            net::MediaPorts {
                audio: ports,
                video: video_ports,
            },
            udp.clone(),
            ev_tx,
            cascades.clone(),
            rooms,
            spans.clone(),
            bfcp,
        );
        let h323_addr = h323.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let h323_task = h323.map(|(listener, bfcp)| {
            tokio::spawn(crate::h323::serve(
                listener,
                Arc::new(crate::h323::H323Context {
                    config: config.clone(),
                    metrics: metrics.clone(),
                    bfcp,
                    signalling: in_tx.clone(),
                }),
            ))
        });
        let signalling = tokio::spawn(signalling.run(in_rx, ev_rx, shutdown_rx));
        let mut background = vec![
            tokio::spawn(sip::udp_reader(udp, in_tx.clone(), metrics.clone())),
            tokio::spawn(sip::tcp_acceptor(tcp, in_tx, metrics.clone())),
            tokio::spawn({
                let mut app = http::router(ApiState {
                    metrics: metrics.clone(),
                    registry: registry.clone(),
                    cascades,
                    spans: spans.clone(),
                });
                if let Some(api) = api {
                    app = app.merge(api);
                }
                async move {
                    let _ = axum::serve(http_listener, app).await;
                }
            }),
        ];
        background.extend(spans.spawn_listener());
        background.extend(h323_task);
        info!(sip = %sip_addr, http = %http_addr, h323 = ?h323_addr, span = ?span_addr, node = spans.node_name(), "node up");
        Ok(Node {
            sip_addr,
            http_addr,
            metrics,
            registry,
            spans,
            span_addr,
            shutdown: Some(shutdown_tx),
            signalling,
            background,
        })
    }

    /// Makes `conference` a satellite of the node at `home` (its span
    /// listener), or no longer (`None`): the control plane's placement calls
    /// this. A running conference links at once, else at its first call.
    pub fn span(&self, conference: &str, home: Option<SocketAddr>) {
        self.spans.span(conference, home);
    }

    /// Ends every call with BYE (waiting briefly for answers), then stops.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.signalling).await;
        self.spans.close();
        for t in &self.background {
            t.abort();
        }
    }
}
