-- Cases: uploads in progress, ingest jobs, published instances.
-- Portable SQL: the same text runs on SQLite and PostgreSQL.

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    kind TEXT NOT NULL,
    batch TEXT,
    length BIGINT NOT NULL,
    job_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    error TEXT,
    bytes BIGINT NOT NULL,
    staging TEXT NOT NULL,
    batch TEXT,
    study_uid TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_by_room ON jobs (room, created_at);

CREATE TABLE instances (
    room TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    patient TEXT NOT NULL,
    study_date TEXT NOT NULL,
    study_description TEXT NOT NULL,
    modality TEXT NOT NULL,
    series_description TEXT NOT NULL,
    series_number BIGINT,
    instance_number BIGINT,
    object_key TEXT NOT NULL,
    info TEXT NOT NULL,
    dicom_json TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, sop_uid)
);
CREATE INDEX instances_by_study ON instances (room, study_uid, series_uid);
