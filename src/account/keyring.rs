//! The system keyring (the freedesktop Secret Service: GNOME Keyring, KeePassXC, KWallet's
//! bridge) as a password store, reached through libsecret's `secret-tool`: no D-Bus library in
//! postie, and items are found by their attributes exactly as msmtp's libsecret lookups find
//! them. Secrets travel only on the child's stdin and stdout, never on its command line.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The program that talks to the Secret Service (Debian: libsecret-tools).
const SECRET_TOOL: &str = "secret-tool";
/// A keyring that asks for an unlock prompt nobody answers must not hang a send or a daemon.
const TIMEOUT: Duration = Duration::from_secs(20);
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The attributes msmtp stores and looks up passwords under (its libsecret schema
/// `de.marlam.msmtp.password`, matched without its name): host, service (`smtp`, `pop3`),
/// user. `secret-tool store --label=... host H service smtp user U` makes such an item.
pub fn msmtp_attributes(host: &str, service: &str, user: &str) -> Vec<(String, String)> {
    vec![
        ("host".into(), host.into()),
        ("service".into(), service.into()),
        ("user".into(), user.into()),
    ]
}

/// The attributes of passwords stored by the old libgnome-keyring, which msmtp also consults.
pub fn compat_network_attributes(host: &str, service: &str, user: &str) -> Vec<(String, String)> {
    vec![
        (
            "xdg:schema".into(),
            "org.gnome.keyring.NetworkPassword".into(),
        ),
        ("user".into(), user.into()),
        ("protocol".into(), service.into()),
        ("server".into(), host.into()),
    ]
}

/// Why the keyring could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "no system keyring is available ({reason}); store the password in a file read by passwordeval (e.g. passwordeval \"cat ~/.mail-password\"), in ~/.netrc, or enter it at the prompt"
    )]
    Unavailable { reason: String },
    #[error("the system keyring failed: {0}")]
    Failed(String),
    #[error("the system keyring did not answer within {} s (locked, waiting for an unlock prompt?)", TIMEOUT.as_secs())]
    TimedOut,
}

/// Whether a D-Bus session bus can be reached at all (else `secret-tool` might try to start
/// one through X11, or wait).
fn session_bus() -> Result<(), KeyringError> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR")
        && std::path::Path::new(&dir).join("bus").exists()
    {
        return Ok(());
    }
    Err(KeyringError::Unavailable {
        reason: "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set".into(),
    })
}

/// Runs `secret-tool ARGS` with `input` on stdin; stdout (bounded), stderr and success.
fn run(args: &[String], input: Option<&[u8]>) -> Result<(Vec<u8>, String, bool), KeyringError> {
    session_bus()?;
    let mut child = Command::new(SECRET_TOOL)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KeyringError::Unavailable {
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{SECRET_TOOL} is not installed (Debian: apt install libsecret-tools)")
            } else {
                format!("cannot run {SECRET_TOOL}: {e}")
            },
        })?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let _ = stdin.write_all(input);
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(MAX_SECRET_BYTES + 1).read_to_end(&mut buf);
        }
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr {
            let _ = s.take(4096).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(KeyringError::TimedOut);
            }
            Err(e) => return Err(KeyringError::Failed(e.to_string())),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let err: String = String::from_utf8_lossy(&err)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect::<String>()
        .trim()
        .to_owned();
    if out.len() as u64 > MAX_SECRET_BYTES {
        return Err(KeyringError::Failed(
            "the stored secret is too large".into(),
        ));
    }
    Ok((out, err, status.success()))
}

fn attribute_args(attributes: &[(String, String)]) -> Vec<String> {
    attributes
        .iter()
        .flat_map(|(k, v)| [k.clone(), v.clone()])
        .collect()
}

/// The secret stored under exactly these attributes, `Ok(None)` when there is none.
pub fn lookup(attributes: &[(String, String)]) -> Result<Option<String>, KeyringError> {
    let mut args = vec!["lookup".to_owned()];
    args.extend(attribute_args(attributes));
    let (out, err, ok) = run(&args, None)?;
    if !ok {
        // secret-tool exits 1 silently when nothing matches; with a message when the
        // service could not be reached.
        return if err.is_empty() {
            Ok(None)
        } else if err.contains("org.freedesktop.secrets") || err.contains("D-Bus") {
            Err(KeyringError::Unavailable { reason: err })
        } else {
            Err(KeyringError::Failed(err))
        };
    }
    let text = String::from_utf8(out)
        .map_err(|_| KeyringError::Failed("the stored secret is not UTF-8".into()))?;
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// Stores `secret` under `attributes` (replacing an item with the same attributes).
pub fn store(
    label: &str,
    attributes: &[(String, String)],
    secret: &str,
) -> Result<(), KeyringError> {
    let mut args = vec!["store".to_owned(), format!("--label={label}")];
    args.extend(attribute_args(attributes));
    let (_, err, ok) = run(&args, Some(secret.as_bytes()))?;
    if ok {
        Ok(())
    } else if err.contains("org.freedesktop.secrets") || err.contains("D-Bus") {
        Err(KeyringError::Unavailable { reason: err })
    } else {
        Err(KeyringError::Failed(if err.is_empty() {
            "secret-tool store failed".into()
        } else {
            err
        }))
    }
}

/// Parses `passwordkeyring`'s argument: `on` (msmtp's attributes) or `NAME=VALUE` pairs
/// separated by spaces or commas.
pub fn parse_attributes(arg: &str) -> Result<Vec<(String, String)>, String> {
    if arg.is_empty() || arg == "on" {
        return Ok(Vec::new());
    }
    arg.split([' ', ','])
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!(
                "invalid keyring attribute {pair:?}: use on, or NAME=VALUE pairs (e.g. \"service=imap user=joe\")"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_parsing() {
        assert_eq!(parse_attributes("on").unwrap(), vec![]);
        assert_eq!(
            parse_attributes("service=imap, user=joe").unwrap(),
            vec![
                ("service".into(), "imap".into()),
                ("user".into(), "joe".into())
            ]
        );
        assert!(parse_attributes("service").is_err());
        assert!(parse_attributes("=x").is_err());
    }
}
