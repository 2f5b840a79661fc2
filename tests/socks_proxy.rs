//! SOCKS5 through a real proxy (Debian's microsocks, bound to 127.0.0.1) against the real stack:
//! rsend submits with implicit TLS and with STARTTLS, with and without RFC 1929 credentials;
//! rfetch fetches over IMAP and POP3. The proxy's own log shows it was asked for the server by
//! name (so it, not rsend, resolved it). A configured proxy that is down or refuses the
//! credentials is an error, and the server is never contacted directly.

mod common;
use common::rfetch::*;
use std::path::PathBuf;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::rsend::{TempDir, assert_exit, describe, maildir, rsend, unique, wait_for, write_rc};

/// The microsocks binary, or the test fails (never skips) saying how to install it.
fn microsocks_binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("microsocks"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "microsocks is not installed; tests/stack/stack.sh deps tests installs it \
                 (apt-get install microsocks)"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A microsocks process on 127.0.0.1, killed (by its own PID) on drop; its stderr is the log
/// of every connection it made for a client.
struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    fn start(credentials: Option<(&str, &str)>) -> Proxy {
        let port = free_port();
        let mut cmd = std::process::Command::new(microsocks_binary());
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, password)) = credentials {
            cmd.args(["-u", user, "-P", password]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start microsocks");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "microsocks did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy { child, port }
    }

    /// Stops the proxy and returns what it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut log);
        }
        log
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The msmtprc for alice on the stack, with `proxy_lines` in the defaults. The host is the
/// name `localhost`: the proxy resolves it and TLS verifies the certificate against it.
fn rc_text(stack: &common::Stack, proxy_lines: &str) -> String {
    format!(
        "defaults\n\
         tls on\n\
         tls_trust_file {ca}\n\
         auth on\n\
         user alice\n\
         password alicepw\n\
         from alice@localhost\n\
         host localhost\n\
         {proxy_lines}\n\
         account smtps\n\
         port {smtps}\n\
         tls_starttls off\n\
         account sub\n\
         port {sub}\n",
        ca = stack.ca().display(),
        smtps = stack.port("SMTPS_PORT"),
        sub = stack.port("SUBMISSION_PORT"),
    )
}

fn message(marker: &str) -> Vec<u8> {
    format!("From: alice@localhost\nTo: alice@localhost\nSubject: {marker}\n\nthrough the proxy\n")
        .into_bytes()
}

#[test]
fn rsend_submits_through_socks5_with_implicit_tls_and_starttls() {
    let stack = common::Stack::get();
    let dir = TempDir::new("socks-rsend");

    // No authentication at the proxy; implicit TLS; the proxy comes from the rc file.
    let proxy = Proxy::start(None);
    let rc = write_rc(
        dir.path(),
        &rc_text(
            &stack,
            &format!("proxy_host 127.0.0.1\nproxy_port {}", proxy.port),
        ),
        0o600,
    );
    let marker = unique("socks-smtps");
    let out = rsend(
        &["-C", rc.to_str().unwrap(), "-a", "smtps", "alice@localhost"],
        &message(&marker),
    );
    assert_exit(&out, 0);
    wait_for(&maildir(&stack, "alice"), &marker);
    let log = proxy.stop();
    let smtps = stack.port("SMTPS_PORT");
    assert!(
        log.contains(&format!("connected to localhost:{smtps}")),
        "the proxy was not asked for localhost by name: {log:?}"
    );

    // Username/password at the proxy (from the rc file), STARTTLS, proxy from the command
    // line; the proxy password never shows in the debug output.
    let proxy = Proxy::start(Some(("tor-user", "proxy-s3cret")));
    let rc = write_rc(
        dir.path(),
        &rc_text(&stack, "proxy_user tor-user\nproxy_password proxy-s3cret"),
        0o600,
    );
    let marker = unique("socks-sub");
    let proxy_host = "--proxy-host=127.0.0.1".to_string();
    let proxy_port = format!("--proxy-port={}", proxy.port);
    let out = rsend(
        &[
            "-v",
            "-C",
            rc.to_str().unwrap(),
            "-a",
            "sub",
            &proxy_host,
            &proxy_port,
            "alice@localhost",
        ],
        &message(&marker),
    );
    assert_exit(&out, 0);
    let all = describe(&out);
    assert!(
        !all.contains("proxy-s3cret"),
        "proxy password leaked: {all}"
    );
    wait_for(&maildir(&stack, "alice"), &marker);
    let sub = stack.port("SUBMISSION_PORT");
    let log = proxy.stop();
    assert!(
        log.contains(&format!("connected to localhost:{sub}")),
        "{log:?}"
    );

    // The same proxy refuses a client without credentials, and one with a wrong password:
    // proxy errors (69, msmtp's code for SOCKS errors), nothing sent, no hint about the mail
    // account's password.
    let proxy = Proxy::start(Some(("tor-user", "proxy-s3cret")));
    for extra in ["", "proxy_user tor-user\nproxy_password wrong"] {
        let rc = write_rc(
            dir.path(),
            &rc_text(
                &stack,
                &format!("proxy_host 127.0.0.1\nproxy_port {}\n{extra}", proxy.port),
            ),
            0o600,
        );
        let out = rsend(
            &["-C", rc.to_str().unwrap(), "-a", "smtps", "alice@localhost"],
            &message(&unique("socks-refused")),
        );
        assert_exit(&out, 69);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("SOCKS5 proxy 127.0.0.1:"), "{err}");
        assert!(!err.contains("check user and password"), "{err}");
        assert!(
            !err.contains("proxy-s3cret") && !err.contains("wrong"),
            "{err}"
        );
    }
    let log = proxy.stop();
    assert!(!log.contains("connected to"), "{log:?}");
}

