-- Accounts an admin manages from the panel: a user can be disabled (they
-- can no longer sign in, and their sessions and API tokens stop working
-- until re-enabled), and each user's notification list remembers up to
-- when they have read it (the unread count is what ended after that).
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

CREATE TABLE notification_reads (
    user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    read_until  INTEGER NOT NULL
);
