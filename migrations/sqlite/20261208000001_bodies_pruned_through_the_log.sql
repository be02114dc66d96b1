-- Bodies are pruned through the log rows that point at them (found by
-- channel_log_age), not by an index of their own: one index fewer for
-- every envelope written (docs/benchmarks.md, "Ninth pass").
DROP INDEX IF EXISTS channel_bodies_age;
