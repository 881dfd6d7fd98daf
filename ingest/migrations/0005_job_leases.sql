-- Who works on a running job, and until when: a worker (this server's pool, or a
-- `casecast ingest-worker` elsewhere) claims a job with a lease and renews it while
-- it works. An update of the job by its worker is guarded by the owner: one that
-- touches no row means the lease was lost, and the work is abandoned. A lease that
-- runs out (its worker died) lets another worker claim the job.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at BIGINT;
