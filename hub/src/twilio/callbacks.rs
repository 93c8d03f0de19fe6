//! What Twilio posts to the hub, as typed values. The order in a handler:
//!
//! 1. [`parse_form`] the raw body into name/value pairs;
//! 2. [`super::signature::verify`] them against the public URL and `X-Twilio-Signature`
//!    (refuse with 403 if it fails: nothing below is trustworthy before);
//! 3. read them with [`StatusCallback::from_params`], [`Gather::from_params`] or
//!    [`IncomingSms::from_params`].
//!
//! Unknown parameters are ignored (Twilio adds fields over time); unknown status values are
//! kept as `Other(text)` rather than refused, so a new Twilio status never loses a callback.
//! Types that hold phone numbers or message text print neither in `Debug`.

/// A form body that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("body is not an application/x-www-form-urlencoded form")]
    NotAForm,
    #[error("required parameter {0} is missing or empty")]
    Missing(&'static str),
}

/// The decoded name/value pairs of a form body, in the order sent (repeated names kept):
/// what [`super::signature::verify`] takes. Strict: a malformed `%` escape or a value that
/// is not UTF-8 once decoded refuses the body (a lenient decoder would sign other bytes
/// than Twilio did).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, CallbackError> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn decode(encoded: &[u8]) -> Result<String, CallbackError> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        match encoded[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    encoded.get(i + 1).copied().and_then(hex),
                    encoded.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(CallbackError::NotAForm);
                };
                bytes.push(hi << 4 | lo);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| CallbackError::NotAForm)
}

/// The first value of `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn non_empty<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    param(params, name).filter(|v| !v.trim().is_empty())
}

fn required(params: &[(String, String)], name: &'static str) -> Result<String, CallbackError> {
    non_empty(params, name)
        .map(str::to_owned)
        .ok_or(CallbackError::Missing(name))
}

fn number<T: std::str::FromStr>(params: &[(String, String)], name: &str) -> Option<T> {
    non_empty(params, name).and_then(|v| v.trim().parse().ok())
}

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            /// A value this code does not know (kept, never refused).
            Other(String),
        }

        impl $name {
            pub fn parse(text: &str) -> $name {
                match text.trim() {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }

            /// Twilio's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// `CallStatus` of a call.
    CallStatus {
        Queued = "queued",
        Initiated = "initiated",
        Ringing = "ringing",
        InProgress = "in-progress",
        Completed = "completed",
        Busy = "busy",
        NoAnswer = "no-answer",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl CallStatus {
    /// The call is over (Twilio sends nothing after it). `Completed` means it was answered
    /// *by someone or something*: check `answered_by` when machine detection was on.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::NoAnswer
                | CallStatus::Failed
                | CallStatus::Canceled
        )
    }
}

status_enum! {
    /// `MessageStatus` of an SMS.
    MessageStatus {
        Accepted = "accepted",
        Scheduled = "scheduled",
        Queued = "queued",
        Sending = "sending",
        Sent = "sent",
        Delivered = "delivered",
        Undelivered = "undelivered",
        Failed = "failed",
        Receiving = "receiving",
        Received = "received",
        Read = "read",
        Canceled = "canceled",
        PartiallyDelivered = "partially_delivered",
    }
}

impl MessageStatus {
    /// The message did not and will not reach the phone.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            MessageStatus::Undelivered | MessageStatus::Failed | MessageStatus::Canceled
        )
    }

    /// The carrier confirmed delivery. (Where carriers report no receipts, `sent` is the
    /// last status Twilio ever posts.)
    pub fn is_delivered(&self) -> bool {
        matches!(self, MessageStatus::Delivered | MessageStatus::Read)
    }
}

status_enum! {
    /// `AnsweredBy` (answering machine detection): who or what picked up.
    AnsweredBy {
        Human = "human",
        MachineStart = "machine_start",
        MachineEndBeep = "machine_end_beep",
        MachineEndSilence = "machine_end_silence",
        MachineEndOther = "machine_end_other",
        Fax = "fax",
        Unknown = "unknown",
    }
}

