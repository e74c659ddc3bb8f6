//! Index generations: the search index's directory holds one tantivy index per build,
//! `v{VERSION}-{millis}`, and a file `CURRENT` naming the one that serves.
//!
//! - A process opens the generation `CURRENT` names when it is of this binary's
//!   [`VERSION`]; otherwise (no index yet, or one an older binary built) it starts a new
//!   generation, which its search projector fills from the first event while it serves.
//! - `plaza projections rebuild search` builds a new generation beside the serving one
//!   while it serves, catches it up to the store's head, then names it in `CURRENT`
//!   (written to a temporary file and renamed, so it is atomic). A running process takes
//!   it up at its projector's next idle moment ([`super::TantivySearch::take_up_rebuilt`])
//!   and goes on from the new generation's position: no moment without an index.
//!   Upgrading to a binary with a new `VERSION` without that gap: run the new binary's
//!   rebuild first (the old process ignores a generation of another version), then
//!   restart.
//! - Generations older than the current one are deleted by the process that serves it;
//!   one rebuild runs at a time (`rebuild.lock`), and it deletes what an interrupted one
//!   left.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Raise it whenever the index's schema, its tokenizer, or the documents the search
/// projection writes change: the index is then rebuilt from the events.
pub const VERSION: u64 = 3;

const CURRENT: &str = "CURRENT";
const LOCK: &str = "rebuild.lock";

/// A generation's directory name: `v{version}-{stamp}`, stamps growing with time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub version: u64,
    pub stamp: u64,
}

impl Name {
    /// A new name of this binary's version, after every stamp in `root`.
    pub fn next(root: &Path) -> io::Result<Self> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let last = list(root)?.into_iter().map(|n| n.stamp).max().unwrap_or(0);
        Ok(Self { version: VERSION, stamp: now.max(last + 1) })
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (version, stamp) = text.trim().strip_prefix('v')?.split_once('-')?;
        Some(Self { version: version.parse().ok()?, stamp: stamp.parse().ok()? })
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.to_string())
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}-{}", self.version, self.stamp)
    }
}

/// The generations in `root`.
fn list(root: &Path) -> io::Result<Vec<Name>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Some(name) = entry.file_name().to_str().and_then(Name::parse)
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// The generation `CURRENT` names, if any.
pub fn current(root: &Path) -> io::Result<Option<Name>> {
    match fs::read_to_string(root.join(CURRENT)) {
        Ok(text) => Ok(Name::parse(&text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Names `name` in `CURRENT`, atomically.
pub fn publish(root: &Path, name: &Name) -> io::Result<()> {
    let temporary = root.join(format!("{CURRENT}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(name.to_string().as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, root.join(CURRENT))?;
    File::open(root)?.sync_all()
}

/// Deletes the generations older than `current`.
pub fn remove_older(root: &Path, current: &Name) -> io::Result<()> {
    for name in list(root)?.into_iter().filter(|n| n.stamp < current.stamp) {
        fs::remove_dir_all(name.dir(root))?;
    }
    Ok(())
}

/// Deletes what interrupted rebuilds left: the generations newer than `current` (all,
/// when none serves). Older ones may still serve an older binary's process.
pub fn remove_unpublished(root: &Path, current: Option<&Name>) -> io::Result<()> {
    for name in list(root)?.into_iter().filter(|n| current.is_none_or(|c| n.stamp > c.stamp)) {
        fs::remove_dir_all(name.dir(root))?;
    }
    Ok(())
}

/// Held while a rebuild runs: `None` when another holds it.
pub fn lock_rebuild(root: &Path) -> io::Result<Option<File>> {
    let file = File::options().create(true).truncate(false).write(true).open(root.join(LOCK))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(error)) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_grow() {
        let dir = tempfile::tempdir().unwrap();
        let first = Name::next(dir.path()).unwrap();
        assert_eq!(Name::parse(&first.to_string()), Some(first.clone()));
        fs::create_dir(first.dir(dir.path())).unwrap();
        let second = Name::next(dir.path()).unwrap();
        assert!(second.stamp > first.stamp);
        assert_eq!((Name::parse("current"), Name::parse("v2-x"), Name::parse("v2-5")), (None, None, Some(Name { version: 2, stamp: 5 })));
    }

    #[test]
    fn publishing_names_the_current_generation_and_older_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(current(dir.path()).unwrap(), None);
        let old = Name { version: 1, stamp: 1 };
        let new = Name { version: VERSION, stamp: 2 };
        let newer = Name { version: VERSION, stamp: 3 };
        for name in [&old, &new, &newer] {
            fs::create_dir(name.dir(dir.path())).unwrap();
        }
        publish(dir.path(), &new).unwrap();
        assert_eq!(current(dir.path()).unwrap(), Some(new.clone()));
        remove_older(dir.path(), &new).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 2, "a newer generation (a rebuild's) stays");
        remove_unpublished(dir.path(), Some(&new)).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![new.clone()]);
        remove_unpublished(dir.path(), None).unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        let held = lock_rebuild(dir.path()).unwrap().expect("free");
        assert!(lock_rebuild(dir.path()).unwrap().is_none(), "one rebuild at a time");
        drop(held);
        assert!(lock_rebuild(dir.path()).unwrap().is_some());
    }
}
