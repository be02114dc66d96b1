//! Every MQTT topic Lockstep uses, built and parsed here only.

use uuid::Uuid;

use super::payloads::PayloadError;

/// Where lockers ask to be provisioned (the provisioning login).
pub const REGISTER: &str = "provisioning/register";
/// Mosquitto's dynamic-security control topic and its answers.
pub const DYNSEC: &str = "$CONTROL/dynamic-security/v1";
pub const DYNSEC_RESPONSE: &str = "$CONTROL/dynamic-security/v1/response";
/// The shared-subscription group of the server processes.
pub const SHARE_GROUP: &str = "$share/lockstep/";

wire_enum! {
    /// The topics under `locker/{bank_id}/`.
    pub enum LockerTopic ("locker topic") {
        /// Server → locker: an open command (QoS 1).
        Command = "command",
        /// Locker → server: a command's result.
        Status = "status",
        /// Locker → server: heartbeat with door and occupancy.
        State = "state",
        /// Server → locker: a result was recorded (QoS 1); the locker
        /// stops repeating it.
        Ack = "ack",
    }
}

/// `locker/{bank_id}/{kind}`.
pub fn locker(bank_id: Uuid, kind: LockerTopic) -> String {
    format!("locker/{bank_id}/{kind}")
}

/// `locker/+/{kind}`: the same topic of every bank.
pub fn every_locker(kind: LockerTopic) -> String {
    format!("locker/+/{kind}")
}

/// `provisioning/{client_id}/reply`: the one topic a provisioning client
/// may read.
pub fn provisioning_reply(client_id: &str) -> String {
    format!("provisioning/{client_id}/reply")
}

/// The bank and kind of a `locker/{bank_id}/{kind}` topic.
pub fn parse_locker(topic: &str) -> Result<(Uuid, LockerTopic), PayloadError> {
    let bad = || PayloadError::BadTopic(topic.chars().take(200).collect());
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("locker"), Some(id), Some(kind), None) => {
            // Only the canonical spelling (lowercase, hyphenated): the
            // broker's topic rules compare topics as text, so another
            // spelling of a bank's id must not reach it either.
            let bank = Uuid::parse_str(id).map_err(|_| bad())?;
            if bank.hyphenated().to_string() != id {
                return Err(bad());
            }
            Ok((bank, kind.parse().map_err(|_| bad())?))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_a_bank_and_a_kind() {
        let id = Uuid::now_v7();
        assert_eq!(
            parse_locker(&locker(id, LockerTopic::Status)).ok(),
            Some((id, LockerTopic::Status))
        );
        assert_eq!(locker(id, LockerTopic::State), format!("locker/{id}/state"));
        let upper = id.to_string().to_uppercase();
        for bad in [
            &format!("locker/{upper}/status"),
            &format!("locker/{}/status", id.simple()),
            &format!("locker/{{{id}}}/status"),
            &format!("locker/urn:uuid:{id}/status"),
            "locker/x/status",
            "locker/status",
            &format!("locker/{id}/status/extra"),
            &format!("locker/{id}/other"),
            &format!("other/{id}/status"),
        ] {
            assert!(parse_locker(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_topics_never_panic(topic in ".{0,300}") {
            let _ = parse_locker(&topic);
        }
    }
}
