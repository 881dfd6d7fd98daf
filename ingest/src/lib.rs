//! casecast DICOM ingest, as a library (the actor pool that runs it lives in
//! `actors/`): de-identification of DICOM objects per PS3.15 Annex E.
//!
//! - [`deid`]: the Basic Application Level Confidentiality Profile, table-driven
//!   ([`deid::table`], generated from the standard's Table E.1-1), with the options
//!   users need (clean descriptors, retain longitudinal temporal information with a
//!   per-patient date shift, retain device identity) and the de-identification method
//!   recorded in the output.
//! - [`uid`]: keyed, consistent UID replacement and patient pseudonyms.
//!
//! Not here yet (issue "DICOM cases"): burned-in text (OCR), frames, stores, upload.

pub mod batch;
pub mod deid;
pub mod ocr;
pub mod pixels;
pub mod uid;
