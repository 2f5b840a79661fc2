//! The commands fetchmail runs around a poll: `plugin` (a command whose stdin/stdout is the
//! connection to the mail server), `plugout` (the same for the SMTP/LMTP listener), and
//! `preconnect`/`postconnect` (shell commands run before the poll connects and after it ended).
//!
//! `%h` and `%p` in a plugin command are the host and port. The host comes from the
//! configuration, but it is still a value spliced into a shell line, so it is passed the way the
//! MDA's `%F`/`%T` are ([`expand_connect_command`]): as a positional parameter the shell
//! substitutes after parsing, never as text the shell parses.
//!
//! A plugin's stream is whatever its command makes of it; rfetch cannot see whether ssh or
//! openssl encrypted it. So rfetch's own rules apply over it unchanged: `ssl` runs the TLS
//! handshake through the command (verified against the poll's name), otherwise STARTTLS is
//! required, and a password is sent only over rfetch's own TLS (or with the danger switch): the
//! far end of the stream is a process, never a loopback address. The one exception is
//! `auth ssh` (fetchmail's "the plugin authenticates", e.g. `ssh host imapd` answering PREAUTH):
//! no password is sent at all, so no TLS is demanded (`poll::link`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::deliver::mda::expand_connect_command;
use crate::error::{Error, ErrorKind, Result};
use crate::net::{ConnectOptions, Endpoint, Route};

/// How long a `preconnect` or `postconnect` command may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The commands of one poll, as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectHooks {
    /// `plugin`/`--plugin`: the connection to the mail server.
    pub plugin: Option<String>,
    /// `plugout`/`--plugout`: the connection to the SMTP/LMTP listener.
    pub plugout: Option<String>,
    /// `preconnect`: run before the poll connects; a failure aborts the poll.
    pub preconnect: Option<String>,
    /// `postconnect`: run after the poll (also after a failed one); a failure is reported.
    pub postconnect: Option<String>,
}

/// Checks a plugin command line for what [`expand_connect_command`] refuses, without running it.
pub fn check_connect_command(cmd: &str) -> std::result::Result<(), String> {
    expand_connect_command(cmd, "host", 0).map(|_| ())
}

/// `opts` with the route replaced by `command` (a plugin) for `ep`, when there is one.
pub fn route_through(
    command: Option<&str>,
    ep: &Endpoint,
    mut opts: ConnectOptions,
) -> Result<ConnectOptions> {
    if let Some(cmd) = command {
        let invocation = expand_connect_command(cmd, &ep.host, ep.port)
            .map_err(|why| Error::new(ErrorKind::Config, format!("plugin {cmd:?}: {why}")))?;
        opts.route = Route::Command(invocation.argv());
    }
    Ok(opts)
}

/// The `preconnect` command of `account`, when there is one.
pub fn preconnect(account: &str, hooks: &ConnectHooks) -> Result<()> {
    match &hooks.preconnect {
        Some(cmd) => run_hook("preconnect", account, cmd),
        None => Ok(()),
    }
}

/// The `postconnect` command of `account`, when there is one.
pub fn postconnect(account: &str, hooks: &ConnectHooks) -> Result<()> {
    match &hooks.postconnect {
        Some(cmd) => run_hook("postconnect", account, cmd),
        None => Ok(()),
    }
}

/// Runs a `preconnect`/`postconnect` command (`which` names it) through `/bin/sh -c`, with the
/// poll's stdin closed and a time bound; its output goes where rfetch's goes. A non-zero exit
/// or a death by a signal is an error of kind `Config` (fetchmail's exit 5).
pub fn run_hook(which: &str, account: &str, cmd: &str) -> Result<()> {
    let failed = |why: String| {
        Error::new(
            ErrorKind::Config,
            format!("account {account}: {which} command {cmd:?} {why}"),
        )
    };
    log::debug!("account {account}: running {which} command {cmd:?}");
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("could not be started: {e}")))?;
    let deadline = Instant::now() + HOOK_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                // The hook's background processes too, not only its shell.
                crate::process::kill_tree_and_reap(&mut child);
                return Err(failed(format!(
                    "did not finish within {} s and was killed",
                    HOOK_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(failed(format!("could not be waited for: {e}"))),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(failed(format!("failed ({status})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_gets_host_and_port_as_parameters_never_as_shell_text() {
        let ep = Endpoint {
            host: "x;touch /tmp/pwned;$(id)".into(),
            port: 993,
        };
        let opts =
            route_through(Some("ssh %h '%p' imapd"), &ep, ConnectOptions::default()).unwrap();
        let Route::Command(argv) = opts.route else {
            panic!("not a command route")
        };
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[2], r#"ssh "${1}" ''"${2}"'' imapd"#);
        assert_eq!(argv[4..], ["x;touch /tmp/pwned;$(id)", "993"]);
        let refused = route_through(Some("sh -c 'ssh %h'"), &ep, ConnectOptions::default());
        assert!(refused.unwrap_err().to_string().contains("-c"));
        assert!(check_connect_command("eval ssh %h").is_err());
        assert!(check_connect_command("  ").is_err());
        assert!(check_connect_command("socat - TCP:%h:%p").is_ok());
        let none = route_through(None, &ep, ConnectOptions::default()).unwrap();
        assert_eq!(none.route, Route::Direct);
    }

    #[test]
    fn a_failing_hook_is_an_error_naming_it_and_a_good_one_is_not() {
        assert!(run_hook("preconnect", "a", "true").is_ok());
        let e = run_hook("preconnect", "a", "exit 3").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string()
                .contains("preconnect command \"exit 3\" failed"),
            "{e}"
        );
    }
}
