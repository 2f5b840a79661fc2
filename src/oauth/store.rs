//! The token cache: one JSON file per grant (refresh token, current access token and when to
//! renew it), created 0600 by the open call, replaced atomically (temporary file, fsync,
//! rename, directory fsync), and a lock file beside it whose flock(2) makes one refresh per
//! grant at a time, across the threads of a daemon and across processes alike (each caller
//! opens the lock file itself, and flock locks belong to the open file description).
//! With `oauth_token_store keyring` the JSON lives in the system keyring instead (one item per
//! grant, replaced as a whole by the Secret Service); the lock file stays where the file would be.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

/// A token file larger than this is not ours.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// What the cache holds for one grant. `Debug` never shows a token.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTokens {
    pub refresh_token: String,
    #[serde(default)]
    pub access_token: String,
    /// Unix seconds after which `access_token` is renewed before use (a margin before the
    /// expiry the server announced).
    #[serde(default)]
    pub renew_after: i64,
    /// The endpoint and client that issued the grant: a token file copied to another account
    /// or left after a provider change is refused instead of sent to the wrong server.
    pub token_url: String,
    pub client_id: String,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("renew_after", &self.renew_after)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl StoredTokens {
    /// The access token when it is still good at `now` (Unix seconds).
    pub fn usable_access_token(&self, now: i64) -> Option<&str> {
        (!self.access_token.is_empty() && now < self.renew_after).then_some(&*self.access_token)
    }
}

/// When to renew a token the server says lives `expires_in` seconds: a minute early, or a
/// fifth of its life early for short-lived tokens, so a session started just before the
/// expiry still logs in.
pub fn renew_after(now: i64, expires_in: u64) -> i64 {
    let life = i64::try_from(expires_in.min(10 * 365 * 86_400)).unwrap_or(0);
    now + life - (life / 5).min(60)
}

/// Errors of the token cache.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the token file {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is damaged ({message})")]
    Damaged { path: String, message: String },
    #[error(
        "the token file {path} is readable by other users (mode {mode:o}); run chmod 600 {path}"
    )]
    Insecure { path: String, mode: u32 },
    #[error("cannot use the OAuth2 tokens in the system keyring")]
    Keyring(#[from] crate::account::keyring::KeyringError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The token file of one grant and its lock.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
    /// Keep the tokens in the system keyring under these attributes (the file is then only
    /// the lock's name).
    keyring: Option<Vec<(String, String)>>,
}

/// Held while a grant is being refreshed or replaced; dropping it unlocks.
#[derive(Debug)]
pub struct GrantLock {
    _file: File,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> TokenFile {
        TokenFile {
            path,
            keyring: None,
        }
    }

    /// Tokens kept in the system keyring under `attributes`; `path` names the lock (its
    /// `.lock` sibling) and the grant in messages.
    pub fn in_keyring(path: PathBuf, attributes: Vec<(String, String)>) -> TokenFile {
        TokenFile {
            path,
            keyring: Some(attributes),
        }
    }

    fn damaged(&self, message: String) -> StoreError {
        StoreError::Damaged {
            path: self.path.display().to_string(),
            message,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    /// Creates the directory (0700) when missing.
    fn ensure_dir(&self) -> Result<(), StoreError> {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir)),
            _ => Ok(()),
        }
    }

    /// Waits for the grant's lock (another thread or process refreshing the same grant).
    pub fn lock(&self) -> Result<GrantLock, StoreError> {
        self.ensure_dir()?;
        let lock_path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io(&lock_path)(e.into()))?;
        Ok(GrantLock { _file: file })
    }

    /// The stored tokens, `Ok(None)` when there is no file yet.
    pub fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        if let Some(attributes) = &self.keyring {
            return match crate::account::keyring::lookup(attributes)? {
                None => Ok(None),
                Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| {
                    self.damaged(format!(
                        "keyring item: line {} column {}",
                        e.line(),
                        e.column()
                    ))
                }),
            };
        }
        let file = match OpenOptions::new()
            .read(true)
            // NONBLOCK: a FIFO in the token's place must not block the open.
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let meta = file.metadata().map_err(io(&self.path))?;
        if !meta.is_file() {
            return Err(StoreError::Damaged {
                path: self.path.display().to_string(),
                message: "it is not a regular file".into(),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Insecure {
                path: self.path.display().to_string(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io(&self.path))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(StoreError::Damaged {
                path: self.path.display().to_string(),
                message: "too large".into(),
            });
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Damaged {
                path: self.path.display().to_string(),
                message: format!("line {} column {}", e.line(), e.column()),
            })
    }

    /// Replaces the stored tokens atomically: a reader (or a crash) sees the old file or the
    /// new one, never a mix, so a rotated refresh token is never lost half-written.
    pub fn save(&self, tokens: &StoredTokens, _lock: &GrantLock) -> Result<(), StoreError> {
        if let Some(attributes) = &self.keyring {
            let json = serde_json::to_string(tokens).map_err(|e| self.damaged(e.to_string()))?;
            let user = attributes
                .iter()
                .find(|(k, _)| k == "user")
                .map_or("", |(_, v)| v.as_str());
            crate::account::keyring::store(
                &format!("postie: OAuth2 tokens for {user}"),
                attributes,
                &json,
            )?;
            return Ok(());
        }
        self.ensure_dir()?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = self.path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let json = serde_json::to_vec_pretty(tokens).map_err(|e| StoreError::Damaged {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("postie-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn tokens(refresh: &str) -> StoredTokens {
        StoredTokens {
            refresh_token: refresh.into(),
            access_token: "at".into(),
            renew_after: 100,
            token_url: "https://x/token".into(),
            client_id: "c".into(),
        }
    }

    #[test]
    fn save_is_0600_in_a_0700_dir_and_round_trips() {
        let dir = tmpdir("rt");
        let f = TokenFile::new(dir.join("sub/a.json"));
        assert_eq!(f.load().unwrap(), None);
        let lock = f.lock().unwrap();
        f.save(&tokens("r1"), &lock).unwrap();
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(dir.join("sub"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(f.load().unwrap(), Some(tokens("r1")));
        f.save(&tokens("r2"), &lock).unwrap();
        assert_eq!(f.load().unwrap().unwrap().refresh_token, "r2");
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(!format!("{:?}", tokens("secret-r")).contains("secret-r"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn group_readable_or_damaged_file_is_refused() {
        let dir = tmpdir("perm");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.json");
        std::fs::write(&path, "{").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            TokenFile::new(path.clone()).load(),
            Err(StoreError::Damaged { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = TokenFile::new(path).load().unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lock_excludes_other_threads() {
        let dir = tmpdir("lock");
        let f = TokenFile::new(dir.join("t.json"));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (f, inside, max) = (f.clone(), inside.clone(), max.clone());
                std::thread::spawn(move || {
                    let _l = f.lock().unwrap();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn renewal_margin() {
        assert_eq!(renew_after(1000, 3600), 1000 + 3600 - 60);
        assert_eq!(renew_after(1000, 10), 1000 + 10 - 2);
        assert_eq!(renew_after(1000, 0), 1000);
    }
}
