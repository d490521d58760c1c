//! The journal file itself, as Optuna's `JournalFileBackend` keeps it: an
//! append-only file of JSON lines, read incrementally from the byte offset
//! read so far, and appended to only while holding the lock file next to it
//! (`<log>.lock`, Optuna's `JournalFileSymlinkLock`: a symbolic link created
//! atomically, removed by renaming it away first).
//!
//! A lock left behind by a killed process is broken as Optuna breaks it: a
//! waiter that sees the log's modification time (the lock links to the log,
//! so that is what `stat` of the lock reads) unchanged for
//! [`STALE_LOCK_GRACE`] releases it. A lock made by Optuna's
//! `JournalFileOpenLock` (a plain file of the same name) is honoured too.
//!
//! Sooner than that, a lock of a snac process that died on this host is
//! broken at once: while holding the lock, snac names itself in
//! `<log>.lock.owner` (host, process id, and the lock's inode and time, so
//! that the record cannot be mistaken for a later lock's), and removes it
//! before releasing the lock. A waiter on the same host that finds the
//! owner's process gone releases the lock without waiting.

use anyhow::{Context, Result, bail, ensure};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Optuna's default `grace_period` of its file locks: a lock whose log has
/// not changed for this long is taken to belong to a dead process.
pub const STALE_LOCK_GRACE: Duration = Duration::from_secs(30);

/// Optuna's `LOCK_FILE_SUFFIX` and `RENAME_FILE_SUFFIX`.
const LOCK_SUFFIX: &str = ".lock";
const RENAME_SUFFIX: &str = ".rename";
/// Next to the lock: who holds it (ours only; Optuna writes none).
const OWNER_SUFFIX: &str = ".owner";

/// One journal file and how far this handle has read it.
pub struct LogFile {
    path: PathBuf,
    lock_path: PathBuf,
    /// Bytes read and applied so far: always the end of a complete line.
    offset: u64,
    /// Lines read so far (for messages: line numbers are 1-based).
    lines: u64,
    stale_lock_grace: Duration,
}

/// One complete line of the log, with its 1-based line number and the
/// offset just past it.
pub struct Line {
    pub number: u64,
    pub text: String,
    end: u64,
}

