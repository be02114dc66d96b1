-- The same row in one round trip: the INSERT commits by itself.
INSERT INTO bench_plain (id, payload, at) VALUES (floor_id(), '{"command_id":"00000000-0000-0000-0000-000000000000"}', floor_at());
