//! Where a job's input waits until a worker takes it: a local file (the default, one
//! machine), or an object in the object store that any worker on any machine can
//! fetch (`cases.stage_in_objects`, with `casecast ingest-worker`s elsewhere).
//!
//! A job's `staging` column says which: a path, or [`OBJECT`] and a key under
//! [`PREFIX`], a folder no case library can be called (room ids have no dot), so a
//! staged original never mixes with what is published.

use std::path::Path;

use crate::store::{Objects, StoreError};

/// What a `staging` value starts with when the input is an object.
pub const OBJECT: &str = "objects:";

/// The folder of the object store staged inputs are kept in.
pub const PREFIX: &str = ".staging";

/// Where a job's input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged<'a> {
    /// A local file.
    File(&'a Path),
    /// An object, by key.
    Object(&'a str),
}

/// Reads a job's `staging` value.
pub fn parse(staging: &str) -> Staged<'_> {
    match staging.strip_prefix(OBJECT) {
        Some(key) => Staged::Object(key),
        None => Staged::File(Path::new(staging)),
    }
}

/// The key a job's input is staged under.
pub fn key(job_id: &str) -> String {
    format!("{PREFIX}/{job_id}")
}

/// The `staging` value of an input staged under `key`.
pub fn value(key: &str) -> String {
    format!("{OBJECT}{key}")
}

/// Puts the local file `path` in the object store as job `job_id`'s input; answers
/// the job's `staging` value. The local file is left to the caller.
pub async fn put(objects: &Objects, job_id: &str, path: &Path) -> Result<String, StoreError> {
    let key = key(job_id);
    objects.put_file(&key, path).await?;
    Ok(value(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_value_is_a_path_or_an_object_key_apart_from_any_library() {
        assert_eq!(parse("/data/cases/staging/uploads/ab.part"), Staged::File(Path::new("/data/cases/staging/uploads/ab.part")));
        assert_eq!(parse("data/x.dcm"), Staged::File(Path::new("data/x.dcm")));
        let v = value(&key("ab12"));
        assert_eq!(v, "objects:.staging/ab12");
        assert_eq!(parse(&v), Staged::Object(".staging/ab12"));
        // Room ids are ASCII letters, digits, - and _: no library is called `.staging`.
        assert!(PREFIX.starts_with('.'));
    }

    /// Staged, fetched back byte for byte (in chunks, to a file), and deleted; a
    /// second delete is no error (a sweep may follow a job's own removal).
    #[tokio::test(flavor = "current_thread")]
    async fn an_input_staged_in_the_objects_comes_back_whole_and_goes() {
        let dir = std::env::temp_dir().join(format!("casecast-staging-{}-{}", std::process::id(), crate::store::unix_now()));
        std::fs::create_dir_all(&dir).unwrap();
        let objects = Objects::open(&dir.join("objects").display().to_string(), None).unwrap();
        let input = dir.join("in.dcm");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&input, &bytes).unwrap();
        let v = put(&objects, "j1", &input).await.unwrap();
        let Staged::Object(key) = parse(&v) else { panic!("{v}") };
        let out = dir.join("fetched/j1");
        objects.get_to_file(key, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
        objects.delete(key).await.unwrap();
        objects.delete(key).await.unwrap();
        assert!(objects.get_to_file(key, &out).await.is_err_and(|e| e.is_not_found()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
