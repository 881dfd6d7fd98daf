//! Files that hold secrets or patient data: readable by the server's user only,
//! whatever the umask it was started with, and written whole or not at all.
//!
//! The data directory holds the token secret, the playback signing key, staged
//! uploads (originals with PHI), the cases database and the recordings. The process
//! runs with umask 077, so everything it (or GStreamer, or SQLite) creates is 0600 or
//! 0700; at start the data directory and the files already in its sensitive places
//! are brought down to that, for data directories made by earlier versions or by
//! hand.

use std::io::{self, Write};
use std::path::Path;

/// Makes every file and directory this process creates from now on private to its
/// user (umask 077). Called first thing, before any thread starts.
pub fn private_umask() {
    // SAFETY: umask(2) only swaps the process's file mode creation mask; it takes
    // and returns plain integers and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// `path` and everything under it readable by this user only: directories 0700,
/// files 0600 (symbolic links are left alone). Missing paths are fine.
pub fn make_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        if meta.permissions().mode() & 0o777 != 0o700 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        }
        for entry in std::fs::read_dir(path)? {
            make_private(&entry?.path())?;
        }
    } else if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// A directory for private data: made if missing, 0700 either way.
pub fn private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Creates `path` holding `bytes` (mode 0600), atomically and durably: the bytes go
/// to a temporary file beside it, which is synced and then linked into place, and
/// the directory is synced. A crash leaves either no file or the whole one, never an
/// empty or cut one. When another process made `path` first, its content is
/// answered instead (and ours dropped), so two servers starting together agree.
pub fn create_private(path: &Path, bytes: &[u8]) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    private_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        // A hard link never replaces an existing file: the first writer wins.
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {
                std::fs::File::open(dir)?.sync_all()?;
                Ok(bytes.to_vec())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => std::fs::read(path),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Bytes free for this user on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("a NUL in the path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory
    // the size of a statvfs struct, which the call fills on success.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // fsblkcnt_t and c_ulong are u64 here, narrower on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("casecast-files-{tag}-{}-{:x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn private_files_are_whole_and_first_writer_wins() {
        let d = tmp("create");
        let p = d.join("sub").join("secret");
        assert_eq!(create_private(&p, b"first").unwrap(), b"first");
        assert_eq!(create_private(&p, b"second").unwrap(), b"first", "an existing file is kept");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(d.join("sub")).unwrap().permissions().mode() & 0o777, 0o700);
        let left: Vec<_> = std::fs::read_dir(d.join("sub")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn make_private_tightens_a_tree() {
        let d = tmp("tighten");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), b"phi").unwrap();
        std::fs::set_permissions(d.join("a/b/f"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private(&d).unwrap();
        assert_eq!(std::fs::metadata(d.join("a")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(d.join("a/b/f")).unwrap().permissions().mode() & 0o777, 0o600);
        make_private(&d.join("missing")).unwrap();
        assert!(free_bytes(&d).unwrap() > 0);
        std::fs::remove_dir_all(d).unwrap();
    }
}
