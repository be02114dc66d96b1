-- Records admins edit under a version guard (issue 15). A bank's version
-- counts the edits of its editable fields (name, location, notes) and
-- nothing else: a heartbeat or a door never makes an admin's save stale.
-- `edited_at`/`edited_by` name the last edit (NULL: never edited since
-- registration).
ALTER TABLE locker_banks ADD COLUMN notes TEXT;
ALTER TABLE locker_banks ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE locker_banks ADD COLUMN edited_at BIGINT;
ALTER TABLE locker_banks ADD COLUMN edited_by TEXT;
