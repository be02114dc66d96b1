-- Accounts edited under the version guard (issue 15): the version counts
-- edits of the name, role and disabled flag (`UserProfileChanged`
-- events); `edited_at`/`edited_by` name the last edit.
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN edited_at INTEGER;
ALTER TABLE users ADD COLUMN edited_by TEXT;
