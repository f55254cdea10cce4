//! The wire format of server-sent events: [`SseEvent`], event ids, valid channel names, and
//! [`Encoded`], an event encoded once and shared by every subscriber.

use std::sync::Arc;

use axum::body::Bytes;

/// Longest channel name (and event key).
pub const MAX_CHANNEL_LEN: usize = 128;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event id (`<ms>-<seq>`), empty for events a handler streams without one.
    pub id: String,
    /// The event name; `message` is sent without an `event:` line (htmx swaps those).
    pub event: String,
    /// The payload, often rendered HTML.
    pub data: String,
}

impl SseEvent {
    /// An event without an id, for handlers that stream their own events.
    pub fn new(event: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            id: String::new(),
            event: event.into(),
            data: data.into(),
        }
    }

    pub(super) fn encode(&self) -> Bytes {
        encode(&self.id, &self.event, &self.data)
    }
}

/// The wire form of an event: `data:` lines (line breaks normalised), `id:`, `event:` unless
/// it is `message`, and a blank line.
pub(super) fn encode(id: &str, event: &str, data: &str) -> Bytes {
    let data: std::borrow::Cow<'_, str> = if data.contains('\r') {
        data.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        data.into()
    };
    let mut out = String::with_capacity(data.len() + id.len() + event.len() + 32);
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    if !id.is_empty() {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if !event.is_empty() && event != "message" {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// True for names of 1 to 128 characters from `A-Z a-z 0-9 - : _ .`.
pub fn valid_channel(name: &str) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_' | b'.'))
}

pub(super) fn channel_error(what: &str, name: &str) -> crate::error::Error {
    let shown: String = name.chars().take(40).collect();
    crate::error::Error::bad_request(format!(
        "invalid SSE {what} {shown:?}: use 1 to {MAX_CHANNEL_LEN} characters from A-Z a-z 0-9 - : _ ."
    ))
}

/// An event id: milliseconds and a sequence number, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EventId(pub(super) u64, pub(super) u64);

impl EventId {
    pub(super) fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

/// A broadcast event, encoded once and shared by every subscriber and the replay buffer.
pub(super) struct Encoded {
    pub(super) id: Option<EventId>,
    pub(super) key: Option<Box<str>>,
    pub(super) wire: Bytes,
}

impl Encoded {
    pub(super) fn new(id: &str, event: &str, key: &str, data: &str) -> Arc<Self> {
        Arc::new(Self {
            id: EventId::parse(id),
            key: (!key.is_empty()).then(|| key.into()),
            wire: encode(id, event, data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert!(valid_channel("notes"));
        assert!(valid_channel("room:42.a_b-c"));
        assert!(valid_channel(&"x".repeat(128)));
        assert!(!valid_channel(""));
        assert!(!valid_channel(&"x".repeat(129)));
        assert!(!valid_channel("a b"));
        assert!(!valid_channel("a/b"));
        assert!(!valid_channel("é"));
    }

    #[test]
    fn event_ids_order() {
        assert!(EventId::parse("5-1") > EventId::parse("5-0"));
        assert!(EventId::parse("6-0") > EventId::parse("5-9"));
        assert_eq!(EventId::parse("7"), Some(EventId(7, 0)));
        assert_eq!(EventId::parse("x"), None);
    }

    #[test]
    fn encoding_matches_the_sse_format() {
        assert_eq!(
            encode("1-0", "headline", "a\r\nb\rc"),
            "data: a\ndata: b\ndata: c\nid: 1-0\nevent: headline\n\n"
        );
        assert_eq!(encode("", "message", ""), "data: \n\n");
    }
}
