CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    body_hash TEXT NOT NULL,
    data TEXT NOT NULL,
    type TEXT NOT NULL,
    level TEXT,
    status TEXT NOT NULL,
    supersedes TEXT,
    chain_id TEXT NOT NULL,
    chain_seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    principal TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    valid_until REAL,
    state TEXT NOT NULL,
    answer TEXT NOT NULL,
    roster_version TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    escalation TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS events_chain ON events(chain_id, chain_seq);

CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events(id),
    chain_id TEXT NOT NULL,
    chain_seq INTEGER NOT NULL,
    unit_id TEXT NOT NULL,
    unit_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    endpoint_key TEXT NOT NULL,
    text TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    deadline REAL NOT NULL,
    lease_token TEXT,
    lease_until REAL,
    worker_id TEXT,
    last_error TEXT,
    reason TEXT,
    provider_ref TEXT,
    cause_id TEXT,
    level TEXT,
    event_status TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    delivered_at REAL,
    finished_at REAL,
    followed_up INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, priority, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);
CREATE INDEX IF NOT EXISTS deliveries_chain_unit ON deliveries(chain_id, unit_id, status);
-- Partial where only some rows are ever looked up (as on PostgreSQL): a new delivery is pending,
-- so it skips the lease index, and a webhook skips the address index (only SMS and voice replies
-- are matched by address); every index a row skips is one b-tree insert less per fan-out row.
DROP INDEX IF EXISTS deliveries_lease;
CREATE INDEX IF NOT EXISTS deliveries_leased ON deliveries(lease_until) WHERE status='leased';
CREATE INDEX IF NOT EXISTS deliveries_deadline ON deliveries(status, deadline);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_provider_ref ON deliveries(provider_ref)
    WHERE provider_ref IS NOT NULL;

CREATE TABLE IF NOT EXISTS unit_acks (
    event_id TEXT NOT NULL REFERENCES events(id),
    unit_id TEXT NOT NULL,
    unit_name TEXT NOT NULL,
    required INTEGER NOT NULL,
    deadline REAL,
    acked_at REAL,
    acked_by TEXT,
    via TEXT,
    delivery_id TEXT,
    escalation_step INTEGER NOT NULL DEFAULT 0,
    next_escalation_at REAL,
    PRIMARY KEY (event_id, unit_id)
);
CREATE INDEX IF NOT EXISTS unit_acks_escalation ON unit_acks(next_escalation_at)
    WHERE acked_at IS NULL AND next_escalation_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS ack_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    delivery_id TEXT,
    by TEXT NOT NULL,
    via TEXT NOT NULL,
    at REAL NOT NULL,
    first INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_ref TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    at REAL NOT NULL,
    applied INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_ref ON receipts(provider_ref);
DROP INDEX IF EXISTS deliveries_address;  -- see deliveries_leased
CREATE INDEX IF NOT EXISTS deliveries_voice_address ON deliveries(address, created_at)
    WHERE channel IN ('sms','voice');
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_cause ON deliveries(cause_id) WHERE cause_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries(status, sent_at) WHERE status='sent';

CREATE TABLE IF NOT EXISTS public_messages (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events(id),
    text TEXT NOT NULL,
    channels TEXT NOT NULL,
    requester TEXT NOT NULL,
    state TEXT NOT NULL,
    approver TEXT,
    reason TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_at REAL,
    dispatch_event_id TEXT
);

-- CAP feed entries taken (or being taken) by the feed poller: each at most once across restarts
-- and instances (FeedKey: the feed's sender, the entry's identifier and sent time).
CREATE TABLE IF NOT EXISTS cap_feed_entries (
    sender TEXT NOT NULL,
    identifier TEXT NOT NULL,
    sent TEXT NOT NULL,
    state TEXT NOT NULL,  -- claimed | taken
    holder TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    outcome TEXT,
    event_id TEXT,
    taken_at REAL,
    PRIMARY KEY (sender, identifier, sent)
);

-- Report requests (daily 信息报送 of one day, the 总结评估 after a lift) and every version of each
-- unit's report; the *_at columns record the schedule's steps, each taken once (compare-and-set).
CREATE TABLE IF NOT EXISTS report_requests (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    chain_id TEXT NOT NULL,
    kind TEXT NOT NULL,  -- daily | summary
    period TEXT NOT NULL,
    level TEXT,
    status TEXT NOT NULL,
    due_at REAL NOT NULL,
    units TEXT NOT NULL,
    created_at REAL NOT NULL,
    reminded_at REAL,
    missing_at REAL,
    rollup_at REAL
);
CREATE INDEX IF NOT EXISTS report_requests_chain ON report_requests(chain_id, due_at);
CREATE INDEX IF NOT EXISTS report_requests_due ON report_requests(due_at);

CREATE TABLE IF NOT EXISTS unit_reports (
    request_id TEXT NOT NULL REFERENCES report_requests(id),
    unit_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    unit_name TEXT NOT NULL,
    data TEXT NOT NULL,
    entered_by TEXT NOT NULL,
    via TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    late INTEGER NOT NULL,
    PRIMARY KEY (request_id, unit_id, version)
);

-- Warnings held for sign-off (签发): one row per event that needed it. While `pending`, the event
-- is `pending_signoff` and its deliveries `held`; signed, released (a trusted source), rejected
-- or expired ends it. `next_notify_at` drives the notices to the next signer and the HQ office.
CREATE TABLE IF NOT EXISTS signoffs (
    event_id TEXT PRIMARY KEY REFERENCES events(id),
    level TEXT,
    submitter TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    notice_step INTEGER NOT NULL DEFAULT 0,
    next_notify_at REAL,
    asked TEXT NOT NULL DEFAULT '[]',
    decided_by TEXT,
    decided_at REAL,
    ref TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS signoffs_due ON signoffs(state, next_notify_at);

-- The directory kept by the office: every revision of the roster (units, persons, duty
-- schedules, actions) as roster YAML; the newest is in force.
CREATE TABLE IF NOT EXISTS roster_revisions (
    revision INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    by_principal TEXT NOT NULL,
    at REAL NOT NULL
);
