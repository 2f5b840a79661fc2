//! Holds the body of a message read from stdin so that its size is known before MAIL FROM
//! (SIZE=, and refusing too-large messages up front) without memory growing with message size:
//! the first MiB stays in memory, the rest goes to an unlinked temporary file.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

/// What stays in memory before spilling to disk.
const MEMORY_LIMIT: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A spooled body.
pub struct Spool {
    head: Vec<u8>,
    file: Option<File>,
    len: u64,
    eight_bit: bool,
}

impl Spool {
    /// Reads `input` to its end, starting with `already` (bytes read before).
    pub fn read_all(already: &[u8], input: &mut dyn Read) -> io::Result<Spool> {
        let mut spool = Spool {
            head: Vec::with_capacity(already.len().min(MEMORY_LIMIT)),
            file: None,
            len: 0,
            eight_bit: false,
        };
        spool.push(already)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            spool.push(&buf[..n])?;
        }
        if let Some(f) = spool.file.as_mut() {
            f.flush()?;
            f.seek(SeekFrom::Start(0))?;
        }
        Ok(spool)
    }

    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.len += bytes.len() as u64;
        self.eight_bit |= bytes.iter().any(|&b| b >= 0x80);
        if self.file.is_none() && self.head.len() + bytes.len() <= MEMORY_LIMIT {
            self.head.extend_from_slice(bytes);
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(anonymous_file()?);
        }
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any byte has the high bit set.
    pub fn is_8bit(&self) -> bool {
        self.eight_bit
    }

    /// A reader over the whole body.
    pub fn reader(self) -> Box<dyn Read> {
        let head = Cursor::new(self.head);
        match self.file {
            Some(f) => Box::new(head.chain(f)),
            None => Box::new(head),
        }
    }
}

/// A temporary file in $TMPDIR that is already unlinked, so nothing is left behind even if the
/// process is killed. It is created with mode 0600 by the open itself (whatever the umask), so
/// there is no moment in which another user could open it and keep reading the message.
fn anonymous_file() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    for attempt in 0..16u32 {
        let name = dir.join(format!(
            ".rsend-{}-{}-{attempt}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&name)
        {
            Ok(f) => {
                std::fs::remove_file(&name)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a temporary file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let f = anonymous_file().unwrap();
        let mode = f.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

    #[test]
    fn small_and_large_round_trip() {
        for size in [
            0usize,
            10,
            MEMORY_LIMIT,
            MEMORY_LIMIT + 1,
            3 * MEMORY_LIMIT + 7,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let spool = Spool::read_all(&data[..size.min(5)], &mut &data[size.min(5)..]).unwrap();
            assert_eq!(spool.len(), size as u64);
            assert_eq!(spool.is_8bit(), size > 128);
            let mut back = Vec::new();
            spool.reader().read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }
}
