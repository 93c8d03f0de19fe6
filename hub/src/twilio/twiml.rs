//! Voice TwiML, built as text with every piece of text and every attribute XML-escaped (an
//! elder's name or a place may hold `&` or `<`; a URL holds `&`).
//!
//! - [`menu`]: say what happened, then the keypad menu inside a `<Gather>` of one digit that
//!   Twilio posts to `action_url` (`Digits`); if no key is pressed, what [`NoInput`] says.
//! - [`say_and_hang_up`]: a sentence, then `<Hangup/>` (the answer to a key that ended the
//!   call: "acknowledged, thank you").
//!
//! Which voice speaks: `language` is always set (`zh-CN` by default); `voice` only if the
//! caller names one, otherwise Twilio uses the default voice configured for that language in
//! the account's text-to-speech settings (docs/operations.md).

use serde::{Deserialize, Serialize};

/// The language a call is spoken in; per contact, `zh-CN` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Language {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en-US")]
    EnUs,
}

impl Language {
    /// The `language` attribute of `<Say>`.
    pub fn code(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::EnUs => "en-US",
        }
    }

    /// `zh-CN`, `zh`, `zh_cn`, `en-US`, `en`, ... (case-insensitive); None for anything else.
    pub fn parse(s: &str) -> Option<Language> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        match s.as_str() {
            "zh" | "zh-cn" | "zh-hans" | "cmn-cn" => Some(Language::ZhCn),
            "en" | "en-us" => Some(Language::EnUs),
            _ => None,
        }
    }

    /// The alarm menu: 1 acknowledge, 2 on my way, 9 false alarm, anything else repeats.
    pub fn alarm_prompt(self) -> &'static str {
        match self {
            Language::ZhCn => "确认收到请按1，正在赶往请按2，误报请按9，重听请按其他键。",
            Language::EnUs => {
                "Press 1 to acknowledge, 2 if you are on your way, 9 if this is a false alarm. \
                 Press any other key to hear this message again."
            }
        }
    }

    /// Said when the menu ended without a key press.
    pub fn no_input(self) -> &'static str {
        match self {
            Language::ZhCn => "没有收到按键。",
            Language::EnUs => "We did not receive a key press.",
        }
    }

    pub fn goodbye(self) -> &'static str {
        match self {
            Language::ZhCn => "再见。",
            Language::EnUs => "Goodbye.",
        }
    }
}

/// How `<Say>` speaks: the language, and optionally a named voice (`Polly.Zhiyu`,
/// `Google.cmn-CN-Standard-A`, ...) that must speak that language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Speech<'a> {
    pub language: Language,
    pub voice: Option<&'a str>,
}

impl From<Language> for Speech<'_> {
    fn from(language: Language) -> Self {
        Speech {
            language,
            voice: None,
        }
    }
}

/// What happens when the `<Gather>` ends without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoInput<'a> {
    /// Say [`Language::no_input`], then `<Redirect method="POST">` here. Twilio's POST
    /// carries no `Digits`; the hub answers with the menu again (as many times as it
    /// allows) or hangs up.
    Redirect(&'a str),
    /// Say [`Language::goodbye`] and hang up.
    HangUp,
}

/// A keypad menu call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Menu<'a> {
    pub speech: Speech<'a>,
    /// What happened, spoken first ("紧急呼叫：张阿姨，幸福村3号，…").
    pub message: &'a str,
    /// The choices, spoken after the message, e.g. [`Language::alarm_prompt`]; a key may be
    /// pressed from the first word of the message on.
    pub prompt: &'a str,
    /// Where Twilio posts the key (`Digits`, `CallSid`), signed.
    pub action_url: &'a str,
    /// Seconds Twilio waits for a key after the last word.
    pub timeout_secs: u32,
    pub no_input: NoInput<'a>,
}

impl<'a> Menu<'a> {
    /// The alarm menu in `language`: `message`, then [`Language::alarm_prompt`]; 10 s for a
    /// key; without one, redirect to `action_url` (so the hub decides about repeating).
    pub fn alarm(language: Language, message: &'a str, action_url: &'a str) -> Menu<'a> {
        Menu {
            speech: language.into(),
            message,
            prompt: language.alarm_prompt(),
            action_url,
            timeout_secs: 10,
            no_input: NoInput::Redirect(action_url),
        }
    }
}

const XML_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The TwiML document for `menu`.
pub fn menu(menu: &Menu<'_>) -> String {
    let mut out = String::from(XML_HEAD);
    out.push_str("<Response>");
    out.push_str(&format!(
        r#"<Gather input="dtmf" numDigits="1" action="{}" method="POST" timeout="{}">"#,
        escape(menu.action_url),
        menu.timeout_secs
    ));
    say(&mut out, menu.speech, menu.message);
    say(&mut out, menu.speech, menu.prompt);
    out.push_str("</Gather>");
    match menu.no_input {
        NoInput::Redirect(url) => {
            say(&mut out, menu.speech, menu.speech.language.no_input());
            out.push_str(&format!(
                r#"<Redirect method="POST">{}</Redirect>"#,
                escape(url)
            ));
        }
        NoInput::HangUp => {
            say(&mut out, menu.speech, menu.speech.language.goodbye());
            out.push_str("<Hangup/>");
        }
    }
    out.push_str("</Response>");
    out
}