impl AnsweredBy {
    /// Voicemail or a fax: the person was not reached.
    pub fn is_machine(&self) -> bool {
        matches!(
            self,
            AnsweredBy::MachineStart
                | AnsweredBy::MachineEndBeep
                | AnsweredBy::MachineEndSilence
                | AnsweredBy::MachineEndOther
                | AnsweredBy::Fax
        )
    }
}

/// A status callback (the `StatusCallback` URL of a message or a call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusCallback {
    Message(MessageStatusCallback),
    Call(CallStatusCallback),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStatusCallback {
    /// `MessageSid` (`SM…`, as in `Sent::sid`).
    pub message_sid: String,
    pub status: MessageStatus,
    /// `ErrorCode` on `failed`/`undelivered` (30003 unreachable, 30005 unknown number, ...).
    pub error_code: Option<u32>,
    /// `AccountSid`: which account sent it (the hub's own, if the signature verified).
    pub account_sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStatusCallback {
    /// `CallSid` (`CA…`).
    pub call_sid: String,
    pub status: CallStatus,
    /// Only when the call was placed with machine detection, once it has decided.
    pub answered_by: Option<AnsweredBy>,
    /// `ErrorCode`, on some failures.
    pub error_code: Option<u32>,
    /// `CallDuration`, seconds, on the final callback.
    pub duration_secs: Option<u32>,
    /// `SequenceNumber`: callbacks of one call may arrive out of order; higher is later.
    pub sequence_number: Option<u32>,
    pub account_sid: Option<String>,
}

impl StatusCallback {
    /// A call's callback (it has `CallSid` and `CallStatus`) or a message's (`MessageSid`
    /// or the older `SmsSid`, with `MessageStatus` or `SmsStatus`).
    pub fn from_params(params: &[(String, String)]) -> Result<StatusCallback, CallbackError> {
        let account_sid = non_empty(params, "AccountSid").map(str::to_owned);
        let error_code = number(params, "ErrorCode");
        if let (Some(call_sid), Some(status)) = (
            non_empty(params, "CallSid"),
            non_empty(params, "CallStatus"),
        ) {
            return Ok(StatusCallback::Call(CallStatusCallback {
                call_sid: call_sid.to_owned(),
                status: CallStatus::parse(status),
                answered_by: non_empty(params, "AnsweredBy").map(AnsweredBy::parse),
                error_code,
                duration_secs: number(params, "CallDuration"),
                sequence_number: number(params, "SequenceNumber"),
                account_sid,
            }));
        }
        let message_sid = non_empty(params, "MessageSid")
            .or_else(|| non_empty(params, "SmsSid"))
            .ok_or(CallbackError::Missing("MessageSid or CallSid"))?;
        let status = non_empty(params, "MessageStatus")
            .or_else(|| non_empty(params, "SmsStatus"))
            .ok_or(CallbackError::Missing("MessageStatus"))?;
        Ok(StatusCallback::Message(MessageStatusCallback {
            message_sid: message_sid.to_owned(),
            status: MessageStatus::parse(status),
            error_code,
            account_sid,
        }))
    }

    /// The sid of the message or call, as returned in `Sent::sid`.
    pub fn sid(&self) -> &str {
        match self {
            StatusCallback::Message(m) => &m.message_sid,
            StatusCallback::Call(c) => &c.call_sid,
        }
    }
}

/// Twilio's post to a `<Gather>` action (or to a `<Redirect>` after it, which has no
/// `Digits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    pub call_sid: String,
    /// The key(s) pressed; None when the menu ended without a key.
    pub digits: Option<String>,
    /// `AnsweredBy`, if the call was placed with machine detection.
    pub answered_by: Option<AnsweredBy>,
    pub account_sid: Option<String>,
}

impl Gather {
    pub fn from_params(params: &[(String, String)]) -> Result<Gather, CallbackError> {
        Ok(Gather {
            call_sid: required(params, "CallSid")?,
            digits: non_empty(params, "Digits").map(|d| d.trim().to_owned()),
            answered_by: non_empty(params, "AnsweredBy").map(AnsweredBy::parse),
            account_sid: non_empty(params, "AccountSid").map(str::to_owned),
        })
    }
}

