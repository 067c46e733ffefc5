-- sender_id: who sent an event, as ingest saw it on the day it received it (the hash behind
-- visitor_id, under the key of the receiving day rather than of the event's own timestamp).
-- The invalid-traffic click rules compare it, so that a client stamping its clicks with several
-- days cannot pass for several visitors. It equals visitor_id unless the two days differ, and
-- rows written before it existed take their visitor_id. The rules look a batch's senders up,
-- hence the bloom-filter indexes (as for visitor_id in 0011).

ALTER TABLE click_events ADD COLUMN IF NOT EXISTS sender_id UInt64 DEFAULT visitor_id;

ALTER TABLE impression_events ADD COLUMN IF NOT EXISTS sender_id UInt64 DEFAULT visitor_id;

ALTER TABLE invalid_events ADD COLUMN IF NOT EXISTS sender_id UInt64 DEFAULT visitor_id;

ALTER TABLE click_events ADD INDEX IF NOT EXISTS sender_id_bloom sender_id TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE impression_events ADD INDEX IF NOT EXISTS sender_id_bloom sender_id TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE invalid_events ADD INDEX IF NOT EXISTS sender_id_bloom sender_id TYPE bloom_filter(0.01) GRANULARITY 1;
