//! The embedded profile's files hold password hashes, emails and the token secret: the
//! data directory is private to Plaza's user (0700) and so is every file in it (0600).
//! Files an older Plaza left open are tightened when Plaza starts, with a log line.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tracing::warn;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Creates the data directory private, or makes an existing one and the files in it
/// private.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir);
    }
    tighten(dir, DIR_MODE)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            tighten(&path, FILE_MODE)?;
        }
    }
    Ok(())
}

/// Creates a directory private (0700), or makes an existing one private; what other
/// software writes inside (a search index) is then out of others' reach whatever its
/// files' modes.
pub fn private_subdir(dir: &Path) -> io::Result<()> {
    match dir.exists() {
        true => tighten(dir, DIR_MODE),
        false => DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir),
    }
}

/// Creates `path` empty and private unless it exists, and makes an existing one private:
/// SQLite then keeps its `-wal` and `-shm` files as private as the database.
pub fn private_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            tighten(path, FILE_MODE)?;
            for suffix in ["-wal", "-shm"] {
                let companion = path.with_file_name(format!("{}{suffix}", path.file_name().unwrap_or_default().to_string_lossy()));
                if companion.exists() {
                    tighten(&companion, FILE_MODE)?;
                }
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Writes a new private file (or replaces one).
pub fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    file.write_all(contents.as_bytes())?;
    tighten(path, FILE_MODE)
}

/// Takes away what `mode` does not grant (group and others), saying so.
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(current & mode))?;
        warn!(path = %path.display(), was = format!("{current:o}"), now = format!("{:o}", current & mode), "tightened permissions");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_and_directories_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        private_file(&dir.join("events.db")).unwrap();
        write_private(&dir.join("jwt-secret"), "s").unwrap();
        assert_eq!((mode(&dir.join("events.db")), mode(&dir.join("jwt-secret"))), (0o600, 0o600));
    }

    #[test]
    fn open_files_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        for name in ["jwt-secret", "events.db", "events.db-wal"] {
            std::fs::write(dir.join(name), "x").unwrap();
            std::fs::set_permissions(dir.join(name), Permissions::from_mode(0o644)).unwrap();
        }
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for name in ["jwt-secret", "events.db", "events.db-wal"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
    }
}
