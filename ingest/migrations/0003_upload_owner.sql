-- Who made an upload (its token's credential: an invitation id or a digest of the
-- token), for per-token quotas on unfinished uploads.
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX uploads_by_owner ON uploads (owner, job_id);
