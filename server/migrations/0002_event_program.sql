-- An event's program: when it was started (the server runs its program from then
-- until it ends, and again after a restart), and the operator's last switches and
-- layout (JSON), given to the program whenever it (re)joins.
ALTER TABLE events ADD COLUMN started_at BIGINT;
ALTER TABLE events ADD COLUMN program TEXT;

-- When an invitation's holder first joined the event's room.
ALTER TABLE invitations ADD COLUMN joined_at BIGINT;

-- Viewers' votes in polls, one per viewer and poll (a second vote changes it).
CREATE TABLE polls (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    question TEXT NOT NULL,
    options TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX polls_by_event ON polls (event_id, created_at);

CREATE TABLE poll_votes (
    poll_id TEXT NOT NULL,
    viewer TEXT NOT NULL,
    choice BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (poll_id, viewer)
);
