-- Report requests (daily 信息报送 of one day, the 总结评估 after a lift) and every version of each
-- unit's report; the *_at columns record the schedule's steps, each taken once (compare-and-set).
CREATE TABLE IF NOT EXISTS report_requests (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    chain_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    period TEXT NOT NULL,
    level TEXT,
    status TEXT NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    units TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    reminded_at DOUBLE PRECISION,
    missing_at DOUBLE PRECISION,
    rollup_at DOUBLE PRECISION
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
    submitted_at DOUBLE PRECISION NOT NULL,
    late INTEGER NOT NULL,
    PRIMARY KEY (request_id, unit_id, version)
);