impl LogFile {
    /// Opens the journal at `path`, creating an empty one if there is none
    /// (as Optuna does). The directory must exist and be writable.
    pub fn open(path: &Path) -> Result<LogFile> {
        let shown = path.display();
        ensure!(!path.as_os_str().is_empty(), "the journal storage path is empty; give a file such as study.log");
        ensure!(
            !path.is_dir(),
            "journal storage '{shown}' is a directory; give a file in it, such as {}",
            path.join("study.log").display()
        );
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        ensure!(
            dir.is_dir(),
            "journal storage '{shown}': directory '{}' does not exist; create it first",
            dir.display()
        );
        OpenOptions::new().append(true).create(true).open(path).with_context(|| {
            format!(
                "journal storage '{shown}': cannot open the file for appending; it must be a writable file in a \
                 writable directory"
            )
        })?;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(LOCK_SUFFIX);
        Ok(LogFile {
            path: path.to_path_buf(),
            lock_path: lock_path.into(),
            offset: 0,
            lines: 0,
            stale_lock_grace: STALE_LOCK_GRACE,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For tests: a shorter wait before a lock is taken to be stale.
    #[cfg(test)]
    pub fn set_stale_lock_grace(&mut self, grace: Duration) {
        self.stale_lock_grace = grace;
    }

    /// The complete lines after the last one [`consumed`](Self::consumed).
    /// A last line without its newline (being written right now) is left for
    /// a later call.
    pub fn read_new(&self) -> Result<Vec<Line>> {
        let shown = self.path.display();
        let mut file = File::open(&self.path).with_context(|| format!("journal storage '{shown}': cannot read it"))?;
        let size = file.metadata().with_context(|| format!("journal storage '{shown}': cannot read it"))?.len();
        if size < self.offset {
            bail!(
                "journal storage '{shown}' shrank from {} to {size} bytes while open; a journal is only ever \
                 appended to (was it truncated or replaced?)",
                self.offset
            );
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::with_capacity((size - self.offset) as usize);
        file.read_to_end(&mut bytes).with_context(|| format!("journal storage '{shown}': cannot read it"))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let (mut number, mut end) = (self.lines, self.offset);
        let mut lines = vec![];
        for raw in bytes[..complete].split_inclusive(|b| *b == b'\n') {
            number += 1;
            end += raw.len() as u64;
            let text = String::from_utf8(raw.to_vec()).map_err(|_| {
                anyhow::anyhow!(
                    "journal storage '{shown}', line {number}: not UTF-8 text; each line must be one JSON object \
                     as Optuna's JournalFileBackend writes it"
                )
            })?;
            lines.push(Line { number, text, end });
        }
        Ok(lines)
    }

    /// Records that `line` has been applied: the next read starts after it.
    pub fn consumed(&mut self, line: &Line) {
        (self.lines, self.offset) = (line.number, line.end);
    }

    /// Appends `text` (whole lines, each ending in a newline) in one write
    /// and flushes it to disk, as Optuna's `append_logs` does. The caller
    /// holds the lock.
    pub fn append(&self, _lock: &LockGuard, text: &str) -> Result<()> {
        debug_assert!(text.ends_with('\n'));
        let shown = self.path.display();
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("journal storage '{shown}': cannot open it for appending"))?;
        file.write_all(text.as_bytes()).with_context(|| format!("journal storage '{shown}': cannot append to it"))?;
        file.sync_data().with_context(|| format!("journal storage '{shown}': cannot flush it to disk"))?;
        Ok(())
    }

    /// Cuts off a last line without its newline: under the lock, after every
    /// complete line was read, that is a line whose writer died while writing
    /// it, and anything appended after it would make one unreadable line of
    /// the two. (Optuna does not do this; it never tears a line it writes
    /// itself unless killed in the middle of the write.)
    pub fn cut_torn_tail(&self, _lock: &LockGuard) -> Result<()> {
        let shown = self.path.display();
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .with_context(|| format!("journal storage '{shown}': cannot open it for writing"))?;
        let len = file.metadata().with_context(|| format!("journal storage '{shown}': cannot read it"))?.len();
        if len > self.offset {
            eprintln!(
                "warning: journal storage '{shown}' ends in {} bytes without a newline, left by a writer that \
                 died while writing; removing them",
                len - self.offset
            );
            file.set_len(self.offset).with_context(|| format!("journal storage '{shown}': cannot truncate it"))?;
            file.sync_data().with_context(|| format!("journal storage '{shown}': cannot flush it to disk"))?;
        }
        Ok(())
    }

    /// Takes the lock file, waiting while another process holds it, and
    /// breaking it when it is stale (see the module documentation).
    pub fn lock(&self) -> Result<LockGuard> {
        let target = self.path.file_name().context("a journal path names a file")?;
        let mut sleep = Duration::from_millis(1);
        let mut seen: Option<SystemTime> = None;
        let mut since = Instant::now();
        loop {
            match std::os::unix::fs::symlink(target, &self.lock_path) {
                Ok(()) => return Ok(LockGuard::taken(&self.lock_path)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => bail!(
                    "journal storage '{}': cannot create its lock file '{}' ({e}); the directory must be writable",
                    self.path.display(),
                    self.lock_path.display()
                ),
            }
            // The lock links to the log: `metadata` follows it. A plain-file
            // lock (Optuna's JournalFileOpenLock) has its own time.
            let mtime = fs::metadata(&self.lock_path).or_else(|_| fs::symlink_metadata(&self.lock_path));
            let Ok(mtime) = mtime.and_then(|m| m.modified()) else {
                continue; // released meanwhile: try again at once
            };
            if break_dead_lock(&self.lock_path) {
                eprintln!(
                    "warning: journal lock '{}' was held by a process of this host that no longer runs; released it",
                    self.lock_path.display()
                );
                continue;
            }
            if seen != Some(mtime) {
                seen = Some(mtime);
                since = Instant::now();
            }
            if since.elapsed() > self.stale_lock_grace {
                eprintln!(
                    "warning: journal lock '{}' was held for more than {} s without the journal changing; \
                     releasing it (its process presumably died)",
                    self.lock_path.display(),
                    self.stale_lock_grace.as_secs_f64()
                );
                if release(&self.lock_path).is_ok() {
                    sleep = Duration::from_millis(1);
                }
                continue;
            }
            std::thread::sleep(sleep);
            // Optuna doubles up to 1 s; 50 ms keeps a busy study moving.
            sleep = (sleep * 2).min(Duration::from_millis(50));
        }
    }
}

/// The held lock; dropping it releases it.
pub struct LockGuard {
    lock_path: PathBuf,
}

impl LockGuard {
    /// The lock just taken: records its owner (best effort: without the
    /// record, a dead owner's lock is broken by the mtime rule only).
    fn taken(lock_path: &Path) -> LockGuard {
        if let Some(id) = lock_identity(lock_path) {
            let _ = fs::write(owner_path(lock_path), format!("{id} {} {}\n", host(), std::process::id()));
        }
        LockGuard { lock_path: lock_path.to_path_buf() }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(owner_path(&self.lock_path));
        if let Err(e) = release(&self.lock_path) {
            eprintln!("warning: journal lock '{}' could not be released: {e}", self.lock_path.display());
        }
    }
}

fn owner_path(lock_path: &Path) -> PathBuf {
    let mut p = lock_path.as_os_str().to_owned();
    p.push(OWNER_SUFFIX);
    p.into()
}

/// The lock file's inode and modification time, which tell one lock from a
/// later one (inode numbers are reused; the time to the nanosecond is not).
fn lock_identity(lock_path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(lock_path).ok()?;
    Some(format!("{}:{}.{:09}", m.ino(), m.mtime(), m.mtime_nsec()))
}

fn host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// The owner record and the lock's identity, if the record names this very
/// lock and a process of this host that has ended (`/proc` tells; without
/// it, nothing is known).
fn held_by_a_dead_process(lock_path: &Path) -> Option<(String, String)> {
    let record = fs::read_to_string(owner_path(lock_path)).ok()?;
    let mut fields = record.split_whitespace();
    let (id, owner_host, pid) = (fields.next()?, fields.next()?, fields.next()?);
    let proc = Path::new("/proc");
    let dead = Some(id) == lock_identity(lock_path).as_deref()
        && !owner_host.is_empty()
        && owner_host == host()
        && proc.join("self").exists()
        && pid.parse::<u32>().is_ok()
        && !proc.join(pid).exists();
    dead.then(|| (record.clone(), id.to_string()))
}

/// Releases the lock if its owner died (see [`held_by_a_dead_process`]).
/// Another waiter may have broken it and taken a new lock meanwhile: the
/// lock renamed away is checked to be the dead one, and put back if not.
fn break_dead_lock(lock_path: &Path) -> bool {
    let Some((record, id)) = held_by_a_dead_process(lock_path) else { return false };
    let mut renamed = lock_path.as_os_str().to_owned();
    renamed.push(format!("{}{RENAME_SUFFIX}", super::random_uuid()));
    let renamed = PathBuf::from(renamed);
    if fs::rename(lock_path, &renamed).is_err() {
        return false;
    }
    if lock_identity(&renamed).as_deref() != Some(id.as_str()) {
        // A live lock: back where it was (unless yet another was taken).
        let _ = fs::hard_link(&renamed, lock_path);
        let _ = fs::remove_file(&renamed);
        return false;
    }
    let _ = fs::remove_file(&renamed);
    if fs::read_to_string(owner_path(lock_path)).is_ok_and(|now| now == record) {
        let _ = fs::remove_file(owner_path(lock_path));
    }
    true
}

/// Removes a lock as Optuna does: renames it to a unique name first (only
/// one of several processes breaking a stale lock succeeds), then deletes it.
fn release(lock_path: &Path) -> std::io::Result<()> {
    let mut renamed = lock_path.as_os_str().to_owned();
    renamed.push(format!("{}{RENAME_SUFFIX}", super::random_uuid()));
    fs::rename(lock_path, &renamed)?;
    fs::remove_file(&renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_lines_only_and_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let mut log = LogFile::open(&path).unwrap();
        assert!(path.exists(), "created empty");
        assert!(log.read_new().unwrap().is_empty());
        fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let lines = log.read_new().unwrap();
        assert_eq!(lines.iter().map(|l| (l.number, l.text.as_str())).collect::<Vec<_>>(), [(1, "{\"a\":1}\n")]);
        assert_eq!(log.read_new().unwrap().len(), 1, "read again until consumed");
        log.consumed(&lines[0]);
        assert!(log.read_new().unwrap().is_empty(), "the unfinished line waits");
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"2}\r\n{}\n").unwrap();
        let lines = log.read_new().unwrap();
        log.consumed(&lines[1]);
        assert_eq!(
            lines.iter().map(|l| (l.number, l.text.as_str())).collect::<Vec<_>>(),
            [(2, "{\"b\":2}\r\n"), (3, "{}\n")]
        );
        fs::write(&path, "{}\n").unwrap();
        let e = format!("{:#}", log.read_new().err().unwrap());
        assert!(e.contains(&path.display().to_string()) && e.contains("shrank"), "{e}");
    }

    #[test]
    fn the_lock_is_exclusive_and_optunas_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let log = LogFile::open(&path).unwrap();
        let lock_path = dir.path().join("j.log.lock");
        let guard = log.lock().unwrap();
        // Optuna's JournalFileSymlinkLock: a link to the log, next to it.
        assert_eq!(fs::read_link(&lock_path).unwrap(), Path::new("j.log"));
        assert_eq!(
            fs::metadata(&lock_path).unwrap().modified().unwrap(),
            fs::metadata(&path).unwrap().modified().unwrap()
        );
        // Another holder waits until it is released.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let other = LogFile::open(&path).unwrap();
                let g = other.lock().unwrap();
                tx.send(()).unwrap();
                drop(g);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(rx.try_recv().is_err(), "the lock is held");
            drop(guard);
            rx.recv().unwrap();
        });
        assert!(fs::symlink_metadata(&lock_path).is_err(), "released");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "nothing left but the log");
    }

    #[test]
    fn a_torn_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let mut log = LogFile::open(&path).unwrap();
        fs::write(&path, "{\"a\":1}\n{\"op_co").unwrap();
        let lines = log.read_new().unwrap();
        log.consumed(&lines[0]);
        let guard = log.lock().unwrap();
        log.cut_torn_tail(&guard).unwrap();
        log.append(&guard, "{\"b\":2}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn a_dead_processs_lock_is_broken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let log = LogFile::open(&path).unwrap();
        let lock_path = dir.path().join("j.log.lock");
        let owner = dir.path().join("j.log.lock.owner");
        // A process that took the lock and was killed (its id is free now).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::os::unix::fs::symlink("j.log", &lock_path).unwrap();
        let id = lock_identity(&lock_path).unwrap();
        fs::write(&owner, format!("{id} {} {dead}\n", host())).unwrap();
        // The record of another (earlier) lock, or of a live process, is not enough.
        assert!(held_by_a_dead_process(&lock_path).is_some(), "the dead owner is seen");
        fs::write(&owner, format!("1:2.000000003 {} {dead}\n", host())).unwrap();
        assert!(held_by_a_dead_process(&lock_path).is_none(), "another lock's record");
        fs::write(&owner, format!("{id} {} {}\n", host(), std::process::id())).unwrap();
        assert!(held_by_a_dead_process(&lock_path).is_none(), "a live owner");
        fs::write(&owner, format!("{id} other-host-{} {dead}\n", host())).unwrap();
        assert!(held_by_a_dead_process(&lock_path).is_none(), "another host's process");
        fs::write(&owner, format!("{id} {} {dead}\n", host())).unwrap();
        let guard = log.lock().unwrap(); // with the 30 s grace: broken because its owner is dead
        assert_eq!(
            fs::read_to_string(&owner).unwrap().split_whitespace().nth(2),
            Some(&*std::process::id().to_string())
        );
        drop(guard);
        assert!(!owner.exists() && fs::symlink_metadata(&lock_path).is_err());
    }

    #[test]
    fn a_stale_lock_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let mut log = LogFile::open(&path).unwrap();
        // A plain-file lock, as Optuna's JournalFileOpenLock leaves it after a crash.
        fs::write(dir.path().join("j.log.lock"), "").unwrap();
        log.set_stale_lock_grace(Duration::from_millis(200));
        let guard = log.lock().unwrap();
        log.append(&guard, "{}\n").unwrap();
        drop(guard);
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
    }

    #[test]
    fn open_names_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", LogFile::open(dir.path()).err().unwrap());
        assert!(e.contains("is a directory") && e.contains("study.log"), "{e}");
        let missing = dir.path().join("no/such/j.log");
        let e = format!("{:#}", LogFile::open(&missing).err().unwrap());
        assert!(e.contains(&missing.display().to_string()) && e.contains("does not exist"), "{e}");
    }
}
