//! Provisioning, keys, broker accounts and decommissioning, against the
//! recording gateway, on SQLite and (with `LOCKSTEP_TEST_DATABASE_URL`)
//! PostgreSQL. The same flow over a real Mosquitto is in the server's
//! integration tests.

use std::sync::Arc;

use lockstep_core::{
    db::Db,
    error::CoreError,
    eventstore::channels::{self, Channel},
    eventstore::events::Actor,
    gateway::RecordingGateway,
    identity::accounts::{Role, User},
    identity::caller::Caller,
    identity::throttle::ThrottleConfig,
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    provisioning::{self, Registration, Reply},
    services::Services,
    testing::{fresh_database, TestDb},
    workers,
};
use uuid::Uuid;

struct World {
    _t: TestDb,
    s: Services,
    gateway: Arc<RecordingGateway>,
    admin: Caller,
}

async fn user(db: &Db, email: &str, role: Role, tenant: &str) -> User {
    lockstep_core::testing::add_user(db, email, role, tenant).await
}

async fn world() -> World {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let gateway = Arc::new(RecordingGateway::default());
    let s = Services::new(db.clone(), ThrottleConfig::default()).with_gateway(gateway.clone());
    let u = user(&db, "admin@a.io", Role::Admin, "A").await;
    let admin = Caller::new(u.clone(), Actor::User { id: u.id });
    World {
        _t: t,
        s,
        gateway,
        admin,
    }
}

fn compartments(n: i64) -> Vec<NewCompartment> {
    (1..=n)
        .map(|number| NewCompartment {
            number,
            size: "small".into(),
            label: None,
        })
        .collect()
}

fn registration(serial: &str, key: Option<&str>) -> Registration {
    Registration {
        client_id: format!("prov-{}", Uuid::now_v7().simple()),
        serial: serial.into(),
        name: None,
        model: Some("LX-4".into()),
        firmware: Some("1.2.3".into()),
        compartments: compartments(3),
        provisioning_key: key.map(str::to_string),
    }
}

async fn preregistered(w: &World) -> lockers::BankView {
    lockers::register_bank(
        &w.s,
        &w.admin,
        NewBank {
            serial: format!("SN-{}", Uuid::now_v7().simple()),
            name: "Lobby".into(),
            location: None,
            compartments: compartments(2),
        },
    )
    .await
    .expect("bank")
}

async fn bank_events(w: &World, bank_id: Uuid) -> Vec<String> {
    let since = channels::since(&w.s.db, &Channel::LockerBank(bank_id), 0, 100)
        .await
        .expect("since");
    since.events.iter().map(|e| e.event.clone()).collect()
}

async fn state(w: &World, bank_id: Uuid) -> String {
    lockers::get_bank(&w.s, w.admin.user.tenant_id, bank_id)
        .await
        .expect("get")
        .expect("bank")
        .state
}

