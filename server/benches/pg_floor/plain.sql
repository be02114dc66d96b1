-- The baseline: event_core's plain loop, one row per transaction
-- (BEGIN; INSERT; COMMIT: three round trips).
BEGIN;
INSERT INTO bench_plain (id, payload, at) VALUES (floor_id(), '{"command_id":"00000000-0000-0000-0000-000000000000"}', floor_at());
COMMIT;
