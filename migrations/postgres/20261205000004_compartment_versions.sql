-- Compartments edited under the version guard (issue 15): the version
-- counts edits of the label and size only (doors, occupancy and opens
-- never make an admin's save stale); `edited_at`/`edited_by` name the
-- last edit.
ALTER TABLE compartments ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE compartments ADD COLUMN edited_at BIGINT;
ALTER TABLE compartments ADD COLUMN edited_by TEXT;
