-- Events (rooms with a title, a schedule and a policy), invitations, the audit log.
-- Portable SQL: the same text runs on SQLite and PostgreSQL.

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    starts_at BIGINT,
    ends_at BIGINT,
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX invitations_by_event ON invitations (event_id, created_at);

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    actor_scope TEXT NOT NULL,
    action TEXT NOT NULL,
    event_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_event ON audit (event_id, at);
