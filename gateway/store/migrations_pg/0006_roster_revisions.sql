-- The directory kept by the office: every revision of the roster (units, persons, duty
-- schedules, actions) as roster YAML; the newest is in force on every instance.
CREATE TABLE IF NOT EXISTS roster_revisions (
    revision INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    by_principal TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
