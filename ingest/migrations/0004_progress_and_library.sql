-- What a running job is doing, as its worker last reported it: the stage
-- (`decoding`, `reading_text`, `writing`, …) and the frame (or archive entry) of how
-- many. Cleared when the job ends or is queued again.
ALTER TABLE jobs ADD COLUMN stage TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN frame BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN frames BIGINT NOT NULL DEFAULT 0;
-- Who sent a job or an upload: the display name in the sender's token (a doctor's or
-- operator's name, not patient data), `C-STORE <AE title>` for a modality.
ALTER TABLE jobs ADD COLUMN uploader TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN uploader TEXT NOT NULL DEFAULT '';
-- A study's entry in its library: the title an uploader or operator gave it (empty:
-- the default, made from its de-identified attributes when listed) and who sent its
-- first instance. The title is operator-entered free text: it is kept here only,
-- never written into DICOM objects.
CREATE TABLE studies (
    room TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    uploader TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (room, study_uid)
);
-- Frames of each published instance, for the library's counts (rows published
-- before this count as one).
ALTER TABLE instances ADD COLUMN frames BIGINT NOT NULL DEFAULT 1;
