//! Deduplication and rate limiting of Events, with the clock passed in: no I/O, so the
//! rules are tested alone. A notice for an object, reason and message published in the last
//! [`REMEMBERED_FOR`] is counted on that Event; a new one draws a token from a bucket of
//! [`BURST`] refilled every [`REFILL_EVERY`], and is dropped when there is none.

use std::collections::HashMap;
use std::time::Instant;

use super::{BURST, EventReason, REFILL_EVERY, REMEMBERED_FOR, SERIES_WRITE_INTERVAL};

/// What identifies an Event for deduplication: the object, the reason and the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EventKey {
    pub(crate) kind: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) reason: EventReason,
    pub(crate) note: String,
}

/// A published Event, as remembered.
#[derive(Debug, Clone)]
struct Published {
    /// Its namespace and name, for the series patch.
    namespace: String,
    name: String,
    /// Occurrences seen, and how many of them are written.
    count: i32,
    written: i32,
    last_seen: Instant,
    last_written: Instant,
}

/// What to do with a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Make a new Event.
    Create,
    /// Counted on the Event already made; written with the next series update.
    Counted,
    /// Over the rate limit: dropped.
    Drop,
}

/// Deduplication and rate limiting, with the clock passed in (no I/O, so it is tested alone).
#[derive(Debug)]
pub(crate) struct EventBook {
    published: HashMap<EventKey, Published>,
    tokens: u32,
    refilled: Instant,
}

// === impl EventBook ===

impl EventBook {
    pub(crate) fn new(now: Instant) -> Self {
        EventBook {
            published: HashMap::new(),
            tokens: BURST,
            refilled: now,
        }
    }

    /// Decides on a notice for `key` seen at `now`.
    pub(crate) fn on_notice(&mut self, key: &EventKey, now: Instant) -> Step {
        self.published
            .retain(|_, published| now.duration_since(published.last_seen) < REMEMBERED_FOR);
        if let Some(published) = self.published.get_mut(key) {
            published.count += 1;
            published.last_seen = now;
            return Step::Counted;
        }
        let refills = now.duration_since(self.refilled).as_millis() / REFILL_EVERY.as_millis();
        if refills > 0 {
            self.tokens = BURST.min(self.tokens.saturating_add(u32::try_from(refills).unwrap_or(BURST)));
            self.refilled = now;
        }
        if self.tokens == 0 {
            return Step::Drop;
        }
        self.tokens -= 1;
        Step::Create
    }

    /// Remembers the Event made for `key`.
    pub(crate) fn created(&mut self, key: EventKey, namespace: String, name: String, now: Instant) {
        self.published.insert(
            key,
            Published {
                namespace,
                name,
                count: 1,
                written: 1,
                last_seen: now,
                last_written: now,
            },
        );
    }

    /// The Events whose count is due to be written: `(namespace, name, count)`, marked written.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(String, String, i32)> {
        self.published
            .values_mut()
            .filter(|published| {
                published.count > published.written
                    && now.duration_since(published.last_written) >= SERIES_WRITE_INTERVAL
            })
            .map(|published| {
                published.written = published.count;
                published.last_written = now;
                (published.namespace.clone(), published.name.clone(), published.count)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(note: &str) -> EventKey {
        EventKey {
            kind: "Deployment".into(),
            namespace: "team".into(),
            name: "web".into(),
            reason: EventReason::ProxyResourcesAdjusted,
            note: note.into(),
        }
    }

    #[test]
    fn repeats_are_counted_on_one_event_and_written_at_most_once_per_interval() {
        let start = Instant::now();
        let mut book = EventBook::new(start);
        assert_eq!(book.on_notice(&key("a"), start), Step::Create);
        book.created(key("a"), "team".into(), "web.1".into(), start);
        // Another message on the same object is another Event.
        assert_eq!(book.on_notice(&key("b"), start), Step::Create);
        assert_eq!(book.on_notice(&key("a"), start), Step::Counted);
        assert_eq!(book.on_notice(&key("a"), start), Step::Counted);
        assert!(book.due(start + Duration::from_secs(1)).is_empty(), "written too soon");
        let later = start + SERIES_WRITE_INTERVAL;
        assert_eq!(book.due(later), [("team".to_string(), "web.1".to_string(), 3)]);
        assert!(
            book.due(later + SERIES_WRITE_INTERVAL).is_empty(),
            "nothing new to write"
        );
        // Forgotten after a quiet spell: the next one is a new Event.
        let quiet = later + REMEMBERED_FOR;
        assert_eq!(book.on_notice(&key("a"), quiet), Step::Create);
    }

    #[test]
    fn new_events_past_the_burst_are_dropped_until_the_bucket_refills() {
        let start = Instant::now();
        let mut book = EventBook::new(start);
        for index in 0..BURST {
            assert_eq!(book.on_notice(&key(&index.to_string()), start), Step::Create);
        }
        assert_eq!(book.on_notice(&key("over"), start), Step::Drop);
        assert_eq!(book.on_notice(&key("over"), start + REFILL_EVERY), Step::Create);
        assert_eq!(book.on_notice(&key("over again"), start + REFILL_EVERY), Step::Drop);
    }
}
