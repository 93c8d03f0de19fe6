//! Logging and metrics setup. Log lines carry ids only (device, household, alarm,
//! contact ids), never names, addresses, phone numbers or raw payloads.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<Arc<PrometheusHandle>>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed once; later hubs in the same test
/// process share it).
pub fn prometheus_handle() -> Option<Arc<PrometheusHandle>> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(Arc::new(h)),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// `RUST_LOG` overrides. rumqttd is silenced by default: it logs ordinary client
/// disconnects at ERROR level; use `RUST_LOG=info,rumqttd=warn` to debug the broker.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rumqttd=off,sqlx=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
