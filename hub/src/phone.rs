//! SMS and voice over Twilio: the two delivery channels, and what they say.
//!
//! A call speaks the alarm (what, who, where; the contact's language, zh-CN by default)
//! and gathers one key: 1 acknowledge, 2 on my way, 9 false alarm; anything else repeats.
//! An SMS says the same in short with a link to the alarm on the board; a reply of 1, 2
//! or 9 does what the key does (`http::phone`). Status callbacks, keys and replies come
//! back to `/api/twilio/…` and are trusted only with a valid `X-Twilio-Signature`.
//! SMS carry no elder's name (they stay on phones and at carriers); calls say it.

use futures::future::BoxFuture;

use crate::delivery::{Channel, ChannelKind, SendError, Sent};
use crate::store::Delivery;
use crate::twilio::twiml::{self, Language, Menu};
use crate::twilio::{CallContent, Client, TwilioError, TwilioSettings};

/// Where Twilio posts a message's or call's status (`?d=<delivery id>`).
pub const STATUS_PATH: &str = "/api/twilio/status";
/// Where a call posts the key pressed (`?d=<delivery id>`).
pub const VOICE_PATH: &str = "/api/twilio/voice";
/// The "A message comes in" webhook of the hub's number.
pub const SMS_PATH: &str = "/api/twilio/sms";
/// Minutes of ETA assumed for "2 — on my way" from a phone.
pub const PHONE_ETA_MINUTES: i64 = 15;

/// The contact's language (`contacts.language`): zh-CN unless it says English.
pub fn language(job: &Delivery) -> Language {
    job.language
        .as_deref()
        .and_then(Language::parse)
        .unwrap_or_default()
}

/// The alarm on the board (issue 7 serves it).
pub fn board_link(settings: &TwilioSettings, alarm_id: &str) -> String {
    settings.public_url(&format!("/board/alarms/{alarm_id}"))
}

fn place(job: &Delivery) -> String {
    let village = job.village_name.as_deref().unwrap_or_default();
    match job.address.as_deref() {
        Some(a) if !a.is_empty() => format!("{village} {a}").trim().to_owned(),
        _ => village.to_owned(),
    }
}

/// The SMS text for a delivery: the alarm (a `notified` step) or who took it.
pub fn sms_text(job: &Delivery, link: &str) -> String {
    let lang = language(job);
    let place = place(job);
    let actor = job.step_actor.as_deref().unwrap_or("?");
    match (job.step_kind.as_str(), lang) {
        ("acknowledged" | "en_route" | "on_site", Language::ZhCn) => {
            format!("【安心】{}（{place}）已由 {actor} 处理，无需再赶来。{link}", job.title)
        }
        ("acknowledged" | "en_route" | "on_site", Language::EnUs) => format!(
            "[Anxin] {} ({place}) has been taken by {actor}; no need to go. {link}",
            job.title
        ),
        (_, Language::ZhCn) => format!(
            "【安心】{}：{place}。回复1确认，2正在赶来，9误报。{link}",
            job.title
        ),
        (_, Language::EnUs) => format!(
            "[Anxin] {}: {place}. Reply 1 to acknowledge, 2 if on your way, 9 if false alarm. {link}",
            job.title
        ),
    }
}

/// What a call says before the menu.
pub fn call_text(job: &Delivery) -> String {
    let place = place(job);
    let who = job.elder_name.as_deref().unwrap_or_default();
    match language(job) {
        Language::ZhCn => format!("安心紧急呼叫。{}。{who}，{place}。", job.title),
        Language::EnUs => format!("Anxin alarm. {}. {who}, {place}.", job.title),
    }
}

/// The elder a delivery calls to ask "are you all right?" (`elder:<id>`), if it is one.
pub fn elder_of(job: &Delivery) -> Option<&str> {
    job.contact_id.strip_prefix("elder:")
}

/// The call's TwiML, keys posted to `action`: for a contact, the message and the 1 / 2 / 9
/// menu; for the elder, "press 1 if you are all right".
pub fn call_twiml(job: &Delivery, action: &str) -> String {
    if elder_of(job).is_some() {
        // Elders are spoken to in Chinese (their language is not recorded).
        let lang = Language::ZhCn;
        let message = format!("您好，这里是安心平安服务。{}。", job.title);
        return twiml::menu(&Menu {
            prompt: "如果您一切安好，请按1。需要帮助，请按其他键，我们会马上通知您的家人和社区。",
            ..Menu::alarm(lang, &message, action)
        });
    }
    let text = call_text(job);
    twiml::menu(&Menu::alarm(language(job), &text, action))
}

fn send_error(e: TwilioError) -> SendError {
    SendError {
        retryable: e.retryable(),
        retry_after: e.retry_after(),
        message: e.to_string(),
    }
}

/// SMS or voice through one Twilio account.
pub struct TwilioChannel {
    kind: ChannelKind,
    client: Client,
    settings: TwilioSettings,
}

impl TwilioChannel {
    pub fn new(kind: ChannelKind, settings: &TwilioSettings) -> Result<Self, TwilioError> {
        Ok(TwilioChannel {
            kind,
            client: Client::new(settings)?,
            settings: settings.clone(),
        })
    }

    async fn deliver(&self, job: &Delivery) -> Result<Sent, SendError> {
        let Some(to) = job.phone.as_deref().filter(|p| !p.is_empty()) else {
            return Err(SendError {
                retryable: false,
                retry_after: None,
                message: "the contact has no phone number".into(),
            });
        };
        let status = self
            .settings
            .public_url(&format!("{STATUS_PATH}?d={}", job.id));
        let sent = match self.kind {
            ChannelKind::Voice => {
                let action = self
                    .settings
                    .public_url(&format!("{VOICE_PATH}?d={}", job.id));
                let twiml = call_twiml(job, &action);
                self.client
                    .place_call(to, CallContent::Twiml(&twiml), Some(&status), true)
                    .await
            }
            _ => {
                let text = sms_text(job, &board_link(&self.settings, &job.alarm_id));
                self.client.send_sms(to, &text, Some(&status)).await
            }
        }
        .map_err(send_error)?;
        Ok(Sent {
            provider_id: Some(sent.sid),
            status: Some(sent.status),
        })
    }
}

impl Channel for TwilioChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn send<'a>(&'a self, job: &'a Delivery) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.deliver(job))
    }
}
