-- CAP feed entries taken (or being taken) by the feed poller: each at most once across restarts
-- and instances (FeedKey: the feed's sender, the entry's identifier and sent time).
CREATE TABLE IF NOT EXISTS cap_feed_entries (
    sender TEXT NOT NULL,
    identifier TEXT NOT NULL,
    sent TEXT NOT NULL,
    state TEXT NOT NULL,
    holder TEXT NOT NULL,
    claimed_at DOUBLE PRECISION NOT NULL,
    outcome TEXT,
    event_id TEXT,
    taken_at DOUBLE PRECISION,
    PRIMARY KEY (sender, identifier, sent)
);
