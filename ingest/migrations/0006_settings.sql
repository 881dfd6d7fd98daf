-- What every process sharing the database must agree on. `deid_key_id` names the
-- secret UIDs and pseudonyms are derived with (a keyed hash of a constant, never the
-- secret): an ingest worker started with another secret would give the same patient
-- two pseudonyms, so it refuses to start.
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
