//! `tandem`: the command operators type. See README.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use tandem_bridge::cluster::{ClusterMember, Rooms};
use tandem_bridge::config::Config;
use tandem_bridge::metrics::Metrics;
use tandem_bridge::node::Node;
use tandem_bridge::turn_relay::TurnRelay;
use tandem_control::Control;
use tandem_control::registry::MirroredRooms;
use tandem_control::store::{Mirror, keys};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "tandem", version, about = "Tandem conferencing bridge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// All in one process on loopback: one MCU node and the embedded TURN
    /// relay, with embedded defaults.
    Up {
        /// TOML config; `TANDEM_<SECTION>_<KEY>` variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also start synthetic room systems in conference 1000.
        #[arg(long)]
        demo: bool,
    },
    /// One MCU node of a fleet: registers with the control plane's etcd
    /// (`[node] name, site, max_participants, control`) and takes the calls
    /// the front door routes to it.
    Node {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The control plane: node registry, placement, meeting rooms (REST
    /// API) and the SIP front door, with state in etcd (`[control] etcd`).
    Control {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration (defaults, file, environment) and exit.
    Config {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { config, demo } => {
            let config =
                Config::load(config.as_deref(), std::env::vars()).context("configuration")?;
            init_tracing(&config.log.level);
            runtime()?.block_on(up(config, demo))
        }
        Command::Node { config } => {
            let config =
                Config::load(config.as_deref(), std::env::vars()).context("configuration")?;
            init_tracing(&config.log.level);
            runtime()?.block_on(node(config))
        }
        Command::Control { config } => {
            let config =
                Config::load(config.as_deref(), std::env::vars()).context("configuration")?;
            init_tracing(&config.log.level);
            runtime()?.block_on(control(config))
        }
        Command::Config { config } => {
            let config =
                Config::load(config.as_deref(), std::env::vars()).context("configuration")?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tandem")
        .build()
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

async fn node(config: Config) -> anyhow::Result<()> {
    if config.node.control.is_empty() {
        anyhow::bail!(
            "node.control: the control plane's etcd endpoints are needed (e.g. [\"http://127.0.0.1:2379\"]); `tandem up` runs a node on its own"
        );
    }
    let store = tandem_control::store::open(
        &config.node.control,
        std::time::Duration::from_millis(config.control.request_timeout_ms),
    )
    .await
    .context("node.control")?;
    let rooms = Arc::new(Rooms(vec![
        Arc::new(tandem_control::StaticRooms::with(
            config.room.iter().cloned(),
        )),
        Arc::new(MirroredRooms(Arc::new(Mirror::start(
            store.clone(),
            keys::VMRS,
        )))),
    ]));
    let mut config = config;
    if config.span.name.is_none() {
        // Links and rosters name this node as the cluster does.
        config.span.name = Some(config.node.name.clone());
    }
    let node = Node::start_with(config.clone(), Arc::new(Metrics::new()), rooms).await?;
    let member = ClusterMember::join(
        &config,
        store,
        node.sip_addr,
        node.http_addr,
        node.span_addr,
        node.registry.clone(),
        node.metrics.clone(),
    )
    .await;
    let follow = tokio::spawn(follow_placements(
        member.membership.clone(),
        node.spans.clone(),
        node.registry.clone(),
        config.clone(),
    ));
    println!(
        "Tandem node {} (site {}) is up: sip {}, api http://{}",
        config.node.name, config.node.site, node.sip_addr, node.http_addr
    );
    wait_for_signal().await?;
    println!("Ending calls...");
    follow.abort();
    node.shutdown().await;
    member.leave().await;
    Ok(())
}

/// Makes this node's part of each conference placed on it (not as home) a
/// satellite of the home: placement decides, the node links over QUIC; a
/// new home after failover is linked to anew. A conference that started
/// here without the front door placing it here (the lobby took a caller to
/// it; a caller dialled the node) is claimed first: the node joins its
/// placement, as home if it is placed nowhere, so that one conference ID is
/// one conference across the fleet.
async fn follow_placements(
    membership: Arc<tandem_control::Membership>,
    spans: Arc<tandem_bridge::span::Spans>,
    registry: Arc<tandem_bridge::registry::Registry>,
    config: Config,
) {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};
    let me = config.node.name.clone();
    let mut changes = membership.placement_changes();
    let mut linked: HashMap<String, std::net::SocketAddr> = HashMap::new();
    let mut claimed: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            _ = tick.tick() => {}
        }
        let placements = membership.placements();
        claimed.retain(|_, at| at.elapsed() < Duration::from_secs(2));
        for conf in registry.ids() {
            let member = placements
                .iter()
                .any(|p| p.conference == conf && p.nodes.contains(&me));
            if member || config.lobby.is_lobby(&conf) || claimed.contains_key(&conf) {
                continue;
            }
            claimed.insert(conf.clone(), Instant::now());
            if let Err(e) = membership.claim(&conf, &me).await {
                tracing::warn!(conference = %conf, %e, "cannot join the conference's placement");
            }
        }
        let mut want = HashMap::new();
        for p in &placements {
            let Some(home) = p.home() else { continue };
            if home == me || !p.nodes.contains(&me) {
                continue;
            }
            let addr = membership
                .node(home)
                .and_then(|r| r.span)
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
            if let Some(addr) = addr {
                want.insert(p.conference.clone(), addr);
            }
        }
        for (conf, addr) in &want {
            if linked.get(conf) != Some(addr) {
                tracing::info!(conference = %conf, home = %addr, "linking to the conference's home");
                spans.span(conf, Some(*addr));
            }
        }
        for conf in linked.keys() {
            if !want.contains_key(conf) {
                spans.span(conf, None);
            }
        }
        linked = want;
    }
}

async fn control(config: Config) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    let mut control = Control::start(&config.control, &registry)
        .await
        .context("control plane ([control] etcd)")?;
    let sip = std::net::SocketAddr::new(config.sip.listen, config.sip.port);
    let sip = control
        .open_front_door(
            sip,
            &config.front_door,
            &config.control,
            config.conference.auto_create,
        )
        .await?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP {} (http.listen)", config.http.listen))?;
    let http = listener.local_addr()?;
    let app = tandem_bridge::http::control_router(control.router(), registry);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    println!(
        "Tandem control is up ({} state): front door sip:<conference>@{sip} ({:?}), api http://{http}/api/nodes",
        control.store.kind(),
        config.front_door.mode
    );
    wait_for_signal().await?;
    Ok(())
}

fn init_tracing(level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

async fn up(mut config: Config, demo: bool) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    // The relay first: the cascade agents learn its address and secret
    // through the config the node starts with.
    let relay = if config.turn.enabled {
        let relay = TurnRelay::start(&config.turn, &metrics)
            .await
            .context("embedded TURN relay ([turn])")?;
        if relay.offer_to_cascade(&mut config.cascade) {
            tracing::info!(url = %relay.url(), "cascade uses the embedded TURN relay");
        }
        Some(relay)
    } else {
        None
    };
    // The control plane in memory: the rooms API and node registry on the
    // node's own HTTP port; the node reads its rooms from it.
    let store: tandem_control::store::SharedStore =
        Arc::new(tandem_control::store::MemoryStore::new());
    let control = Control::with_store(
        &config.control,
        store.clone(),
        Arc::new(tandem_control::metrics::ControlMetrics::new(
            metrics.registry(),
        )),
    )
    .await?;
    let rooms = Arc::new(Rooms(vec![
        Arc::new(tandem_control::StaticRooms::with(
            config.room.iter().cloned(),
        )),
        control.rooms.clone(),
    ]));
    let node = Node::start_serving(config.clone(), metrics, rooms, Some(control.router())).await?;
    let member = ClusterMember::join(
        &config,
        store,
        node.sip_addr,
        node.http_addr,
        None,
        node.registry.clone(),
        node.metrics.clone(),
    )
    .await;
    println!("Tandem is up.");
    println!(
        "  dial:    sip:<conference>@{}   (e.g. sip:4711@{})",
        node.sip_addr, node.sip_addr
    );
    println!(
        "  api:     http://{}/api/conferences   rooms: /api/vmrs",
        node.http_addr
    );
    println!("  metrics: http://{}/metrics", node.http_addr);
    if let Some(relay) = &relay {
        println!(
            "  turn:    {}   (shared secret: {})",
            relay.url(),
            if relay.generated_secret() {
                "generated, in memory only"
            } else {
                "[turn] secret"
            }
        );
    }
    if demo {
        tandem_bridge::demo::start(&node).await?;
        println!("  demo:    synthetic room systems are talking in conference 1000");
    }
    println!("Ctrl-C ends every call and exits.");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("Ending calls...");
    node.shutdown().await;
    member.leave().await;
    drop(control);
    if let Some(relay) = relay {
        relay.close().await;
    }
    Ok(())
}
