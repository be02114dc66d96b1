-- Grants whose validity window admins edit under the version guard
-- (issue 15): the version counts window edits (`AccessWindowChanged`);
-- `edited_at`/`edited_by` name the last one.
ALTER TABLE grants ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE grants ADD COLUMN edited_at BIGINT;
ALTER TABLE grants ADD COLUMN edited_by TEXT;
