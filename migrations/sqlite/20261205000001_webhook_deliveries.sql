-- Pusher webhooks (channel_occupied, member_added, …) waiting to be
-- delivered: one row per batch and URL, sent by the outbox's
-- `pusher_webhook` reactor (retried with backoff; the row goes once
-- delivered, or stays with the dead outbox row).
CREATE TABLE webhook_deliveries (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
