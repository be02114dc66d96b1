//! Who may publish and subscribe to what on the embedded broker: the same
//! rules as the Mosquitto setup in `deploy/mosquitto` (the bridge's role in
//! `init`, a locker's role in `locker_acls`, `provisioning.acl`).

use lockstep_wire::mqtt::topics::{self, LockerTopic};
use uuid::Uuid;

/// What a login is, once the broker has checked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The Lockstep server itself.
    Bridge,
    /// The shared provisioning account (a locker asking for credentials).
    Provisioning,
    /// A provisioned locker, with its own account.
    Locker(Uuid),
}

/// Whether `role` (connected as `client_id`) may publish to `topic`.
pub fn may_publish(role: Role, client_id: &str, topic: &str) -> bool {
    let _ = client_id;
    match role {
        // Commands and acks to any locker, replies to any provisioning client.
        Role::Bridge => {
            matches!(
                topics::parse_locker(topic),
                Ok((_, LockerTopic::Command | LockerTopic::Ack))
            ) || reply_client(topic).is_some()
        }
        Role::Provisioning => topic == topics::REGISTER,
        // Its own results and heartbeats only.
        Role::Locker(bank) => matches!(
            topics::parse_locker(topic),
            Ok((b, LockerTopic::Status | LockerTopic::State)) if b == bank
        ),
    }
}

/// Whether `role` (connected as `client_id`) may subscribe to `filter`.
pub fn may_subscribe(role: Role, client_id: &str, filter: &str) -> bool {
    match role {
        Role::Bridge => crate::mqtt::inbound_filters(false)
            .into_iter()
            .chain(crate::mqtt::inbound_filters(true))
            .any(|f| f == filter),
        // Its own reply, nothing else (`pattern read provisioning/%c/reply`);
        // a client id with wildcards would widen it.
        Role::Provisioning => {
            lockstep_wire::mqtt::valid_client_id(client_id)
                && filter == topics::provisioning_reply(client_id)
        }
        Role::Locker(bank) => {
            filter == topics::locker(bank, LockerTopic::Command)
                || filter == topics::locker(bank, LockerTopic::Ack)
        }
    }
}

/// The client id of a `provisioning/{client_id}/reply` topic.
fn reply_client(topic: &str) -> Option<&str> {
    let id = topic
        .strip_prefix("provisioning/")?
        .strip_suffix("/reply")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_reaches_its_own_topics_only() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let la = Role::Locker(a);
        let own = |kind| topics::locker(a, kind);
        let other = |kind| topics::locker(b, kind);
        assert!(may_publish(la, "x", &own(LockerTopic::Status)));
        assert!(may_publish(la, "x", &own(LockerTopic::State)));
        assert!(!may_publish(la, "x", &other(LockerTopic::Status)));
        assert!(!may_publish(la, "x", &own(LockerTopic::Command)));
        assert!(!may_publish(la, "x", &own(LockerTopic::Ack)));
        assert!(!may_publish(la, "x", topics::REGISTER));
        assert!(may_subscribe(la, "x", &own(LockerTopic::Command)));
        assert!(may_subscribe(la, "x", &own(LockerTopic::Ack)));
        assert!(!may_subscribe(la, "x", &other(LockerTopic::Command)));
        assert!(!may_subscribe(la, "x", "locker/+/command"));
        assert!(!may_subscribe(la, "x", "#"));

        let p = Role::Provisioning;
        assert!(!may_subscribe(p, "+", "provisioning/+/reply"));
        assert!(!may_subscribe(p, "#", "provisioning/#/reply"));
        assert!(may_publish(p, "prov-1-0123456789", topics::REGISTER));
        assert!(!may_publish(
            p,
            "prov-1-0123456789",
            &own(LockerTopic::Command)
        ));
        assert!(!may_publish(
            p,
            "prov-1-0123456789",
            &topics::provisioning_reply("prov-2-0123456789")
        ));
        assert!(may_subscribe(
            p,
            "prov-1-0123456789",
            &topics::provisioning_reply("prov-1-0123456789")
        ));
        assert!(!may_subscribe(
            p,
            "prov-1-0123456789",
            &topics::provisioning_reply("prov-2-0123456789")
        ));
        assert!(!may_subscribe(
            p,
            "prov-1-0123456789",
            "provisioning/+/reply"
        ));

        let s = Role::Bridge;
        assert!(may_publish(s, "srv", &own(LockerTopic::Command)));
        assert!(may_publish(s, "srv", &own(LockerTopic::Ack)));
        assert!(may_publish(
            s,
            "srv",
            &topics::provisioning_reply("prov-1-0123456789")
        ));
        assert!(!may_publish(s, "srv", &own(LockerTopic::Status)));
        assert!(may_subscribe(s, "srv", "locker/+/status"));
        assert!(may_subscribe(s, "srv", "$share/lockstep/locker/+/state"));
        assert!(!may_subscribe(s, "srv", "#"));
    }
}