#[tokio::test]
async fn a_preregistered_locker_provisions_step_by_step_and_its_first_heartbeat_completes_it() {
    let w = world().await;
    let bank = preregistered(&w).await;
    let reg = registration(&bank.serial, None);
    let reply = provisioning::provision(&w.s, reg.clone())
        .await
        .expect("provision");
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.locker_bank_id, Some(bank.id));
    let username = reply.username.clone().expect("username");
    let password = reply.password.clone().expect("password");
    assert_eq!(username, format!("locker-{}", bank.id));

    // The reply went to the locker's own reply topic, and says the same.
    let replies = w.gateway.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, reg.client_id);
    let sent: Reply = serde_json::from_slice(&replies[0].1).expect("reply json");
    assert_eq!(sent, reply);
    assert_eq!(w.gateway.accounts()[0].username, username);

    // Every step is on the bank's channel, in order.
    assert_eq!(
        bank_events(&w, bank.id).await,
        [
            "LockerBankRegistered",
            "LockerProvisioningRequested",
            "LockerProvisioningValidated",
            "LockerCredentialsCreated",
            "LockerCredentialsDelivered"
        ]
    );
    assert_eq!(state(&w, bank.id).await, "credentials_delivered");

    // The stored account admits exactly this client id and secret.
    assert!(
        provisioning::check_locker_login(&w.s, &username, &username, &password)
            .await
            .expect("login")
    );
    assert!(
        !provisioning::check_locker_login(&w.s, "other-id", &username, &password)
            .await
            .expect("login")
    );
    assert!(
        !provisioning::check_locker_login(&w.s, &username, &username, "guess")
            .await
            .expect("login")
    );

    lockers::heartbeat(&w.s, bank.id, now_ms())
        .await
        .expect("heartbeat");
    assert_eq!(state(&w, bank.id).await, "provisioned");
    let events = bank_events(&w, bank.id).await;
    assert_eq!(
        &events[5..],
        ["LockerWasProvisioned", "DeviceStatusChanged"]
    );

    // Provisioned: a second registration for the serial is refused, and the
    // bank stays provisioned.
    let again = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert_eq!(again.error.map(|e| e.as_str()), Some("already_provisioned"));
    assert!(again.password.is_none());
    assert_eq!(state(&w, bank.id).await, "provisioned");
    assert_eq!(w.gateway.accounts().len(), 1);
}

#[tokio::test]
async fn a_retried_registration_reuses_the_bank_and_account_with_a_fresh_secret() {
    let w = world().await;
    let bank = preregistered(&w).await;
    let reg = registration(&bank.serial, None);
    let first = provisioning::provision(&w.s, reg.clone())
        .await
        .expect("first");
    // The same session asking again (it missed the reply) gets the same
    // credentials: two replies never disagree.
    let retry = provisioning::provision(&w.s, reg).await.expect("retry");
    assert_eq!(
        (&retry.username, &retry.password),
        (&first.username, &first.password)
    );
    // A new session rotates the secret of the same account.
    let second = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("second");
    assert!(first.ok && second.ok);
    assert_eq!(first.locker_bank_id, second.locker_bank_id);
    assert_eq!(first.username, second.username);
    let user = second.username.clone().expect("user");
    assert!(provisioning::check_locker_login(
        &w.s,
        &user,
        &user,
        second.password.as_deref().expect("pw")
    )
    .await
    .expect("login"));
    assert!(
        !provisioning::check_locker_login(
            &w.s,
            &user,
            &user,
            first.password.as_deref().expect("pw")
        )
        .await
        .expect("login"),
        "the first secret is replaced"
    );
    let banks = lockers::list_banks(&w.s, w.admin.user.tenant_id)
        .await
        .expect("banks");
    assert_eq!(banks.len(), 1);
}

