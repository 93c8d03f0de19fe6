//! Device credentials for a running hub (district staff): provision a device, or
//! reinstate a revoked one (its secret shown once), rotate a secret, revoke a device.
//! Rotating and revoking end the device's current MQTT connection (at its next packet).
//! Every change is audited; the CLI equivalents change only the database.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState, Caller};
use crate::authz;
use crate::import::{DeviceRow, DEVICE_KINDS};
use crate::rules::Command;
use crate::secrets;
use crate::store::utc_time;

#[derive(Debug, Deserialize)]
pub(super) struct DeviceBody {
    id: String,
    household_id: String,
    kind: String,
    #[serde(default)]
    vendor: Option<String>,
    /// Bring back a revoked device with this id. Without it a revoked id is refused
    /// (409), so that nobody undoes a revocation without deciding to.
    #[serde(default)]
    reinstate: bool,
}

/// `POST /api/devices` `{"id","household_id","kind","vendor"}` → `201 {"device_id","secret"}`:
/// the secret is shown once (only its hash is stored). For a revoked id, `409` unless the
/// body says `"reinstate": true`: then the device is registered anew (household, kind,
/// vendor as given, a new secret), watched again, audited as `device.reinstate`, and the
/// answer is `200 {"device_id","secret","reinstated":true}`.
pub(super) async fn provision(
    State(state): State<AppState>,
    caller: Caller,
    Json(b): Json<DeviceBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authz::district(&state, &caller, &format!("device:{}", b.id)).await?;
    crate::ingest::contract::DeviceId::parse(&b.id)
        .map_err(|e| ApiError::BadRequest(format!("device id {:?}: {e}", b.id)))?;
    if !DEVICE_KINDS.contains(&b.kind.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "kind {:?} is not one of {}",
            b.kind,
            DEVICE_KINDS.join(", ")
        )));
    }
    let store = &state.alarms.store;
    let revoked_at = match store.device(&b.id).await? {
        Some(d) => match d.revoked_at {
            None if b.reinstate => {
                return Err(ApiError::Conflict(format!(
                    "device {} is active, not revoked: there is nothing to reinstate (rotate its secret instead)",
                    b.id
                )))
            }
            None => {
                return Err(ApiError::Conflict(format!(
                    "device {} exists; rotate its secret instead",
                    b.id
                )))
            }
            Some(at) if !b.reinstate => {
                return Err(ApiError::Conflict(format!(
                    "device {} was revoked on {}; to bring it back with a new secret, send this request again with \"reinstate\": true",
                    b.id,
                    utc_time(at)
                )))
            }
            Some(at) => Some(at),
        },
        None if b.reinstate => {
            return Err(ApiError::NotFound(format!(
                "revoked device {} (to provision a new device, leave out \"reinstate\")",
                b.id
            )))
        }
        None => None,
    };
    if !store.ids("households").await?.contains(&b.household_id) {
        return Err(ApiError::BadRequest(format!(
            "unknown household {:?}",
            b.household_id
        )));
    }
    let (secret, hash) = secrets::new_hashed_secret()
        .await
        .map_err(ApiError::Internal)?;
    let vendor = b.vendor.as_deref().unwrap_or("");
    if let Some(revoked_at) = revoked_at {
        if !store
            .reinstate_device(&b.id, &b.household_id, &b.kind, vendor, &hash)
            .await?
        {
            return Err(ApiError::Conflict(format!(
                "device {} changed while it was being reinstated; look it up and try again",
                b.id
            )));
        }
        let (household, device) = (b.household_id.clone(), b.id.clone());
        state
            .rules
            .ask(|reply| Command::WatchDevice {
                household,
                device,
                reply,
            })
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        authz::audit(
            &state,
            &caller,
            "device.reinstate",
            &format!("device:{}", b.id),
            "allowed",
            serde_json::json!({
                "household": b.household_id,
                "kind": b.kind,
                "revoked_at": utc_time(revoked_at),
            }),
        )
        .await;
        tracing::info!(contact = %caller.contact.id, device = %b.id, "device reinstated");
        return Ok((
            StatusCode::OK,
            Json(serde_json::json!({ "device_id": b.id, "secret": secret, "reinstated": true })),
        ));
    }
    let row = DeviceRow {
        id: b.id.clone(),
        household_id: b.household_id.clone(),
        kind: b.kind.clone(),
        vendor: b.vendor.clone(),
        secret: None,
    };
    let batch = crate::import::Batch {
        devices: vec![row],
        ..Default::default()
    };
    store
        .import(&batch, &[Some(hash)], &[], state.alarms.now())
        .await?;
    authz::audit(
        &state,
        &caller,
        "device.provision",
        &format!("device:{}", b.id),
        "allowed",
        serde_json::json!({ "household": b.household_id, "kind": b.kind }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "device_id": b.id, "secret": secret })),
    ))
}

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
