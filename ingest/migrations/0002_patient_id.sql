-- The de-identified Patient ID (the pseudonym's ID), for QIDO-RS matching and lists.
ALTER TABLE instances ADD COLUMN patient_id TEXT NOT NULL DEFAULT '';
