-- How fresh the stored data is: the receive time of the newest event stored, per kind. The query
-- service reports it with every answer (`newest_event_received_at`), so a reader can tell an
-- answer that is final from one still filling. One row per kind after merges; read it with max().

CREATE TABLE IF NOT EXISTS events_received_watermark
(
    kind                LowCardinality(String),
    newest_received_at  SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY kind;

-- The one-time fill from events stored before this migration: only while the views do not exist
-- yet and the table is empty.

INSERT INTO events_received_watermark
SELECT 'click' AS kind, max(received_at) AS newest_received_at
FROM click_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_received_watermark_mv') = 0
  AND (SELECT count() FROM events_received_watermark WHERE kind = 'click') = 0
HAVING count() > 0;

INSERT INTO events_received_watermark
SELECT 'impression' AS kind, max(received_at) AS newest_received_at
FROM impression_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_received_watermark_mv') = 0
  AND (SELECT count() FROM events_received_watermark WHERE kind = 'impression') = 0
HAVING count() > 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_events_received_watermark_mv TO events_received_watermark AS
SELECT 'click' AS kind, max(received_at) AS newest_received_at
FROM click_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_events_received_watermark_mv TO events_received_watermark AS
SELECT 'impression' AS kind, max(received_at) AS newest_received_at
FROM impression_events;
