-- The sweep expires pending deliveries past their deadline: without this index it scans them all.
CREATE INDEX IF NOT EXISTS deliveries_deadline ON deliveries(status, deadline);