/// An SMS someone sent to the hub's number (the number's "A message comes in" webhook).
#[derive(Clone, PartialEq, Eq)]
pub struct IncomingSms {
    /// `MessageSid` (`SM…`): the same for Twilio's retries of one message.
    pub message_sid: String,
    /// The sender, E.164: matched to a contact. Personal data: never log it.
    pub from: String,
    /// The hub's number it was sent to.
    pub to: String,
    /// The text as typed (may be empty, e.g. a picture message).
    pub body: String,
    pub account_sid: Option<String>,
}

impl IncomingSms {
    pub fn from_params(params: &[(String, String)]) -> Result<IncomingSms, CallbackError> {
        Ok(IncomingSms {
            message_sid: non_empty(params, "MessageSid")
                .or_else(|| non_empty(params, "SmsSid"))
                .map(str::to_owned)
                .ok_or(CallbackError::Missing("MessageSid"))?,
            from: required(params, "From")?,
            to: required(params, "To")?,
            body: param(params, "Body").unwrap_or_default().to_owned(),
            account_sid: non_empty(params, "AccountSid").map(str::to_owned),
        })
    }
}

impl std::fmt::Debug for IncomingSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingSms")
            .field("message_sid", &self.message_sid)
            .field("from", &"<redacted>")
            .field("to", &"<redacted>")
            .field("body_chars", &self.body.chars().count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Vec<(String, String)> {
        parse_form(body.as_bytes()).expect("form")
    }

    #[test]
    fn message_status_callbacks() {
        let p = form(
            "SmsSid=SM1&SmsStatus=undelivered&MessageStatus=undelivered&To=%2B8613800138000\
             &MessageSid=SM1&AccountSid=AC1&From=%2B15005550006&ApiVersion=2010-04-01&ErrorCode=30003",
        );
        assert_eq!(
            StatusCallback::from_params(&p),
            Ok(StatusCallback::Message(MessageStatusCallback {
                message_sid: "SM1".into(),
                status: MessageStatus::Undelivered,
                error_code: Some(30003),
                account_sid: Some("AC1".into()),
            }))
        );
        // The older names alone, and a status this code does not know.
        let p = form("SmsSid=SM2&SmsStatus=delivered");
        let cb = StatusCallback::from_params(&p).expect("parses");
        assert_eq!(cb.sid(), "SM2");
        let StatusCallback::Message(m) = cb else {
            panic!()
        };
        assert!(m.status.is_delivered() && !m.status.is_failure());
        let p = form("MessageSid=SM3&MessageStatus=teleported");
        let StatusCallback::Message(m) = StatusCallback::from_params(&p).expect("parses") else {
            panic!()
        };
        assert_eq!(m.status, MessageStatus::Other("teleported".into()));
        assert_eq!(m.status.to_string(), "teleported");
    }

    #[test]
    fn call_status_callbacks() {
        let p = form(
            "CallSid=CA1&CallStatus=completed&AnsweredBy=machine_end_beep&CallDuration=12\
             &SequenceNumber=2&AccountSid=AC1&To=%2B8613800138000&From=%2B15005550006",
        );
        let cb = StatusCallback::from_params(&p).expect("parses");
        assert_eq!(cb.sid(), "CA1");
        let StatusCallback::Call(c) = cb else {
            panic!("{cb:?}")
        };
        assert_eq!(c.status, CallStatus::Completed);
        assert!(c.status.is_final());
        assert_eq!(c.answered_by, Some(AnsweredBy::MachineEndBeep));
        assert!(c.answered_by.as_ref().is_some_and(AnsweredBy::is_machine));
        assert_eq!(c.duration_secs, Some(12));
        assert_eq!(c.sequence_number, Some(2));
        assert_eq!(c.error_code, None);

        for (text, status, is_final) in [
            ("no-answer", CallStatus::NoAnswer, true),
            ("busy", CallStatus::Busy, true),
            ("failed", CallStatus::Failed, true),
            ("canceled", CallStatus::Canceled, true),
            ("in-progress", CallStatus::InProgress, false),
            ("ringing", CallStatus::Ringing, false),
        ] {
            let p = form(&format!("CallSid=CA2&CallStatus={text}"));
            let Ok(StatusCallback::Call(c)) = StatusCallback::from_params(&p) else {
                panic!("{text}")
            };
            assert_eq!(c.status, status);
            assert_eq!(c.status.is_final(), is_final, "{text}");
            assert_eq!(c.status.as_str(), text);
            assert_eq!(c.answered_by, None);
        }
        assert!(AnsweredBy::parse("human") == AnsweredBy::Human && !AnsweredBy::Human.is_machine());
    }

    #[test]
    fn refused_callbacks() {
        assert_eq!(
            StatusCallback::from_params(&form("AccountSid=AC1")),
            Err(CallbackError::Missing("MessageSid or CallSid"))
        );
        assert_eq!(
            StatusCallback::from_params(&form("MessageSid=SM1")),
            Err(CallbackError::Missing("MessageStatus"))
        );
        assert_eq!(
            Gather::from_params(&form("Digits=1")),
            Err(CallbackError::Missing("CallSid"))
        );
        assert_eq!(
            IncomingSms::from_params(&form("MessageSid=SM1&To=%2B1&Body=1")),
            Err(CallbackError::Missing("From"))
        );
        assert_eq!(parse_form(b"a=%FF%FE"), Err(CallbackError::NotAForm));
        assert_eq!(parse_form(b"a=%2"), Err(CallbackError::NotAForm));
        assert_eq!(parse_form(b"a=%zz"), Err(CallbackError::NotAForm));
    }

    #[test]
    fn gather() {
        let g = Gather::from_params(&form("CallSid=CA1&Digits=1&AccountSid=AC1&FinishedOnKey="))
            .expect("parses");
        assert_eq!(g.digits.as_deref(), Some("1"));
        assert_eq!(g.call_sid, "CA1");
        // After a <Redirect> (no key pressed) there is no Digits, or an empty one.
        for body in ["CallSid=CA1", "CallSid=CA1&Digits="] {
            assert_eq!(
                Gather::from_params(&form(body)).expect("parses").digits,
                None
            );
        }
    }

    #[test]
    fn incoming_sms_and_its_debug() {
        let p = form(
            "ToCountry=CN&SmsMessageSid=SM9&NumMedia=0&SmsSid=SM9&SmsStatus=received\
             &Body=1+%E6%94%B6%E5%88%B0&To=%2B15005550006&NumSegments=1&MessageSid=SM9\
             &AccountSid=AC1&From=%2B8613800138000&ApiVersion=2010-04-01",
        );
        let sms = IncomingSms::from_params(&p).expect("parses");
        assert_eq!(sms.message_sid, "SM9");
        assert_eq!(sms.from, "+8613800138000");
        assert_eq!(sms.to, "+15005550006");
        assert_eq!(sms.body, "1 收到");
        let debug = format!("{sms:?}");
        assert!(
            !debug.contains("8613800138000") && !debug.contains("收到"),
            "{debug}"
        );
        let empty =
            IncomingSms::from_params(&form("MessageSid=SM8&From=%2B1234567890&To=%2B1234567891"))
                .expect("a picture message has no Body");
        assert_eq!(empty.body, "");
    }

    #[test]
    fn forms_decode_like_serde_urlencoded() {
        let body =
            b"To=%2B8613800138000&Body=1+%E6%94%B6%E5%88%B0+%26+%3Cok%3E&Empty=&Bare&&X=a%3Db";
        let ours = parse_form(body).expect("parses");
        let theirs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).expect("parses");
        assert_eq!(ours, theirs);
        assert_eq!(param(&ours, "Body"), Some("1 收到 & <ok>"));
        assert_eq!(param(&ours, "Bare"), Some(""));
        assert_eq!(param(&ours, "X"), Some("a=b"));
        assert_eq!(parse_form(b""), Ok(vec![]));
    }

    #[test]
    fn repeated_names_are_kept_for_the_signature() {
        let p = form("StatusCallbackEvent=answered&StatusCallbackEvent=completed");
        assert_eq!(p.len(), 2);
        assert_eq!(param(&p, "StatusCallbackEvent"), Some("answered"));
    }
}
