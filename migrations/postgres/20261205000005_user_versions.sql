-- Accounts edited under the version guard (issue 15): the version counts
-- edits of the name, role and disabled flag (`UserProfileChanged`
-- events); `edited_at`/`edited_by` name the last edit.
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN edited_at BIGINT;
ALTER TABLE users ADD COLUMN edited_by TEXT;
