//! What Twilio posts back: delivery status, the key pressed in a call, SMS replies.
//! Nothing is trusted without a valid `X-Twilio-Signature` (HMAC-SHA1 of the public URL
//! and the sorted form parameters with the account's auth token): a forged post is
//! answered 403, counted and logged (without numbers).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::phone::{self, PHONE_ETA_MINUTES};
use crate::store::{Delivery, Response as Progress, StoreError};
use crate::twilio::callbacks::{self, Gather, IncomingSms, StatusCallback};
use crate::twilio::twiml::{self, Language};
use crate::twilio::{signature, TwilioSettings};

#[derive(Debug, Deserialize)]
pub(super) struct DeliveryQuery {
    d: Option<String>,
}

/// A refused callback: a status and a short reason.
struct Reject(StatusCode, &'static str);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn xml(body: String) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The form parameters, if the post is signed by our Twilio account for the URL it came to.
fn verified(
    settings: &TwilioSettings,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Params, Reject> {
    let refuse = |why: &'static str| {
        metrics::counter!("anxin_twilio_callbacks_refused_total", "reason" => why).increment(1);
        tracing::warn!(path = uri.path(), reason = why, "twilio callback refused");
        Reject(StatusCode::FORBIDDEN, "invalid signature")
    };
    let Some(sig) = headers.get(signature::HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(refuse("no_signature"));
    };
    let Ok(params) = callbacks::parse_form(body) else {
        return Err(refuse("bad_form"));
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = settings.public_url(path);
    if !signature::verify(settings.auth_token.expose(), &url, &params, sig) {
        return Err(refuse("bad_signature"));
    }
    Ok(params)
}

/// A callback's form parameters, in the order posted.
type Params = Vec<(String, String)>;

/// The Twilio settings and a callback's verified form parameters, or the refusal.
fn signed<'a>(
    state: &'a AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'a TwilioSettings, Params), Reject> {
    let settings = twilio(state)?;
    Ok((settings, verified(settings, uri, headers, body)?))
}

fn twilio(state: &AppState) -> Result<&TwilioSettings, Reject> {
    state
        .twilio
        .as_deref()
        .ok_or(Reject(StatusCode::NOT_FOUND, "twilio is not configured"))
}

/// `POST /api/twilio/status?d=<delivery>`: a message's or call's status. A call nobody
/// answered (or a machine answered), a busy line, a failed or undelivered SMS: the
/// contact was not reached, so the delivery fails and the contact's next channel is tried.
pub(super) async fn status(
    State(state): State<AppState>,
    Query(q): Query<DeliveryQuery>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, params) = match signed(&state, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let Ok(cb) = StatusCallback::from_params(&params) else {
        return (StatusCode::BAD_REQUEST, "not a status callback").into_response();
    };
    let Some(id) = q.d else {
        return (StatusCode::BAD_REQUEST, "no delivery").into_response();
    };
    let store = &state.alarms.store;
    let now = state.alarms.now();
    let (status, unreached) = match &cb {
        StatusCallback::Message(m) => (m.status.as_str().to_owned(), m.status.is_failure()),
        StatusCallback::Call(c) => {
            let machine = c.answered_by.as_ref().is_some_and(|a| a.is_machine());
            let final_unanswered = c.status.is_final()
                && matches!(
                    c.status.as_str(),
                    "no-answer" | "busy" | "failed" | "canceled"
                );
            (
                if machine {
                    "answered-by-machine".to_owned()
                } else {
                    c.status.as_str().to_owned()
                },
                machine || final_unanswered,
            )
        }
    };
    // Twilio may call back before the hub has recorded the send it answered: give the
    // worker a moment to record it (the provider id is what the callback is matched on).
    for _ in 0..40 {
        match store.delivery(&id).await {
            Ok(Some(d)) if d.state == "sending" => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            _ => break,
        }
    }
    let recorded = store
        .delivery_provider_status(&id, cb.sid(), &status, now)
        .await;
    if let Ok(Some(d)) = &recorded {
        state.alarms.bus.delivery_changed(&d.alarm_id);
    }
    match recorded {
        Ok(Some(d)) if unreached && phone::elder_of(&d).is_some() => {
            // The elder did not pick up: tell the contacts now, not at the deadline.
            let elder = phone::elder_of(&d).unwrap_or_default().to_owned();
            if let Err(e) = state
                .alarms
                .elder_answered(&d.alarm_id, &elder, false)
                .await
            {
                tracing::error!(error = %e, "escalating after an unanswered elder call failed");
            }
        }
        Ok(Some(d)) if unreached && d.state == "sent" => {
            metrics::counter!("anxin_deliveries_total", "channel" => d.channel.clone(), "outcome" => "not_reached").increment(1);
            tracing::info!(delivery = %d.id, alarm = %d.alarm_id, contact = %d.contact_id, status = %status, "contact not reached");
            if let Err(e) = store
                .delivery_failed(&d, &format!("not reached: {status}"), now)
                .await
            {
                tracing::error!(error = %e, "recording an unreached delivery failed");
            }
            state.alarms.bus.delivery_changed(&d.alarm_id);
            state.alarms.delivery_wake.notify_one();
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "recording a delivery status failed"),
    }
    xml(twiml::empty())
}

/// Act on an alarm for the contact a delivery went to: 1 acknowledge, 2 on my way,
/// 9 false alarm. What to say back.
async fn act(state: &AppState, d: &Delivery, key: &str, via: &str) -> Option<String> {
    let lang = phone::language(d);
    let zh = lang == Language::ZhCn;
    let store = &state.alarms.store;
    // The person behind the contact, within whose scope the alarm must be.
    let account = match store.contact_account(&d.contact_id).await {
        Ok(Some(a)) => a,
        _ => {
            return Some(
                if zh {
                    "无法确认您的身份。"
                } else {
                    "We could not tell who you are."
                }
                .into(),
            )
        }
    };
    let alarm = store.alarm(&d.alarm_id).await.ok()?;
    if !account.scope.covers(&alarm) {
        return Some(
            if zh {
                "此警报不在您的范围内。"
            } else {
                "This alarm is outside your area."
            }
            .into(),
        );
    }
    let alarms = &state.alarms;
    let (result, action, done) = match key {
        "1" => (
            alarms
                .acknowledge(&d.alarm_id, &account.id, via, None)
                .await,
            "alarm.acknowledge",
            if zh {
                "已确认，谢谢。"
            } else {
                "Acknowledged. Thank you."
            },
        ),
        "2" => (
            alarms
                .respond(
                    &d.alarm_id,
                    &account.id,
                    via,
                    Progress::EnRoute {
                        eta_at: alarms.now() + PHONE_ETA_MINUTES * 60_000,
                    },
                    None,
                )
                .await,
            "alarm.en_route",
            if zh {
                "已记录您正在赶来，谢谢。"
            } else {
                "Noted: you are on your way. Thank you."
            },
        ),
        "9" => (
            alarms
                .resolve(
                    &d.alarm_id,
                    &account.id,
                    "false_alarm",
                    Some("false alarm (phone)"),
                )
                .await,
            "alarm.resolve",
            if zh {
                "已记录为误报。"
            } else {
                "Recorded as a false alarm."
            },
        ),
        _ => return None,
    };
    let outcome = match &result {
        Ok(_) => "allowed",
        Err(_) => "failed",
    };
    crate::authz::audit_as(
        state,
        &account.id,
        Some(via),
        action,
        &format!("alarm:{}", d.alarm_id),
        outcome,
        serde_json::json!({ "delivery": d.id }),
    )
    .await;
    Some(match result {
        Ok(_) => done.to_owned(),
        Err(StoreError::Conflict(_)) => if zh {
            "此警报已由他人处理。"
        } else {
            "Someone else has already handled this alarm."
        }
        .to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "acting on an alarm from a phone failed");
            if zh {
                "系统错误，请稍后再试。"
            } else {
                "Something went wrong; please try again."
            }
            .to_owned()
        }
    })
}

