//! casecast DICOM ingest, as a library (the actor pool that runs it lives in
//! `actors/`): de-identification of DICOM objects per PS3.15 Annex E, and what
//! publishing them needs.
//!
//! - [`deid`]: the Basic Application Level Confidentiality Profile, table-driven
//!   ([`deid::table`], generated from the standard's Table E.1-1), with the options
//!   users need (clean descriptors, retain longitudinal temporal information with a
//!   per-patient date shift, retain device identity) and the de-identification method
//!   recorded in the output.
//! - [`uid`]: keyed, consistent UID replacement and patient pseudonyms.
//! - [`ocr`], [`pixels`]: burned-in text read and blacked out; frames rendered.
//! - [`batch`]: files and folders from disk (`casecast deid`); large files streamed.
//! - [`encapsulated`]: compressed multi-frame files, decoded a frame at a time.
//! - [`cases`]: one ingest job's work (a staged file to what is published of it;
//!   ZIP archives expanded), run by the pool in `actors/`.
//! - [`staging`]: where a job's input waits, on local disk or in the object store
//!   (where any worker on any machine can take it).
//! - [`store`]: metadata in SQL (SQLite or PostgreSQL) and objects (local or S3).
//! - [`dicomweb`]: DICOM JSON and multipart bodies for QIDO-RS, WADO-RS and STOW-RS.
//! - [`normalize`]: files as they arrive (no meta group, big endian, standard
//!   attributes as UN) rewritten in explicit VR little endian before anything reads them.
//! - [`structure`]: every file's element headers walked before a parser reads it,
//!   so no declared length is allocated that the file does not hold.
//! - [`progress`]: how far a job is (stage, frame of frames, fraction), as its work
//!   reports it.
//! - [`cstore`]: the DICOM C-STORE receiver (SCP) that modalities and PACS send to;
//!   each object it receives is handed to a sink that makes it a job.

pub mod batch;
pub mod cases;
pub mod cstore;
pub mod dicomweb;
pub mod encapsulated;
pub mod deid;
pub mod normalize;
pub mod ocr;
pub mod palette;
pub mod rle;
pub mod pixels;
pub mod progress;
pub mod staging;
pub mod store;
pub mod structure;
pub mod uid;
