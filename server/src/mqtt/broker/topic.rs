//! MQTT topic names and filters: what is valid, what matches what, and
//! the `$share/{group}/` prefix of shared subscriptions.

/// The longest topic or filter taken (Mosquitto's limit is the 65,535 of
/// the wire; nothing Lockstep uses comes near this).
pub const MAX_TOPIC: usize = 1024;

/// A topic a client may publish to: not empty, no wildcards, no NUL.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC && !topic.contains(['+', '#', '\0'])
}

/// A subscription filter: `+` only as a whole level, `#` only as the
/// whole last level; a `$share/{group}/` prefix with a valid filter after.
pub fn valid_filter(filter: &str) -> bool {
    let (_, filter) = split_share(filter);
    if filter.is_empty() || filter.len() > MAX_TOPIC || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == levels.len() - 1,
        l => !l.contains(['+', '#']),
    })
}

/// `$share/{group}/{filter}` → (`Some(group)`, `filter`); any other
/// filter → (`None`, itself). A malformed share (no group or no filter)
/// is returned whole, and is then not a valid filter.
pub fn split_share(filter: &str) -> (Option<&str>, &str) {
    match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, f)) if !group.is_empty() && !group.contains(['+', '#']) => {
                (Some(group), f)
            }
            _ => (None, ""),
        },
        None => (None, filter),
    }
}

/// Whether the filter has wildcards (otherwise it matches one topic).
pub fn has_wildcards(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Whether `topic` matches `filter` (MQTT 3.1.1 §4.7): a wildcard first
/// level never matches a `$` topic.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_spec_says() {
        assert!(matches("locker/+/status", "locker/abc/status"));
        assert!(!matches("locker/+/status", "locker/abc/state"));
        assert!(!matches("locker/+/status", "locker/a/b/status"));
        assert!(matches("locker/#", "locker/a/b"));
        assert!(matches("locker/#", "locker"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn filters_and_topics_are_validated() {
        assert!(valid_filter("locker/+/status"));
        assert!(valid_filter("$share/g/locker/+/status"));
        assert!(valid_filter("#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b+"));
        assert!(!valid_filter(""));
        assert!(!valid_filter("$share/g"));
        assert!(!valid_filter("$share//x"));
        assert!(valid_topic("locker/x/status"));
        assert!(!valid_topic("locker/+/status"));
        assert!(!valid_topic(""));
        assert_eq!(split_share("$share/g/a/b"), (Some("g"), "a/b"));
        assert_eq!(split_share("a/b"), (None, "a/b"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_filters_and_topics_never_panic(f in ".{0,40}", t in ".{0,40}") {
            let _ = valid_filter(&f);
            let _ = valid_topic(&t);
            let _ = matches(&f, &t);
        }
    }
}
