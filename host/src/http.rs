//! The daemon's HTTP endpoints (on `[daemon] metrics_addr`, loopback by default):
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | every `compactor_*` metric, OpenMetrics text format |
//! | `GET /healthz` | 200 while the process is alive |
//! | `GET /readyz` | 200 when config and plugins are loaded and the store answers; 503 otherwise, and while shutting down |
//! | `POST /run` | 202: a run starts now, or right after the one going |

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::daemon::Daemon;

pub fn router(daemon: Daemon) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/run", post(run))
        .with_state(daemon)
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, daemon: Daemon) {
    if let Err(e) = axum::serve(listener, router(daemon)).await {
        tracing::error!("the HTTP endpoint stopped: {e}");
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::global().encode(),
    )
}

async fn readyz(State(daemon): State<Daemon>) -> (StatusCode, String) {
    if daemon.stop().is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    match daemon.probe_store().await {
        Ok(()) => {
            let app = daemon.app();
            (
                StatusCode::OK,
                format!(
                    "ready: config {} loaded, {} table(s) with plugins loaded, {} reachable\n",
                    app.config.path.display(),
                    app.tables.len(),
                    app.store.describe()
                ),
            )
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}\n"),
        ),
    }
}

async fn run(State(daemon): State<Daemon>) -> (StatusCode, &'static str) {
    if daemon.stop().is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: no new runs\n",
        );
    }
    daemon.run_now();
    (
        StatusCode::ACCEPTED,
        "run requested: it starts now, or right after the one going\n",
    )
}