#[tokio::test]
async fn unknown_serials_need_a_live_key_of_the_tenant() {
    let w = world().await;
    let refused = provisioning::provision(&w.s, registration("SN-NEW-1", None))
        .await
        .expect("provision");
    assert_eq!(refused.error.map(|e| e.as_str()), Some("unknown_serial"));
    assert_eq!(refused.locker_bank_id, None);
    let forged = provisioning::provision(&w.s, registration("SN-NEW-1", Some("lpk_forged")))
        .await
        .expect("provision");
    assert_eq!(forged.error.map(|e| e.as_str()), Some("invalid_key"));
    assert!(w.gateway.accounts().is_empty());
    // Refusals are delivered too, so the locker knows.
    assert_eq!(w.gateway.replies().len(), 2);

    let (key, secret) = provisioning::create_key(&w.s, &w.admin, "factory line 1", None)
        .await
        .expect("key");
    let ok = provisioning::provision(&w.s, registration("SN-NEW-1", Some(&secret)))
        .await
        .expect("provision");
    assert!(ok.ok, "{ok:?}");
    let bank_id = ok.locker_bank_id.expect("bank");
    let bank = lockers::get_bank(&w.s, w.admin.user.tenant_id, bank_id)
        .await
        .expect("get")
        .expect("bank in the key's tenant");
    assert_eq!(bank.serial, "SN-NEW-1");
    assert_eq!(bank.compartments.len(), 3);

    // Invalid compartments are refused with a reason, and nothing is created.
    let mut bad = registration("SN-NEW-2", Some(&secret));
    bad.compartments[1].number = 1;
    let r = provisioning::provision(&w.s, bad).await.expect("provision");
    assert_eq!(r.error.map(|e| e.as_str()), Some("invalid_registration"));
    assert!(r.detail.unwrap_or_default().contains("appears twice"));

    provisioning::revoke_key(&w.s, &w.admin, key.id)
        .await
        .expect("revoke");
    let revoked = provisioning::provision(&w.s, registration("SN-NEW-3", Some(&secret)))
        .await
        .expect("provision");
    assert_eq!(revoked.error.map(|e| e.as_str()), Some("invalid_key"));
    assert_eq!(
        lockers::list_banks(&w.s, w.admin.user.tenant_id)
            .await
            .expect("banks")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_broker_failure_ends_in_a_visible_failed_state() {
    let w = world().await;
    let bank = preregistered(&w).await;
    w.gateway.fail_next(1);
    let reply = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert_eq!(reply.error.map(|e| e.as_str()), Some("broker_error"));
    assert!(reply.password.is_none());
    assert_eq!(state(&w, bank.id).await, "provisioning_failed");
    assert_eq!(
        bank_events(&w, bank.id).await.last().map(String::as_str),
        Some("LockerProvisioningFailed")
    );
    // The locker retries and succeeds.
    let retry = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert!(retry.ok);
    assert_eq!(state(&w, bank.id).await, "credentials_delivered");
}

#[tokio::test]
async fn decommissioning_disables_the_account_and_silences_the_locker() {
    let w = world().await;
    let bank = preregistered(&w).await;
    let reply = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    let user = reply.username.clone().expect("user");
    let password = reply.password.clone().expect("password");
    lockers::heartbeat(&w.s, bank.id, now_ms())
        .await
        .expect("heartbeat");

    provisioning::decommission(&w.s, &w.admin, bank.id, "end of lease")
        .await
        .expect("decommission");
    workers::run_outbox_once(&w.s, now_ms())
        .await
        .expect("outbox");
    assert_eq!(w.gateway.disabled(), std::slice::from_ref(&user));
    assert!(
        !provisioning::check_locker_login(&w.s, &user, &user, &password)
            .await
            .expect("login")
    );
    assert_eq!(state(&w, bank.id).await, "decommissioned");
    assert_eq!(
        lockers::heartbeat(&w.s, bank.id, now_ms())
            .await
            .expect("heartbeat"),
        None,
        "a decommissioned bank's heartbeats are refused"
    );
    let again = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert_eq!(again.error.map(|e| e.as_str()), Some("decommissioned"));
    assert!(provisioning::decommission(&w.s, &w.admin, bank.id, "twice")
        .await
        .is_err());
}

#[tokio::test]
async fn door_and_occupancy_reports_record_transitions_only() {
    use lockstep_core::lockers::CompartmentReport;
    let w = world().await;
    let bank = preregistered(&w).await;
    let report = |door_open, occupied| CompartmentReport {
        number: 1,
        door_open,
        occupied,
    };
    let count = |w: &World| {
        let s = w.s.clone();
        let id = bank.id;
        async move {
            channels::since(&s.db, &Channel::LockerBank(id), 0, 100)
                .await
                .expect("since")
                .events
                .iter()
                .filter(|e| {
                    e.event.starts_with("CompartmentDoor") || e.event.starts_with("CompartmentOcc")
                })
                .count()
        }
    };
    let unknown =
        lockers::compartment_report(&w.s, bank.id, &[report(Some(false), Some(true))], now_ms())
            .await
            .expect("report");
    assert!(unknown.is_empty());
    assert_eq!(count(&w).await, 2, "first report: both values become known");
    lockers::compartment_report(&w.s, bank.id, &[report(Some(false), Some(true))], now_ms())
        .await
        .expect("report");
    assert_eq!(count(&w).await, 2, "the same values again: no events");
    lockers::compartment_report(&w.s, bank.id, &[report(Some(true), None)], now_ms())
        .await
        .expect("report");
    assert_eq!(count(&w).await, 3, "the door opened: one event");
    let b = lockers::get_bank(&w.s, w.admin.user.tenant_id, bank.id)
        .await
        .expect("q")
        .expect("bank");
    assert_eq!(
        (b.compartments[0].door_open, b.compartments[0].occupied),
        (Some(true), Some(true))
    );
    let unknown = lockers::compartment_report(
        &w.s,
        bank.id,
        &[CompartmentReport {
            number: 99,
            door_open: Some(true),
            occupied: None,
        }],
        now_ms(),
    )
    .await
    .expect("report");
    assert_eq!(unknown, [99]);
}

/// Issue 12, fault 3: a provisioned locker that lost its credentials was
/// refused for good (`already_provisioned`, with no way to reset). An
/// admin's reset disables the old account and lets the next registration
/// provision it again, with new credentials; a decommissioned bank comes
/// back the same way.
#[tokio::test]
async fn a_reset_lets_a_provisioned_or_decommissioned_bank_provision_again() {
    let w = world().await;
    let bank = preregistered(&w).await;
    // Nothing to reset yet.
    assert!(matches!(
        provisioning::reset(&w.s, &w.admin, bank.id, "nothing").await,
        Err(CoreError::Conflict(_))
    ));
    let first = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    let old_user = first.username.clone().expect("user");
    let old_password = first.password.clone().expect("password");
    lockers::heartbeat(&w.s, bank.id, now_ms())
        .await
        .expect("heartbeat");
    assert_eq!(state(&w, bank.id).await, "provisioned");
    // The locker lost its flash: a new session is refused…
    let refused = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert_eq!(
        refused.error.map(|e| e.as_str()),
        Some("already_provisioned")
    );

    // …until an admin resets it (a user may not).
    let u = user(&w.s.db, "uma@a.io", Role::User, "A").await;
    let uma = Caller::new(u.clone(), Actor::User { id: u.id });
    assert!(matches!(
        provisioning::reset(&w.s, &uma, bank.id, "mine").await,
        Err(CoreError::Forbidden(_))
    ));
    provisioning::reset(&w.s, &w.admin, bank.id, "flash replaced")
        .await
        .expect("reset");
    assert_eq!(state(&w, bank.id).await, "registered");
    assert!(bank_events(&w, bank.id)
        .await
        .contains(&"LockerProvisioningReset".to_string()));
    workers::run_outbox_once(&w.s, now_ms())
        .await
        .expect("outbox");
    assert_eq!(w.gateway.disabled(), std::slice::from_ref(&old_user));
    assert!(
        !provisioning::check_locker_login(&w.s, &old_user, &old_user, &old_password)
            .await
            .expect("login"),
        "the old credentials are dead"
    );
    let again = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert!(again.ok, "{again:?}");
    let new_password = again.password.clone().expect("password");
    assert_ne!(new_password, old_password);
    assert!(
        provisioning::check_locker_login(&w.s, &old_user, &old_user, &new_password)
            .await
            .expect("login")
    );
    lockers::heartbeat(&w.s, bank.id, now_ms())
        .await
        .expect("heartbeat");
    assert_eq!(state(&w, bank.id).await, "provisioned");

    // Decommissioned, then recommissioned by a reset.
    provisioning::decommission(&w.s, &w.admin, bank.id, "moved")
        .await
        .expect("decommission");
    provisioning::reset(&w.s, &w.admin, bank.id, "back in service")
        .await
        .expect("reset");
    // Provisioned again before the two disable jobs run: they must not
    // disable the new account.
    let back = provisioning::provision(&w.s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert!(back.ok, "{back:?}");
    let back_password = back.password.clone().expect("password");
    workers::run_outbox_once(&w.s, now_ms())
        .await
        .expect("outbox");
    assert!(
        provisioning::check_locker_login(&w.s, &old_user, &old_user, &back_password)
            .await
            .expect("login"),
        "a late disable job leaves the new account alone"
    );
    lockers::heartbeat(&w.s, bank.id, now_ms())
        .await
        .expect("heartbeat");
    assert_eq!(state(&w, bank.id).await, "provisioned");
}

/// A gateway on which an admin decommissions the bank while its account is
/// being made: the attempt was admitted before, and finishes after.
struct Overtaken {
    inner: RecordingGateway,
    overtake: std::sync::OnceLock<(Services, Caller)>,
}

#[async_trait::async_trait]
impl lockstep_core::gateway::LockerGateway for Overtaken {
    async fn send_open(
        &self,
        command: &lockstep_core::gateway::OpenCommand,
    ) -> Result<(), lockstep_core::gateway::GatewayError> {
        self.inner.send_open(command).await
    }

    async fn create_account(
        &self,
        account: &lockstep_core::gateway::LockerAccount,
    ) -> Result<(), lockstep_core::gateway::GatewayError> {
        if let Some((s, admin)) = self.overtake.get() {
            // (Its disable job runs after the attempt: the bank's account
            // changes take turns.)
            provisioning::decommission(s, admin, account.bank_id, "stolen")
                .await
                .expect("decommission while the attempt runs");
        }
        self.inner.create_account(account).await
    }

    async fn disable_account(
        &self,
        username: &str,
    ) -> Result<(), lockstep_core::gateway::GatewayError> {
        self.inner.disable_account(username).await
    }

    async fn deliver_reply(
        &self,
        client_id: &str,
        reply: &[u8],
    ) -> Result<(), lockstep_core::gateway::GatewayError> {
        self.inner.deliver_reply(client_id, reply).await
    }
}

/// Review finding (issue 12): an attempt admitted before a decommission
/// used to record its credentials after it and re-enable the account, so
/// a decommissioned locker could log in again.
#[tokio::test]
async fn an_attempt_overtaken_by_a_decommission_leaves_no_live_account() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let gateway = Arc::new(Overtaken {
        inner: RecordingGateway::default(),
        overtake: std::sync::OnceLock::new(),
    });
    let s = Services::new(db.clone(), ThrottleConfig::default()).with_gateway(gateway.clone());
    let u = user(&db, "admin@a.io", Role::Admin, "A").await;
    let admin = Caller::new(u.clone(), Actor::User { id: u.id });
    let w = World {
        _t: t,
        s: s.clone(),
        gateway: Arc::new(RecordingGateway::default()),
        admin: admin.clone(),
    };
    let bank = preregistered(&w).await;
    let _ = gateway.overtake.set((s.clone(), admin));

    let reply = provisioning::provision(&s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert!(!reply.ok, "{reply:?}");
    assert_eq!(reply.error.map(|e| e.as_str()), Some("decommissioned"));
    assert_eq!(reply.password, None, "no credentials handed out");
    workers::run_outbox_once(&s, now_ms())
        .await
        .expect("outbox");
    // The account the attempt made is disabled again, in the broker and
    // for the embedded broker's login check.
    let username = format!("locker-{}", bank.id);
    let password = gateway
        .inner
        .accounts()
        .last()
        .expect("an account was made")
        .password
        .clone();
    assert!(
        !provisioning::check_locker_login(&s, &username, &username, &password)
            .await
            .expect("login"),
        "a decommissioned locker cannot log in"
    );
    assert_eq!(
        gateway.inner.disabled(),
        vec![username.clone(), username.clone()],
        "disabled by the attempt that found itself overtaken, and by the decommission's job"
    );
    assert_eq!(state(&w, bank.id).await, "decommissioned");
    let events = bank_events(&w, bank.id).await;
    assert!(
        !events.iter().any(|e| e == "LockerCredentialsCreated"),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("LockerProvisioningFailed")
    );
}

/// A gateway whose disable waits for a signal, recording the order of
/// account calls.
#[derive(Default)]
struct Gated {
    calls: std::sync::Mutex<Vec<&'static str>>,
    disabling: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Gated {
    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().expect("calls").clone()
    }
    fn note(&self, call: &'static str) {
        self.calls.lock().expect("calls").push(call);
    }
}

#[async_trait::async_trait]
impl lockstep_core::gateway::LockerGateway for Gated {
    async fn send_open(
        &self,
        _: &lockstep_core::gateway::OpenCommand,
    ) -> Result<(), lockstep_core::gateway::GatewayError> {
        Ok(())
    }
    async fn create_account(
        &self,
        _: &lockstep_core::gateway::LockerAccount,
    ) -> Result<(), lockstep_core::gateway::GatewayError> {
        self.note("create");
        Ok(())
    }
    async fn disable_account(&self, _: &str) -> Result<(), lockstep_core::gateway::GatewayError> {
        self.note("disable begins");
        self.disabling.notify_one();
        self.release.notified().await;
        self.note("disable ends");
        Ok(())
    }
    async fn deliver_reply(
        &self,
        _: &str,
        _: &[u8],
    ) -> Result<(), lockstep_core::gateway::GatewayError> {
        Ok(())
    }
}

/// Review finding (issue 12): a reset's disable job still on its way to
/// the broker, and the next registration's account made meanwhile, could
/// reach Mosquitto in the wrong order and leave the new account disabled.
/// One bank's account changes now take turns.
#[tokio::test]
async fn a_new_account_is_made_only_after_the_old_ones_disable_went_out() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let gateway = Arc::new(Gated::default());
    let s = Services::new(db.clone(), ThrottleConfig::default()).with_gateway(gateway.clone());
    let u = user(&db, "admin@a.io", Role::Admin, "A").await;
    let admin = Caller::new(u.clone(), Actor::User { id: u.id });
    let w = World {
        _t: t,
        s: s.clone(),
        gateway: Arc::new(RecordingGateway::default()),
        admin: admin.clone(),
    };
    let bank = preregistered(&w).await;
    let first = provisioning::provision(&s, registration(&bank.serial, None))
        .await
        .expect("provision");
    assert!(first.ok);
    lockers::heartbeat(&s, bank.id, now_ms())
        .await
        .expect("heartbeat");
    provisioning::reset(&s, &admin, bank.id, "flash replaced")
        .await
        .expect("reset");
    // The reset's disable job starts and hangs in the broker call.
    let job = tokio::spawn({
        let s = s.clone();
        async move { workers::run_outbox_once(&s, now_ms()).await }
    });
    gateway.disabling.notified().await;
    // The locker registers again meanwhile: admitted, then it waits for
    // the bank's turn instead of making its account now.
    let again = tokio::spawn({
        let s = s.clone();
        let serial = bank.serial.clone();
        async move { provisioning::provision(&s, registration(&serial, None)).await }
    });
    let mut feed = s.log_tail.subscribe();
    while !bank_events(&w, bank.id)
        .await
        .iter()
        .rev()
        .take(3)
        .any(|e| e == "LockerProvisioningValidated")
    {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), feed.recv()).await;
    }
    // Bounded look for a call that must not come while the disable hangs.
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        loop {
            if gateway.calls().contains(&"create") && gateway.calls().len() > 2 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "an account was made during the old one's disable: {:?}",
        gateway.calls()
    );
    gateway.release.notify_one();
    job.await.expect("job").expect("outbox");
    let reply = again.await.expect("task").expect("provision");
    assert!(reply.ok, "{reply:?}");
    assert_eq!(
        gateway.calls(),
        vec!["create", "disable begins", "disable ends", "create"],
        "the new account after the old one's disable"
    );
}
