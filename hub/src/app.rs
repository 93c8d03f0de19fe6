//! Wiring: the one place where stages are built and joined by channels.
//!
//! ```text
//! devices ─MQTT─▶ broker (embedded rumqttd) ─▶ ingest ─mpsc─▶ rules ─▶ alarms (store, then bus)
//!                                                                         │            │
//!                                                   escalation ◀─ deadlines in store   ▼
//!                                                                              http: REST + websocket
//! ```
//! Ingest feeds the rules stage through two lanes (critical reports first); REST and
//! SIGHUP reach it through a command channel ([`crate::rules::RulesHandle`]).
//! Shutdown: only the source (ingest) is told to stop; the rules stage stops when its
//! inputs close, after saving its memory; escalation and http stop on the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alarms::AlarmService;
use crate::clock::{ManualClock, SharedClock};
use crate::config::Settings;
use crate::http::{AppState, SimControl};
use crate::ingest::BrokerConnection;
use crate::notify::Bus;
use crate::rules::RulesStage;
use crate::store::Store;

pub struct App {
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served when `[http] metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub mqtt_addr: SocketAddr,
    pub store: Store,
    pub alarms: AlarmService,
    /// Observations the rules stage has finished handling.
    pub processed: Arc<std::sync::atomic::AtomicU64>,
    /// Login limits per source address; tests read its count of password checks.
    pub login_sources: Arc<crate::http::accounts::LoginSources>,
    /// Stops ingest (and with it everything downstream) and the servers.
    shutdown: CancellationToken,
    /// Only the escalation scheduler and http; the rules stage drains on its own.
    servers: CancellationToken,
    /// Ingest and rules: awaited in order on shutdown so the pipeline drains.
    pipeline: Vec<tokio::task::JoinHandle<()>>,
    /// Escalation, http.
    tracker: TaskTracker,
}

impl App {
    /// Build everything and bind every socket; the hub is serving when this returns.
    pub async fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<App> {
        Self::build_inner(settings, clock, None).await
    }

    /// For simulation runs only (`device-sim run`), never in production: the hub's time
    /// is a [`ManualClock`] that the simulator moves through `POST /api/sim/clock`, so a
    /// month of a district's life runs in minutes through the real ingest path.
    pub async fn build_simulated(
        mut settings: Settings,
        clock: ManualClock,
    ) -> anyhow::Result<App> {
        tracing::warn!("SIMULATED CLOCK: time moves only when a simulator says so; never use this in production");
        // Days of a device's messages arrive in seconds of real time: a budget in real
        // messages per second would refuse them.
        settings.mqtt.device_limits.publishes_per_sec = 0;
        Self::build_inner(settings, Arc::new(clock.clone()), Some(clock)).await
    }

    async fn build_inner(
        settings: Settings,
        clock: SharedClock,
        simulated: Option<ManualClock>,
    ) -> anyhow::Result<App> {
        // Settings checked before anything starts.
        let edge = Arc::new(crate::http::edge::Edge::new(&settings.http)?);
        let store = Store::connect(&settings.database_url)
            .await
            .with_context(|| "opening the database (database_url)".to_string())?;
        let rules = match &settings.rules.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading rules file {}", path.display()))?;
                alert_rules::RuleSet::from_toml_str(&text)
                    .with_context(|| format!("rules file {}", path.display()))?
            }
            None => alert_rules::RuleSet::default_rules(),
        };
        let metrics = crate::telemetry::prometheus_handle();
        let mut channels = crate::delivery::Channels::default();
        if let Some(w) = &settings.webhook {
            let ch = crate::webhook::WebhookChannel::new(w.clone(), store.clone())
                .map_err(anyhow::Error::msg)?;
            channels = channels.with(Arc::new(ch));
        }
        if let Some(t) = &settings.twilio {
            for kind in [
                crate::delivery::ChannelKind::Sms,
                crate::delivery::ChannelKind::Voice,
            ] {
                let ch = crate::phone::TwilioChannel::new(kind, t)
                    .with_context(|| "[twilio] settings".to_string())?;
                channels = channels.with(Arc::new(ch));
            }
        }
        let shutdown = CancellationToken::new();
        let servers = CancellationToken::new();
        let tracker = TaskTracker::new();
        let alarms = AlarmService {
            store: store.clone(),
            clock: clock.clone(),
            bus: Bus::new(1024),
            escalation: Arc::new(settings.escalation.clone()),
            escalation_wake: Arc::new(Notify::new()),
            channel_kinds: Arc::new(channels.kinds()),
            delivery_wake: Arc::new(Notify::new()),
            utc_offset_minutes: rules.utc_offset_minutes(),
            order: Arc::new(tokio::sync::Mutex::new(())),
        };

        // Downstream first: rules, escalation, http. Then the broker, then ingest.
        let (priority_tx, priority_rx) = mpsc::channel(1024);
        let (normal_tx, normal_rx) = mpsc::channel(4096);
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let rules_handle = crate::rules::RulesHandle {
            commands: commands_tx,
            file: settings.rules.file.clone(),
            utc_offset_minutes: rules.utc_offset_minutes(),
        };
        let stage = RulesStage::load(
            rules,
            alarms.clone(),
            Duration::from_secs(settings.rules.tick_secs),
            Duration::from_secs(settings.rules.save_state_secs),
        )
        .await?;
        let processed = stage.processed.clone();
        let lanes = crate::rules::Lanes {
            priority: priority_tx,
            normal: normal_tx,
            progress: stage.progress.clone(),
        };
        let ingest_progress = Arc::new(crate::health::Progress::new("ingest"));
        let health = crate::health::Health::new(
            Duration::from_secs(settings.health.stall_after_secs.max(1)),
            &[ingest_progress.clone(), stage.progress.clone()],
        );
        tracker.spawn(health.clone().watch(servers.clone()));
        let rules_task = tokio::spawn(stage.run(
            priority_rx,
            normal_rx,
            commands_rx,
            CancellationToken::new(),
        ));
        tracker.spawn(reload_on_sighup(rules_handle.clone(), servers.clone()));
        tracker.spawn(crate::escalation::run(alarms.clone(), servers.clone()));
        if !channels.is_empty() {
            tracker.spawn(crate::delivery::run(
                store.clone(),
                clock.clone(),
                channels,
                alarms.delivery_wake.clone(),
                alarms.bus.clone(),
                servers.clone(),
            ));
        }

        let listener = tokio::net::TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("binding http on {}", settings.http.listen))?;
        let http_addr = listener.local_addr()?;
        let sim = simulated.map(|clock| {
            Arc::new(SimControl {
                clock,
                processed: processed.clone(),
            })
        });
        let kicks = crate::broker::Kicks::default();
        // `/metrics` on its own listener when configured (and then not on the public one).
        let metrics_addr = match (settings.http.metrics_listen, &metrics) {
            (Some(addr), Some(handle)) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding metrics on {addr}"))?;
                let bound = l.local_addr()?;
                let stop = servers.clone();
                let app = crate::http::metrics_router(handle.clone(), health.clone());
                tracker.spawn(async move {
                    let served = axum::serve(l, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "metrics server stopped");
                    }
                });
                Some(bound)
            }
            _ => None,
        };
        let login_sources = Arc::new(crate::http::accounts::LoginSources::new(
            settings.http.limit_loopback_logins,
        ));
        let router = crate::http::router(AppState {
            alarms: alarms.clone(),
            metrics: if metrics_addr.is_some() {
                None
            } else {
                metrics
            },
            sim,
            rules: rules_handle,
            kicks: kicks.clone(),
            login_failures: Default::default(),
            login_sources: login_sources.clone(),
            edge,
            ws_slots: Arc::new(crate::http::sockets::WsSlots::new(
                settings.http.max_websockets_per_account,
                settings.http.max_websockets,
            )),
            credentials_ended: tokio::sync::broadcast::channel(64).0,
            twilio: settings.twilio.clone().map(Arc::new),
            stopping: servers.clone(),
            health,
        });
        let http_stop = servers.clone();
        tracker.spawn(async move {
            // Client addresses reach handlers (for the audit log).
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "http server stopped");
            }
        });

        let broker = crate::broker::start(
            &settings.mqtt,
            store.clone(),
            kicks,
            servers.clone(),
            &tracker,
        )
        .await?;
        let conn = BrokerConnection {
            host: if broker.addr.ip().is_unspecified() {
                "127.0.0.1".into()
            } else {
                broker.addr.ip().to_string()
            },
            port: broker.addr.port(),
            client_id: broker.hub.client_id.clone(),
            username: broker.hub.client_id.clone(),
            password: broker.hub.password.clone(),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let ingest_task = tokio::spawn(crate::ingest::run(
            conn,
            store.clone(),
            clock,
            lanes,
            ingest_progress,
            ready_tx,
            shutdown.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(15), ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("ingest did not subscribe to the broker within 15 s"))?
            .map_err(|_| anyhow::anyhow!("ingest stopped before subscribing to the broker"))?;
        tracker.close();
        tracing::info!(%http_addr, mqtt_addr = %broker.addr, "hub started");
        Ok(App {
            http_addr,
            metrics_addr,
            mqtt_addr: broker.addr,
            store,
            alarms,
            processed,
            login_sources,
            shutdown,
            servers,
            pipeline: vec![ingest_task, rules_task],
            tracker,
        })
    }

    /// Graceful stop: ingest first, let the rules stage drain and save, then the servers.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        // Give the pipeline a bounded time to drain before stopping the servers.
        let drained = tokio::time::timeout(
            Duration::from_secs(10),
            futures::future::join_all(self.pipeline),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("pipeline did not drain in time");
        }
        self.servers.cancel();
        if tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tracker.len(),
                "some tasks did not stop in time"
            );
        }
    }

    /// Run until Ctrl-C or SIGTERM, then shut down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}

/// `kill -HUP <hub>` re-reads the rules file; an invalid file keeps the rules in force.
async fn reload_on_sighup(rules: crate::rules::RulesHandle, stop: CancellationToken) {
    #[cfg(unix)]
    {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload rules over REST instead");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    if let Err(e) = rules.reload().await {
                        metrics::counter!("anxin_rules_reload_failed_total").increment(1);
                        tracing::error!(error = %e, "rules reload on SIGHUP refused");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (rules, stop);
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
