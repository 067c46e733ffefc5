-- Sample ads for a new installation (`make run` and `aggregator migrate --seed` load them).
-- Fixed ids so the README's examples work; re-running is harmless (ReplacingMergeTree, FINAL).
INSERT INTO ads (id, title, description, media_url, target_url, campaign_id, active, created_at, updated_at) VALUES
    ('a1000000-0000-4000-8000-000000000001', 'Trail Runner 3', '15 s pre-roll for the new running shoe', 'https://cdn.example.com/ads/trail-runner-3.mp4', 'https://shop.example.com/trail-runner-3', 'spring-launch', true, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000'),
    ('a1000000-0000-4000-8000-000000000002', 'Coffee Club', 'Display banner, 300x250', 'https://cdn.example.com/ads/coffee-club.png', 'https://coffee.example.com/join', 'coffee-club', true, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000'),
    ('a1000000-0000-4000-8000-000000000003', 'City Break Deals', '30 s mid-roll travel spot', 'https://cdn.example.com/ads/city-break.mp4', 'https://travel.example.com/city-breaks', 'autumn-travel', true, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000'),
    ('a1000000-0000-4000-8000-000000000004', 'Retired Campaign', 'Inactive: events for it are rejected', 'https://cdn.example.com/ads/old.png', 'https://old.example.com', 'retired', false, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000');
