-- An envelope's body (everything but its channel and seq) is stored once,
-- however many channels carry it; each channel_log row points at it (and
-- no longer repeats the event id, which the body holds).
CREATE TABLE channel_bodies (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    body         TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL
);
CREATE INDEX channel_bodies_age ON channel_bodies(occurred_at);

-- Existing entries keep their whole envelope as their body (channel and
-- seq in it are overridden by the row's own when read).
INSERT INTO channel_bodies (id, body, occurred_at)
    SELECT rowid, envelope, occurred_at FROM channel_log;

CREATE TABLE channel_log_v2 (
    channel      TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    body_id      INTEGER NOT NULL,
    occurred_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
INSERT INTO channel_log_v2 (channel, seq, body_id, occurred_at)
    SELECT channel, seq, rowid, occurred_at FROM channel_log;
DROP TABLE channel_log;
ALTER TABLE channel_log_v2 RENAME TO channel_log;
CREATE INDEX channel_log_age ON channel_log(occurred_at);
