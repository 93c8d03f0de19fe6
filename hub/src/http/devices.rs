//! Device credentials for a running hub (district staff): rotate a secret, revoke a
//! device. Both end the device's current MQTT connection (at its next packet) and are
//! audited; the CLI equivalents change only the database.

use axum::extract::{Path, State};
use axum::Json;

use super::{ApiError, AppState, Caller};
use crate::authz;
use crate::rules::Command;
use crate::secrets;

/// `POST /api/devices/{id}/rotate`: a new secret, shown once; the old one stops working.
pub(super) async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::district(&state, &caller, &format!("device:{id}")).await?;
    let (secret, hash) = secrets::new_hashed_secret()
        .await
        .map_err(ApiError::Internal)?;
    if !state.alarms.store.set_device_secret(&id, &hash).await? {
        return Err(ApiError::NotFound(format!("device {id}")));
    }
    state.kicks.kick(&id);
    authz::audit(
        &state,
        &caller,
        "device.rotate",
        &format!("device:{id}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    tracing::info!(contact = %caller.contact.id, device = %id, "device secret rotated");
    Ok(Json(
        serde_json::json!({ "device_id": id, "secret": secret }),
    ))
}

/// `POST /api/devices/{id}/revoke`: the device can no longer connect, its connection is
/// closed, and the rules stop watching it.
pub(super) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::district(&state, &caller, &format!("device:{id}")).await?;
    let store = &state.alarms.store;
    let Some(household) = store.device_household(&id).await? else {
        return Err(ApiError::NotFound(format!("device {id}")));
    };
    let now = state.alarms.now();
    if !store.revoke_device(&id, now).await? {
        return Err(ApiError::NotFound(format!("device {id}")));
    }
    state.kicks.kick(&id);
    let device = id.clone();
    state
        .rules
        .ask(|reply| Command::ForgetDevice {
            household,
            device,
            reply,
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    authz::audit(
        &state,
        &caller,
        "device.revoke",
        &format!("device:{id}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    tracing::info!(contact = %caller.contact.id, device = %id, "device revoked");
    Ok(Json(
        serde_json::json!({ "device_id": id, "revoked": true }),
    ))
}
