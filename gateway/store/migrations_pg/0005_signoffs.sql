-- Warnings held for sign-off (签发): one row per event that needed it. While `pending`, the event
-- is `pending_signoff` and its deliveries `held`; signed, released (a trusted source), rejected
-- or expired ends it. `next_notify_at` drives the notices to the next signer and the HQ office.
CREATE TABLE IF NOT EXISTS signoffs (
    event_id TEXT PRIMARY KEY REFERENCES events(id),
    level TEXT,
    submitter TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    notice_step INTEGER NOT NULL DEFAULT 0,
    next_notify_at DOUBLE PRECISION,
    asked TEXT NOT NULL DEFAULT '[]',
    decided_by TEXT,
    decided_at DOUBLE PRECISION,
    ref TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS signoffs_due ON signoffs(state, next_notify_at);