/// `POST /api/twilio/voice?d=<delivery>`: the key pressed (or none: the menu again).
pub(super) async fn voice(
    State(state): State<AppState>,
    Query(q): Query<DeliveryQuery>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (settings, params) = match signed(&state, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let Ok(g) = Gather::from_params(&params) else {
        return (StatusCode::BAD_REQUEST, "not a keypad post").into_response();
    };
    let store = &state.alarms.store;
    let Some(d) = q.d.as_deref() else {
        return xml(twiml::empty());
    };
    let Ok(Some(d)) = store.delivery(d).await else {
        return xml(twiml::say_and_hang_up(Language::default().into(), "再见。"));
    };
    let lang = phone::language(&d);
    let key = g.digits.as_deref().unwrap_or_default();
    if let Some(elder) = phone::elder_of(&d) {
        // The elder: 1 is "I am all right"; any other key, or none, tells the contacts.
        let ok = key == "1";
        if let Err(e) = state.alarms.elder_answered(&d.alarm_id, elder, ok).await {
            tracing::error!(error = %e, "recording the elder's answer failed");
        }
        let said = if ok {
            "好的，祝您平安。再见。"
        } else {
            "我们正在通知您的家人和社区，请保持电话畅通。"
        };
        return xml(twiml::say_and_hang_up(Language::ZhCn.into(), said));
    }
    match act(&state, &d, key, "voice").await {
        Some(said) => xml(twiml::say_and_hang_up(lang.into(), &said)),
        // Anything else (or no key): the menu again.
        None => {
            let action = settings.public_url(&format!("{}?d={}", phone::VOICE_PATH, d.id));
            xml(phone::call_twiml(&d, &action))
        }
    }
}

/// `POST /api/twilio/sms`: a reply to an alarm SMS (or call). Matched to the contact by
/// the sender's number and to the latest alarm sent to that contact that is still open.
pub(super) async fn sms(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, params) = match signed(&state, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let Ok(msg) = IncomingSms::from_params(&params) else {
        return (StatusCode::BAD_REQUEST, "not an incoming SMS").into_response();
    };
    let store = &state.alarms.store;
    let since = state.alarms.now() - 24 * 3_600_000;
    let d = match store.latest_open_delivery_to_phone(&msg.from, since).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            tracing::info!("sms reply matched no open alarm");
            return xml(reply(
                "【安心】没有找到需要处理的警报。/ No open alarm found for this number.",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "matching an sms reply failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
        }
    };
    let key = msg
        .body
        .trim()
        .chars()
        .next()
        .map(String::from)
        .unwrap_or_default();
    match act(&state, &d, &key, "sms").await {
        Some(said) => xml(reply(&format!("【安心】{said}"))),
        None => xml(reply(if phone::language(&d) == Language::ZhCn {
            "【安心】请回复1确认，2正在赶来，9误报。"
        } else {
            "[Anxin] Reply 1 to acknowledge, 2 if on your way, 9 if false alarm."
        })),
    }
}

/// `<Response><Message>text</Message></Response>`: the reply SMS.
fn reply(text: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>{}</Message></Response>"#,
        twiml::escape(text)
    )
}
