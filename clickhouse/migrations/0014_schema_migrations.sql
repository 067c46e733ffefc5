-- Which migrations this database has had: `aggregator migrate` adds every file's name after
-- applying them all. The services need no rights to change the schema: the aggregator checks
-- here at start that the newest migration it knows is in, and otherwise refuses to run until
-- `aggregator migrate` (as an administrator) has.

CREATE TABLE IF NOT EXISTS schema_migrations
(
    name        String,
    applied_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY name;