/// `<Say>text</Say><Hangup/>`.
pub fn say_and_hang_up(speech: Speech<'_>, text: &str) -> String {
    let mut out = String::from(XML_HEAD);
    out.push_str("<Response>");
    say(&mut out, speech, text);
    out.push_str("<Hangup/></Response>");
    out
}

/// An empty `<Response/>`: what a status callback or an SMS webhook answers when there is
/// nothing to say (Twilio sends no reply SMS for it).
pub fn empty() -> String {
    format!("{XML_HEAD}<Response/>")
}

fn say(out: &mut String, speech: Speech<'_>, text: &str) {
    out.push_str(&format!(r#"<Say language="{}""#, speech.language.code()));
    if let Some(voice) = speech.voice {
        out.push_str(&format!(r#" voice="{}""#, escape(voice)));
    }
    out.push('>');
    out.push_str(&escape(text));
    out.push_str("</Say>");
}

/// `text` safe as XML character data and as a quoted attribute value: the five special
/// characters escaped, and characters XML 1.0 does not allow at all (control characters
/// other than tab, newline and carriage return) dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_menu_in_chinese() {
        let twiml = menu(&Menu::alarm(
            Language::ZhCn,
            "紧急呼叫：张阿姨家。",
            "https://hub.example.org/twilio/gather?d=7&n=1",
        ));
        assert_eq!(
            twiml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
                r#"<Gather input="dtmf" numDigits="1" action="https://hub.example.org/twilio/gather?d=7&amp;n=1" method="POST" timeout="10">"#,
                r#"<Say language="zh-CN">紧急呼叫：张阿姨家。</Say>"#,
                r#"<Say language="zh-CN">确认收到请按1，正在赶往请按2，误报请按9，重听请按其他键。</Say>"#,
                r#"</Gather>"#,
                r#"<Say language="zh-CN">没有收到按键。</Say>"#,
                r#"<Redirect method="POST">https://hub.example.org/twilio/gather?d=7&amp;n=1</Redirect>"#,
                r#"</Response>"#
            )
        );
    }

    #[test]
    fn english_with_a_voice_and_hang_up_without_input() {
        let mut m = Menu::alarm(Language::EnUs, "Fall detected.", "https://h/g");
        m.speech.voice = Some("Polly.Joanna");
        m.no_input = NoInput::HangUp;
        m.timeout_secs = 5;
        let twiml = menu(&m);
        assert!(twiml.contains(r#"timeout="5""#), "{twiml}");
        assert!(
            twiml.contains(r#"<Say language="en-US" voice="Polly.Joanna">Fall detected.</Say>"#),
            "{twiml}"
        );
        assert!(twiml.contains("Press 1 to acknowledge"), "{twiml}");
        assert!(
            twiml.ends_with(
                r#"<Say language="en-US" voice="Polly.Joanna">Goodbye.</Say><Hangup/></Response>"#
            ),
            "{twiml}"
        );
        assert!(!twiml.contains("<Redirect"), "{twiml}");
    }

    #[test]
    fn text_and_attributes_are_escaped() {
        let twiml = menu(&Menu {
            speech: Speech {
                language: Language::ZhCn,
                voice: Some(r#"x" onload="y"#),
            },
            message: r#"Tom & Jerry <b>"quoted"</b> it's"#,
            prompt: "</Say><Hangup/>",
            action_url: r#"https://h/g?a=1&b="2""#,
            timeout_secs: 10,
            no_input: NoInput::Redirect("https://h/r?a=<1>"),
        });
        assert!(
            twiml.contains("Tom &amp; Jerry &lt;b&gt;&quot;quoted&quot;&lt;/b&gt; it&apos;s"),
            "{twiml}"
        );
        assert!(twiml.contains("&lt;/Say&gt;&lt;Hangup/&gt;"), "{twiml}");
        assert!(
            twiml.contains(r#"voice="x&quot; onload=&quot;y""#),
            "{twiml}"
        );
        assert!(
            twiml.contains(r#"action="https://h/g?a=1&amp;b=&quot;2&quot;""#),
            "{twiml}"
        );
        assert!(
            twiml.contains(">https://h/r?a=&lt;1&gt;</Redirect>"),
            "{twiml}"
        );
        // Exactly the tags the builder wrote, however hostile the text.
        assert_eq!(twiml.matches("<Say").count(), 3, "{twiml}");
        assert_eq!(twiml.matches("<Hangup").count(), 0, "{twiml}");
    }

    #[test]
    fn say_and_hang_up_and_empty() {
        assert_eq!(
            say_and_hang_up(Language::ZhCn.into(), "已确认，谢谢 & 再见"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="zh-CN">已确认，谢谢 &amp; 再见</Say><Hangup/></Response>"#
        );
        assert_eq!(
            empty(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#
        );
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(escape("a\u{0}b\u{7}c\td\ne"), "abc\td\ne");
    }

    #[test]
    fn languages() {
        assert_eq!(Language::default(), Language::ZhCn);
        for (s, want) in [
            ("zh-CN", Some(Language::ZhCn)),
            ("zh_cn", Some(Language::ZhCn)),
            ("ZH", Some(Language::ZhCn)),
            ("en-US", Some(Language::EnUs)),
            ("en", Some(Language::EnUs)),
            ("fr", None),
            ("", None),
        ] {
            assert_eq!(Language::parse(s), want, "{s}");
        }
        let parsed: Language = serde_json::from_str(r#""en-US""#).expect("serde");
        assert_eq!(parsed, Language::EnUs);
        assert_eq!(Language::EnUs.code(), "en-US");
    }
}
