//! District onboarding over REST — the same operations as `hub admin`: import and export
//! the district as CSV files (provisioning a device is in `devices`). District staff
//! only; every call is audited.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState, Caller};
use crate::authz;
use crate::import::ApplyError;

/// The largest import accepted over REST (a district of some thousand homes is a few
/// hundred KiB of CSV).
pub const MAX_IMPORT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Deserialize)]
pub(super) struct ImportBody {
    /// File name (`towns.csv`, ...) → its CSV text (UTF-8).
    files: BTreeMap<String, String>,
}

/// `POST /api/admin/import` `{"files": {"towns.csv": "...", ...}}`: all or nothing, like
/// `hub admin import`. `400` lists every problem as `file:line: reason`.
pub(super) async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Json(b): Json<ImportBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::district(&state, &caller, "district-import").await?;
    const KNOWN: [&str; 8] = [
        "towns.csv",
        "villages.csv",
        "households.csv",
        "elders.csv",
        "devices.csv",
        "contacts.csv",
        "rosters.csv",
        "roster_overrides.csv",
    ];
    if let Some(other) = b.files.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown file {other:?}; expected some of {}",
            KNOWN.join(", ")
        )));
    }
    let files = |name: &str| b.files.get(name).map(|t| Ok(t.as_bytes().to_vec()));
    let now = state.alarms.now();
    match crate::import::apply(&state.alarms.store, &files, None, now).await {
        Ok(report) => {
            authz::audit(
                &state,
                &caller,
                "district.import",
                "district",
                "allowed",
                serde_json::json!({ "counts": report.counts() }),
            )
            .await;
            Ok(Json(serde_json::json!({ "imported": report })))
        }
        Err(ApplyError::Invalid(errors)) => {
            authz::audit(
                &state,
                &caller,
                "district.import",
                "district",
                "failed",
                serde_json::json!({ "problems": errors.0.len() }),
            )
            .await;
            Err(ApiError::BadRequest(errors.to_string()))
        }
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}

/// `GET /api/admin/export` → `{"files": {"towns.csv": "...", ...}}` (no secrets or tokens).
pub(super) async fn export(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::district(&state, &caller, "district-export").await?;
    let batch = state.alarms.store.export().await?;
    let files = crate::import::to_texts(&batch).map_err(|e| ApiError::Internal(e.into()))?;
    authz::audit(
        &state,
        &caller,
        "district.export",
        "district",
        "allowed",
        serde_json::json!({}),
    )
    .await;
    Ok(Json(serde_json::json!({ "files": files })))
}
