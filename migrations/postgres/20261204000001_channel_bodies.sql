-- An envelope's body (everything but its channel and seq) is stored once,
-- however many channels carry it; each channel_log row points at it (and
-- no longer repeats the event id, which the body holds).
CREATE TABLE channel_bodies (
    id           BIGSERIAL PRIMARY KEY,
    body         TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL
);
CREATE INDEX channel_bodies_age ON channel_bodies(occurred_at);

-- Existing entries keep their whole envelope as their body (channel and
-- seq in it are overridden by the row's own when read).
ALTER TABLE channel_log ADD COLUMN body_id BIGINT;
UPDATE channel_log SET body_id = nextval('channel_bodies_id_seq');
INSERT INTO channel_bodies (id, body, occurred_at)
    SELECT body_id, envelope, occurred_at FROM channel_log;
ALTER TABLE channel_log DROP COLUMN envelope;
ALTER TABLE channel_log DROP COLUMN event_id;
ALTER TABLE channel_log ALTER COLUMN body_id SET NOT NULL;
