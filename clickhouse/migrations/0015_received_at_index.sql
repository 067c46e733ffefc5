-- The invalid-traffic rules that need a visitor's history (duplicate click, click without
-- impression) go by the time ingest received each event, not by the time the client claims:
-- a client cannot then space its clicks apart by rewriting their timestamps. The aggregator
-- looks a batch's visitors up by received_at; parts are written in about the order events are
-- received, so a min-max index on it skips the parts outside a rule's window.

ALTER TABLE click_events ADD INDEX IF NOT EXISTS received_at_minmax received_at TYPE minmax GRANULARITY 1;

ALTER TABLE impression_events ADD INDEX IF NOT EXISTS received_at_minmax received_at TYPE minmax GRANULARITY 1;

ALTER TABLE invalid_events ADD INDEX IF NOT EXISTS received_at_minmax received_at TYPE minmax GRANULARITY 1;
