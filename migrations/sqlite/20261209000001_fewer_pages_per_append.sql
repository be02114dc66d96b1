-- The event store's positions, the outbox's ids and the channel bodies'
-- ids are plain rowids (the table's largest plus one) rather than
-- AUTOINCREMENT's: no event or outbox row is ever deleted, and a body is
-- deleted only with every log row that points at it, so the ids are the
-- same, and a transaction no longer writes `sqlite_sequence`'s page too
-- (docs/benchmarks.md, "Tenth pass").

CREATE TABLE stored_events_v2 (
    id                 INTEGER PRIMARY KEY,
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
INSERT INTO stored_events_v2 (id, event_id, aggregate_type, aggregate_uuid,
        aggregate_version, event_type, event_version, payload, metadata, occurred_at)
    SELECT id, event_id, aggregate_type, aggregate_uuid, aggregate_version,
        event_type, event_version, payload, metadata, occurred_at
    FROM stored_events;
DROP TABLE stored_events;
ALTER TABLE stored_events_v2 RENAME TO stored_events;

CREATE TABLE outbox_v2 (
    id               INTEGER PRIMARY KEY,
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
INSERT INTO outbox_v2 (id, event_id, reactor, status, attempts, next_attempt_at,
        last_error, created_at, finished_at)
    SELECT id, event_id, reactor, status, attempts, next_attempt_at,
        last_error, created_at, finished_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);

CREATE TABLE channel_bodies_v2 (
    id           INTEGER PRIMARY KEY,
    body         TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL
);
INSERT INTO channel_bodies_v2 (id, body, occurred_at)
    SELECT id, body, occurred_at FROM channel_bodies;
DROP TABLE channel_bodies;
ALTER TABLE channel_bodies_v2 RENAME TO channel_bodies;

-- The log's entries are pruned in commit order, each channel's oldest
-- first (`channels::prune`), not found by their age: one index fewer
-- written with every envelope.
DROP INDEX IF EXISTS channel_log_age;
