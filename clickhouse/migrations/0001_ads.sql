-- The ad catalog. Updates are new rows with a later updated_at; read with FINAL.
CREATE TABLE IF NOT EXISTS ads
(
    id          UUID,
    title       String,
    description String,
    media_url   String,
    target_url  String,
    campaign_id String,
    active      Bool,
    created_at  DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;
