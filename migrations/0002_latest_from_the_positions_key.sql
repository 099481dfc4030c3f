-- Two changes for the durable path's speed, both measured (docs/BENCHMARKS.md).
--
-- 1. Device ids (IMEIs) compare byte by byte. Under a libc locale such as C.UTF-8 every text
--    comparison goes through strcoll on null-terminated copies, and the positions key is
--    compared dozens of times per stored row. The "C" collation also makes the index order
--    the order the processor sorts each batch in, which keeps concurrent writers from
--    deadlocking.
ALTER TABLE positions ALTER COLUMN device_id TYPE text COLLATE "C";
ALTER TABLE entry_devices ALTER COLUMN device_id TYPE text COLLATE "C";

-- 2. "The latest non-faulty position of each device" is served by the positions key itself:
--    one backward index probe per device, (device_id, ts DESC), skipping faulty rows. Keeping
--    a separate latest-row table up to date cost one row update per stored position inside
--    the insert statement, a fifth of the durable path's throughput.
DROP TABLE latest_positions;
