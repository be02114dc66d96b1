//! Where the client is in each channel's log: the last `seq` delivered.
//! It deduplicates (an envelope at or below the cursor was delivered
//! already, whichever transport brings it again) and is the `seq` a
//! resubscribe or a poll resumes after.

use std::collections::HashMap;

#[derive(Clone, Debug, Default)]
pub struct Cursors {
    at: HashMap<String, i64>,
}

impl Cursors {
    /// Starts following `channel` after `seq`, unless it is followed
    /// already (its cursor then stays, so nothing is skipped for the
    /// others following it).
    pub fn follow(&mut self, channel: &str, seq: i64) {
        self.at.entry(channel.to_string()).or_insert(seq);
    }

    pub fn forget(&mut self, channel: &str) {
        self.at.remove(channel);
    }

    pub fn get(&self, channel: &str) -> Option<i64> {
        self.at.get(channel).copied()
    }

    /// True when the envelope at `seq` is new on `channel` (and moves the
    /// cursor to it); false for a duplicate or an unfollowed channel.
    pub fn accept(&mut self, channel: &str, seq: i64) -> bool {
        match self.at.get_mut(channel) {
            Some(at) if seq > *at => {
                *at = seq;
                true
            }
            _ => false,
        }
    }

    /// After a reset: follow from the head the hub or the log named.
    pub fn reset(&mut self, channel: &str, seq: i64) {
        if let Some(at) = self.at.get_mut(channel) {
            *at = seq;
        }
    }

    pub fn channels(&self) -> impl Iterator<Item = (&str, i64)> {
        self.at.iter().map(|(c, s)| (c.as_str(), *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_seq_is_delivered_once_whatever_brings_it() {
        let mut c = Cursors::default();
        assert!(!c.accept("a", 1), "not followed");
        c.follow("a", 3);
        assert!(
            !c.accept("a", 3),
            "at the cursor: seen when the page rendered"
        );
        assert!(c.accept("a", 4));
        assert!(!c.accept("a", 4), "the poll brings it again");
        assert!(c.accept("a", 5));
        c.follow("a", 1);
        assert_eq!(c.get("a"), Some(5), "a second follower does not rewind");
        c.reset("a", 90);
        assert!(!c.accept("a", 60));
        assert!(c.accept("a", 91));
        c.forget("a");
        assert_eq!(c.get("a"), None);
    }
}