/// A listener standing in for the server: any connection to it is a direct connection.
fn tripwire() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

fn assert_untouched(server: &TcpListener) {
    assert_eq!(
        server.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the server was contacted directly although a proxy is configured"
    );
}

#[test]
fn a_configured_proxy_that_is_down_is_an_error_never_a_direct_connection() {
    let dir = TempDir::new("socks-down");
    let server = tripwire();
    let dead = free_port();
    let rc = write_rc(
        dir.path(),
        &format!(
            "account default\nhost 127.0.0.1\nport {}\nfrom a@localhost\ntimeout 3\n\
             proxy_host 127.0.0.1\nproxy_port {dead}\n",
            server.local_addr().unwrap().port()
        ),
        0o600,
    );
    let out = rsend(
        &["-C", rc.to_str().unwrap(), "a@localhost"],
        b"Subject: x\n\nx\n",
    );
    assert_exit(&out, 75);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("SOCKS5 proxy 127.0.0.1:{dead}")),
        "{err}"
    );
    assert_untouched(&server);

    // --pretend shows the proxy, and its password only as "*".
    let rc_text = std::fs::read_to_string(&rc).unwrap();
    std::fs::write(
        &rc,
        format!("{rc_text}proxy_user u\nproxy_password pretend-s3cret\n"),
    )
    .unwrap();
    let out = rsend(&["-C", rc.to_str().unwrap(), "-P"], b"");
    assert_exit(&out, 0);
    let text = describe(&out);
    assert!(
        text.contains(&format!("proxy_port            = {dead}")),
        "{text}"
    );
    assert!(text.contains("proxy_password        = *"), "{text}");
    assert!(!text.contains("pretend-s3cret"), "{text}");

    // rfetch: the same for a fetch account (exit 2, fetchmail's socket error).
    let fdir = tempdir("socks-down");
    let cfg = write_config(
        &fdir,
        &format!(
            "[accounts.bob]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"bobpw\"\n\
             timeout = 3\nproxy_host = \"127.0.0.1\"\nproxy_port = {dead}\n\
             [accounts.bob.fetch]\nprotocol = \"imap\"\nport = {}\ntls = false\n\
             danger_plaintext_auth = true\nmaildir = \"{}\"\n",
            server.local_addr().unwrap().port(),
            fdir.join("Maildir").display()
        ),
    );
    let o = rfetch(&fdir, &["-C", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains(&format!("SOCKS5 proxy 127.0.0.1:{dead}")),
        "{err}"
    );
    assert_untouched(&server);
    let _ = std::fs::remove_dir_all(&fdir);
}

#[test]
fn rfetch_fetches_through_socks5_over_imap_and_pop3() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    for (proto, port, starttls) in [
        ("imap", s.port("IMAP_PORT"), true),
        ("pop3", s.port("POP3S_PORT"), false),
    ] {
        let proxy = Proxy::start(Some(("fetcher", "pw-for-proxy")));
        let dir = tempdir(&format!("socks-{proto}"));
        clear_bob(&s);
        let marker = unique(&format!("socks-fetch-{proto}"));
        put_bob(
            &s,
            &dir,
            "m1",
            format!("From: a@x\nTo: bob@localhost\nSubject: {marker}\n\nvia socks\n").as_bytes(),
        );
        let md = dir.join("Maildir");
        let cfg = write_config(
            &dir,
            &format!(
                "[accounts.bob]\nhost = \"localhost\"\nuser = \"bob\"\npassword = \"bobpw\"\n\
                 tls_trust_file = \"{ca}\"\n\
                 [accounts.bob.fetch]\nprotocol = \"{proto}\"\nport = {port}\n\
                 tls_starttls = {starttls}\nmaildir = \"{md}\"\n\
                 proxy_host = \"127.0.0.1\"\nproxy_port = {pport}\n\
                 proxy_user = \"fetcher\"\nproxy_password = \"pw-for-proxy\"\n",
                ca = s.ca().display(),
                md = md.display(),
                pport = proxy.port,
            ),
        );
        let o = rfetch(&dir, &["-v", "-C", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 0, "{proto}: {err}");
        assert!(
            !err.contains("pw-for-proxy"),
            "{proto}: proxy password leaked: {err}"
        );
        let got = maildir_messages(&md);
        assert_eq!(got.len(), 1, "{proto}: {err}");
        assert!(
            String::from_utf8_lossy(&got[0]).contains(&marker),
            "{proto}: wrong message"
        );
        let log = proxy.stop();
        assert!(
            log.contains(&format!("connected to localhost:{port}")),
            "{proto}: the proxy was not asked for localhost by name: {log:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
