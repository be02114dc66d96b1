-- The event store, the sequenced channel log, the outbox of side effects,
-- durable timers, and the read models the projectors keep.

-- Every domain event, in commit order (`id` is the global position).
CREATE TABLE stored_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           TEXT NOT NULL UNIQUE,
    aggregate_type     TEXT NOT NULL,
    aggregate_uuid     TEXT NOT NULL,
    aggregate_version  INTEGER NOT NULL,
    event_type         TEXT NOT NULL,
    event_version      INTEGER NOT NULL,
    payload            TEXT NOT NULL,
    metadata           TEXT NOT NULL,
    occurred_at        INTEGER NOT NULL,
    UNIQUE (aggregate_uuid, aggregate_version)
);

-- The last seq handed out per channel: incremented inside the writing
-- transaction, so seqs are gap-free and never reused.
CREATE TABLE channel_heads (
    channel  TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
);

CREATE TABLE channel_log (
    channel      TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    event_id     TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, seq)
);
CREATE INDEX channel_log_age ON channel_log(occurred_at);

-- Side effects to run after commit, at least once.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL,
    reactor          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'done', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (event_id, reactor)
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);

-- Timers that survive restarts (e.g. an open command's timeout).
CREATE TABLE timers (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    due_at    INTEGER NOT NULL,
    fired_at  INTEGER
);
CREATE INDEX timers_due ON timers(fired_at, due_at);

CREATE TABLE idempotency_keys (
    user_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    command_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- Read models (rebuilt by `lockstep replay`).
CREATE TABLE locker_banks (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    serial        TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    location      TEXT,
    state         TEXT NOT NULL,
    online        INTEGER,  -- NULL until the locker is first heard from
    last_seen_at  INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX locker_banks_tenant ON locker_banks(tenant_id);

CREATE TABLE compartments (
    id                 TEXT PRIMARY KEY,
    bank_id            TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    number             INTEGER NOT NULL,
    size               TEXT NOT NULL,
    label              TEXT,
    latest_status      TEXT,
    latest_command_id  TEXT,
    updated_at         INTEGER NOT NULL,
    UNIQUE (bank_id, number)
);

CREATE TABLE grants (
    id              TEXT PRIMARY KEY,
    compartment_id  TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    valid_from      INTEGER,
    valid_until     INTEGER,
    revoked_at      INTEGER,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX grants_user ON grants(user_id);
CREATE INDEX grants_compartment ON grants(compartment_id);

CREATE TABLE open_requests (
    command_id      TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    compartment_id  TEXT NOT NULL,
    bank_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    override        INTEGER NOT NULL,
    override_reason TEXT,
    status          TEXT NOT NULL,
    denial_reason   TEXT,
    failure_reason  TEXT,
    late_result     TEXT,
    requested_at    INTEGER NOT NULL,
    authorized_at   INTEGER,
    denied_at       INTEGER,
    sent_at         INTEGER,
    opened_at       INTEGER,
    failed_at       INTEGER,
    late_result_at  INTEGER,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX open_requests_tenant ON open_requests(tenant_id, requested_at);
CREATE INDEX open_requests_user ON open_requests(user_id, requested_at);
