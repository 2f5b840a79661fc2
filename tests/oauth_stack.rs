//! OAuth2 against real parts: the stack's authorization server (python3-authlib) and a Dovecot
//! whose only passdb is `oauth2` (tokens checked by introspection), with Postfix submission
//! authenticating through it (tests/stack/oauth-stack.sh, started here when not running).
//! postie's own `postie oauth login --device` obtains the grant (the test plays the user who
//! approves the code); rsend submits with it; IMAP and POP3 log in with the token the account
//! gives; after the token expired, postie refreshes it (rotation stored) and all three log in
//! again. The rfetch binary does the same from a TOML account with oauth_* keys: the
//! provider's mechanism over IMAP and POP3, the token never in its -v -v trace, and a refresh
//! of its own once the token expired. Then the failures: a revoked grant names the command to run, a token endpoint that
//! hangs, answers garbage or fails, eight threads refreshing one grant at once (one refresh), the
//! browser flow, tokens kept in the system keyring, and an rfetch daemon that keeps polling its
//! other account while one grant is revoked.
//! Each test uses its own client id, so the server's per-client settings do not collide.

mod common;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use postie::ErrorKind;
use postie::account::{Env, Service};
use postie::net::{Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::sasl::Mechanism;
use postie::session::imap::{ImapSession, ImapSettings};
use postie::session::pop3::{FetchAuth, Pop3Session, Pop3Settings, Secret};

struct OAuthStack {
    stack: common::Stack,
    url: String,
    imap: u16,
    pop3: u16,
    submission: u16,
}

/// The stack with its OAuth2 part (started when missing: needs root, as the stack does).
fn oauth_stack() -> OAuthStack {
    let stack = common::Stack::get();
    let env_file = stack.dir.join("oauth/oauth.env");
    let up = || {
        std::fs::read_to_string(&env_file).ok().and_then(|text| {
            let var = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}=")))
                    .map(str::to_owned)
            };
            let url = var("OAUTH_URL")?;
            let port = |n: &str| var(n).and_then(|p| p.parse::<u16>().ok());
            let (imap, pop3, submission) = (
                port("OAUTH_IMAP_PORT")?,
                port("OAUTH_POP3_PORT")?,
                port("OAUTH_SUBMISSION_PORT")?,
            );
            std::net::TcpStream::connect(("127.0.0.1", imap)).ok()?;
            Some((url, imap, pop3, submission))
        })
    };
    // One `oauth-stack.sh up` for all tests of this binary (they run on parallel threads).
    static STARTED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    let found = up().or_else(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stack/oauth-stack.sh");
        // Root starts Dovecot itself; anyone else goes through sudo -n, as tests/run.sh does.
        let mut cmd = if rustix::process::geteuid().is_root() {
            Command::new(&script)
        } else {
            let mut c = Command::new("sudo");
            c.arg("-n").arg(&script);
            c
        };
        let status = cmd
            .arg("up")
            .arg(&stack.dir)
            .stdin(Stdio::null())
            .status()
            .expect("run oauth-stack.sh");
        assert!(status.success(), "tests/stack/oauth-stack.sh up failed");
        up()
    });
    let (url, imap, pop3, submission) = found.expect("the OAuth2 part of the stack is not up");
    OAuthStack {
        stack,
        url,
        imap,
        pop3,
        submission,
    }
}

/// The test's own HTTP client: never through a proxy from the environment.
fn direct() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .build(),
    )
}

fn post(url: &str, form: &[(&str, &str)]) -> String {
    direct()
        .post(url)
        .send_form(form.iter().copied())
        .expect("test control request")
        .into_body()
        .read_to_string()
        .expect("test control answer")
}

impl OAuthStack {
    fn configure(&self, client: &str, lifetime: u64, mode: &str) {
        post(
            &format!("{}/test/config", self.url),
            &[
                ("client_id", client),
                ("lifetime", &lifetime.to_string()),
                ("mode", mode),
            ],
        );
    }

    fn refreshes(&self, client: &str) -> u64 {
        let text = direct()
            .get(format!("{}/test/stats?client_id={client}", self.url))
            .call()
            .expect("stats")
            .into_body()
            .read_to_string()
            .expect("stats body");
        let v: serde_json::Value = serde_json::from_str(&text).expect("stats json");
        v["refresh"].as_u64().expect("refresh count")
    }

    /// A home directory with an msmtprc for `client` (the account `oauth`, user alice).
    fn home(&self, client: &str, mechanism: &str) -> Home {
        let dir = std::env::temp_dir().join(format!("postie-oauth-{client}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rc = dir.join("msmtprc");
        std::fs::write(
            &rc,
            format!(
                "account oauth\nhost 127.0.0.1\nport {port}\ntls on\ntls_starttls on\n\
                 tls_trust_file {ca}\nuser alice\nfrom alice@localhost\n{auth}\
                 oauth_provider generic\noauth_client_id {client}\noauth_scope mail\n\
                 oauth_token_url {url}/token\noauth_device_url {url}/device_authorization\n\
                 oauth_authorize_url {url}/authorize\ntimeout 5\naccount default : oauth\n",
                port = self.submission,
                ca = self.stack.ca().display(),
                auth = if mechanism.is_empty() {
                    String::new()
                } else {
                    format!("auth {mechanism}\n")
                },
                url = self.url,
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
        Home { dir, rc }
    }
}

struct Home {
    dir: PathBuf,
    rc: PathBuf,
}

impl Home {
    fn env(&self) -> Env {
        Env {
            home: Some(self.dir.clone()),
            sysconfdir: self.dir.join("etc"),
            user: Some("alice".into()),
            ..Env::default()
        }
    }

    fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.env("HOME", &self.dir)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            // A proxy that refuses everything: the loopback http:// endpoints must be reached
            // directly (through a proxy the form, refresh token included, would travel in clear).
            .env("http_proxy", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9");
        c
    }

    /// The account's server settings as rsend reads them.
    fn server(&self) -> postie::account::ServerSettings {
        let set = postie::config::load_msmtprc(&self.env(), Some(&self.rc)).expect("msmtprc");
        set.find("oauth")
            .expect("account oauth")
            .submit
            .clone()
            .expect("submit settings")
            .server
    }

    fn token_file(&self) -> PathBuf {
        let dir = self.dir.join(".local/state/postie/oauth");
        std::fs::read_dir(&dir)
            .expect("token dir")
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .expect("a token file")
    }
}

/// `postie oauth login --device`, approved by the test as the user would in a browser.
fn device_login(s: &OAuthStack, home: &Home, approve_as: &str) -> std::process::Output {
    device_login_with(
        s,
        home,
        approve_as,
        home.command(env!("CARGO_BIN_EXE_postie")),
    )
}

fn device_login_with(
    s: &OAuthStack,
    home: &Home,
    approve_as: &str,
    mut postie: Command,
) -> std::process::Output {
    let mut child = postie
        .args(["oauth", "login", "--device", "-C"])
        .arg(&home.rc)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("postie");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(code) = line.trim_end().rsplit(' ').next()
            && line.contains("enter the code")
        {
            assert!(line.contains(&format!("{}/device", s.url)), "{line}");
            post(
                &format!("{}/test/approve", s.url),
                &[("user_code", code), ("user", approve_as)],
            );
        }
    }
    let mut out = child.wait_with_output().expect("postie exit");
    out.stderr = seen.into_bytes();
    out
}

fn rsend(home: &Home, verbose: bool, to: &str, subject: &str) -> std::process::Output {
    let mut cmd = home.command(env!("CARGO_BIN_EXE_rsend"));
    cmd.arg("-C").arg(&home.rc);
    if verbose {
        cmd.arg("-v");
    }
    let mut child = cmd
        .arg(to)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsend");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("Subject: {subject}\n\nsent with OAuth2\n").as_bytes())
        .unwrap();
    child.wait_with_output().expect("rsend exit")
}

fn tls(s: &OAuthStack) -> TlsOptions {
    TlsOptions {
        trust: Trust::File(s.stack.ca()),
        ..TlsOptions::default()
    }
}

fn imap_login(s: &OAuthStack, token: &str, mech: Mechanism) -> postie::Result<()> {
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port: s.imap,
    };
    let mut settings = ImapSettings::new(ep, "alice", Secret::new(token));
    settings.tls_mode = TlsMode::Starttls;
    settings.tls = tls(s);
    // The token is the account's secret; the shared login path sends it with the mechanism.
    settings.auth = FetchAuth::Sasl(mech);
    let mut session = ImapSession::connect(&settings)?;
    session.login()?;
    session.select("INBOX")?;
    session.logout()
}

fn pop3_login(s: &OAuthStack, token: &str, mech: Mechanism) -> postie::Result<()> {
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port: s.pop3,
    };
    let mut settings = Pop3Settings::new(ep, "alice", Secret::new(token));
    settings.tls_mode = TlsMode::Starttls;
    settings.tls = tls(s);
    settings.auth = FetchAuth::Sasl(mech);
    let mut session = Pop3Session::connect(&settings)?;
    session.login()?;
    session.stat()?;
    Ok(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn device_login_then_smtp_imap_pop3_and_refresh_after_expiry() {
    let s = oauth_stack();
    let client = format!("postie-accept-{}", std::process::id());
    // Tokens live 6 s: postie renews a fifth of the life early, so a token is used for ~5 s.
    s.configure(&client, 6, "normal");
    let home = s.home(&client, "");

    let login = device_login(&s, &home, "alice");
    assert!(
        login.status.success(),
        "postie oauth login: {}",
        text(&login.stderr)
    );
    assert!(
        text(&login.stderr).contains("Authorized"),
        "{}",
        text(&login.stderr)
    );
    let token_file = home.token_file();
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    let first_refresh = stored["refresh_token"].as_str().unwrap().to_owned();
    let first_access = stored["access_token"].as_str().unwrap().to_owned();
    let login_output = text(&login.stderr) + &text(&login.stdout);
    for secret in [&first_access, &first_refresh] {
        assert!(
            !login_output.contains(secret.as_str()),
            "a token in postie's output"
        );
    }

    // SMTP submission (Postfix through the OAuth Dovecot), generic provider: OAUTHBEARER.
    let sent = rsend(&home, true, "bob@localhost", "oauth one");
    let trace = text(&sent.stderr);
    assert!(sent.status.success(), "rsend: {trace}");
    assert!(trace.contains("AUTH OAUTHBEARER"), "{trace}");
    for secret in [&first_access, &first_refresh] {
        assert!(
            !trace.contains(secret.as_str()),
            "a token in rsend -v output"
        );
    }

    // IMAP and POP3 with the token the account gives (the same grant), both mechanisms.
    let server = home.server();
    let token = server
        .password_for(Service::Imap, &home.env())
        .unwrap()
        .unwrap();
    assert_eq!(token, first_access, "the cached token is used while valid");
    imap_login(&s, &token, Mechanism::XOAuth2).expect("IMAP XOAUTH2");
    pop3_login(&s, &token, Mechanism::OAuthBearer).expect("POP3 OAUTHBEARER");
    assert_eq!(s.refreshes(&client), 0);

    // Past the expiry: Dovecot refuses the old token, postie refreshes and rotates.
    std::thread::sleep(Duration::from_secs(6));
    let refused = imap_login(&s, &first_access, Mechanism::XOAuth2).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Auth, "{}", refused.chain());
    let sent = rsend(&home, false, "bob@localhost", "oauth two");
    assert!(
        sent.status.success(),
        "rsend after expiry: {}",
        text(&sent.stderr)
    );
    assert_eq!(s.refreshes(&client), 1);
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    let second_refresh = stored["refresh_token"].as_str().unwrap();
    assert_ne!(
        second_refresh, first_refresh,
        "the rotated refresh token is stored"
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode after the rotation");
    let token = server
        .password_for(Service::Pop3, &home.env())
        .unwrap()
        .unwrap();
    assert_ne!(token, first_access);
    imap_login(&s, &token, Mechanism::OAuthBearer).expect("IMAP after refresh");
    pop3_login(&s, &token, Mechanism::XOAuth2).expect("POP3 after refresh");
    assert_eq!(s.refreshes(&client), 1, "one refresh serves every protocol");
    let _ = std::fs::remove_dir_all(&home.dir);
}

/// A grant stored by the device flow through the library, for the failure tests.
fn library_grant(s: &OAuthStack, client: &str, lifetime: u64) -> (Home, postie::oauth::Grant) {
    s.configure(client, lifetime, "normal");
    let home = s.home(client, "xoauth2");
    let out = device_login(s, &home, "alice");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut grant = home.server().oauth_grant(&home.env()).unwrap().unwrap();
    grant.timeout = Duration::from_secs(2);
    (home, grant)
}

#[test]
fn revoked_grant_tells_which_command_to_run() {
    let s = oauth_stack();
    let client = format!("postie-revoke-{}", std::process::id());
    let (home, _) = library_grant(&s, &client, 1);
    post(&format!("{}/test/revoke", s.url), &[("client_id", &client)]);
    std::thread::sleep(Duration::from_millis(1100));
    let sent = rsend(&home, false, "bob@localhost", "revoked");
    let err = text(&sent.stderr);
    assert_eq!(
        sent.status.code(),
        Some(77),
        "EX_NOPERM for a refused login: {err}"
    );
    assert!(err.contains("revoked or has expired"), "{err}");
    assert!(
        !err.contains("check user and password"),
        "a password hint for OAuth2: {err}"
    );
    assert!(err.contains("postie oauth login --user alice"), "{err}");
    let _ = std::fs::remove_dir_all(&home.dir);
}

#[test]
fn token_endpoint_that_hangs_fails_or_answers_garbage_is_a_clear_error() {
    let s = oauth_stack();
    let client = format!("postie-faults-{}", std::process::id());
    let (home, grant) = library_grant(&s, &client, 1);
    std::thread::sleep(Duration::from_millis(1100));
    let before = std::fs::read(grant.token_file.path()).unwrap();

    s.configure(&client, 1, "hang");
    let t0 = Instant::now();
    let e = postie::oauth::access_token(&grant).unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.kind().is_transient());

    s.configure(&client, 1, "garbage");
    let e = postie::oauth::access_token(&grant).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(e.to_string().contains("not a JSON object"), "{e}");

    s.configure(&client, 1, "error500");
    let e = postie::oauth::access_token(&grant).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary, "{e}");

    // Nothing was stored by the failures; the grant still works once the server recovers.
    assert_eq!(std::fs::read(grant.token_file.path()).unwrap(), before);
    s.configure(&client, 30, "normal");
    let token = postie::oauth::access_token(&grant).expect("refresh after recovery");
    imap_login(&s, &token, Mechanism::XOAuth2).expect("IMAP with the new token");
    let _ = std::fs::remove_dir_all(&home.dir);
}

#[test]
fn many_threads_and_processes_refresh_a_grant_once() {
    let s = oauth_stack();
    let client = format!("postie-stampede-{}", std::process::id());
    let (home, grant) = library_grant(&s, &client, 2);
    s.configure(&client, 60, "normal");
    std::thread::sleep(Duration::from_millis(2100));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (grant, barrier) = (grant.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                postie::oauth::access_token(&grant).expect("token")
            })
        })
        .collect();
    let tokens: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one shared token");
    assert_eq!(s.refreshes(&client), 1, "eight threads, one refresh");
    // A second process (postie oauth token) finds the fresh token: no refresh either.
    let out = home
        .command(env!("CARGO_BIN_EXE_postie"))
        .args(["oauth", "token", "-a", "oauth", "-C"])
        .arg(&home.rc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), tokens[0]);
    assert_eq!(s.refreshes(&client), 1);
    let _ = std::fs::remove_dir_all(&home.dir);
}

#[test]
fn browser_login_with_pkce_and_loopback_redirect() {
    let s = oauth_stack();
    let client = format!("postie-browser-{}", std::process::id());
    s.configure(&client, 60, "normal");
    let home = s.home(&client, "xoauth2");
    let mut child = home
        .command(env!("CARGO_BIN_EXE_postie"))
        .args(["oauth", "login", "--no-browser", "--wait", "20", "-C"])
        .arg(&home.rc)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("postie");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "no URL printed");
        if line.starts_with(&format!("{}/authorize?", s.url)) {
            break line.trim_end().to_owned();
        }
    };
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "login_hint=alice",
    ] {
        assert!(url.contains(param), "{param} in {url}");
    }
    // The "browser": the authorization server approves alice and redirects to the loopback.
    let agent = direct();
    let answer = agent.get(&url).call().expect("authorize");
    assert_eq!(answer.status().as_u16(), 302);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    // Another local program guessing the port, without the state: answered and ignored.
    let port_part = location.split('/').nth(2).unwrap().to_owned();
    let forged = agent
        .get(format!("http://{port_part}/?code=forged&state=guess"))
        .call()
        .expect("forged redirect")
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(forged.contains("Not a postie authorization"), "{forged}");
    let page = agent
        .get(&location)
        .call()
        .expect("redirect")
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(page.contains("authorized"), "{page}");
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "postie: {rest}");
    let token = home
        .server()
        .password_for(Service::Imap, &home.env())
        .unwrap()
        .unwrap();
    imap_login(&s, &token, Mechanism::XOAuth2).expect("IMAP with the browser-flow token");
    let _ = std::fs::remove_dir_all(&home.dir);
}

#[test]
fn tokens_kept_in_the_system_keyring() {
    let s = oauth_stack();
    let client = format!("postie-keyring-{}", std::process::id());
    s.configure(&client, 2, "normal");
    let home = s.home(&client, "");
    let mut rc = std::fs::read_to_string(&home.rc).unwrap();
    rc = rc.replace("timeout 5\n", "timeout 5\noauth_token_store keyring\n");
    std::fs::write(&home.rc, rc).unwrap();
    let k = common::keyring::Keyring::start("oauth");
    let with_keyring = |bin: &str| {
        let mut c = k.command(bin);
        c.env("HOME", &home.dir);
        c
    };
    let login = device_login_with(
        &s,
        &home,
        "alice",
        with_keyring(env!("CARGO_BIN_EXE_postie")),
    );
    assert!(login.status.success(), "{}", text(&login.stderr));
    let attrs = ["service", "oauth2", "user", "alice"];
    let item: serde_json::Value = serde_json::from_str(&k.lookup(&attrs)).expect("keyring item");
    let first_refresh = item["refresh_token"].as_str().unwrap().to_owned();
    let tokens = home.dir.join(".local/state/postie/oauth");
    let files: Vec<_> = std::fs::read_dir(&tokens)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        files.iter().all(|f| f.ends_with(".lock")),
        "only the lock on disk: {files:?}"
    );
    // After the expiry rsend refreshes; the rotated refresh token replaces the keyring item.
    std::thread::sleep(Duration::from_millis(2100));
    let mut cmd = with_keyring(env!("CARGO_BIN_EXE_rsend"));
    let mut child = cmd
        .arg("-C")
        .arg(&home.rc)
        .arg("bob@localhost")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: keyring tokens\n\nx\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "rsend: {}", text(&out.stderr));
    assert_eq!(s.refreshes(&client), 1);
    let item: serde_json::Value = serde_json::from_str(&k.lookup(&attrs)).unwrap();
    assert_ne!(item["refresh_token"].as_str().unwrap(), first_refresh);
    let _ = std::fs::remove_dir_all(&home.dir);
}

#[test]
fn daemon_keeps_polling_other_accounts_when_a_grant_is_revoked() {
    let s = oauth_stack();
    let client = format!("postie-daemon-{}", std::process::id());
    let (home, _) = library_grant(&s, &client, 1);
    post(&format!("{}/test/revoke", s.url), &[("client_id", &client)]);
    std::thread::sleep(Duration::from_millis(1100));
    let cfg = home.dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\ntls_trust_file = \"{ca}\"\nhost = \"127.0.0.1\"\ntimeout = 10\n\
             [accounts.revoked]\nuser = \"alice\"\noauth_provider = \"generic\"\n\
             oauth_client_id = \"{client}\"\noauth_token_url = \"{url}/token\"\n\
             [accounts.revoked.fetch]\nprotocol = \"imap\"\nport = {imap}\nkeep = true\n\
             maildir = \"{md}\"\n\
             [accounts.bob]\nuser = \"bob\"\npassword = \"bobpw\"\n\
             [accounts.bob.fetch]\nprotocol = \"imap\"\nport = {imaps}\ntls_starttls = false\n\
             keep = true\nmaildir = \"{md}\"\n",
            ca = s.stack.ca().display(),
            url = s.url,
            imap = s.imap,
            imaps = s.stack.port("IMAPS_PORT"),
            md = home.dir.join("Maildir").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(home.dir.join("Maildir").join(sub)).unwrap();
    }
    let log = home.dir.join("rfetch.log");
    let mut daemon = home
        .command(env!("CARGO_BIN_EXE_rfetch"))
        .args(["-N", "-d", "1", "-v", "-C"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    while read().matches("account bob: next poll in").count() < 3
        || read().matches("postie oauth login --user alice").count() < 2
    {
        if Instant::now() > deadline || daemon.try_wait().unwrap().is_some() {
            let _ = daemon.kill();
            panic!("rfetch daemon log:\n{}", read());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let text = read();
    assert!(text.contains("revoked or has expired"), "{text}");
    assert_eq!(s.refreshes(&client), 0, "a revoked grant is never accepted");
    let _ = std::fs::remove_dir_all(&home.dir);
}

/// The words of a trace that are base64, decoded: a SASL initial response carries the token
/// inside base64, where a plain `contains` would never find it.
fn base64_words(trace: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    trace
        .split(|c: char| c.is_whitespace() || c == '"')
        .filter(|w| w.len() >= 16)
        .filter_map(|w| base64::engine::general_purpose::STANDARD.decode(w).ok())
        .collect()
}

/// rfetch -v -v for one account of `cfg`; the output with the tokens checked absent.
fn rfetch_oauth(home: &Home, cfg: &Path, account: &str, secrets: &[&str]) -> String {
    let out = home
        .command(env!("CARGO_BIN_EXE_rfetch"))
        .args(["-v", "-v", "-C"])
        .arg(cfg)
        .arg(account)
        .stdin(Stdio::null())
        .output()
        .expect("rfetch");
    let trace = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "rfetch {account}: {trace}");
    assert_no_secret(&trace, secrets);
    trace
}

/// No secret in `trace`, neither as itself nor inside a base64 word.
fn assert_no_secret(trace: &str, secrets: &[&str]) {
    let decoded = base64_words(trace);
    for secret in secrets {
        assert!(!trace.contains(secret), "a token in the output: {trace}");
        assert!(
            !decoded
                .iter()
                .any(|d| d.windows(secret.len()).any(|w| w == secret.as_bytes())),
            "a token in base64 in the output: {trace}"
        );
    }
}

/// Subjects of the messages in the Maildir `md` (new and cur).
fn maildir_subjects(md: &Path) -> Vec<String> {
    let mut subjects = Vec::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(md.join(sub)).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            if let Some(s) = text(&body)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
            {
                subjects.push(s.trim_end().to_owned());
            }
        }
    }
    subjects
}

#[test]
fn rfetch_logs_in_with_the_grant_over_imap_and_pop3_and_refreshes_by_itself() {
    let s = oauth_stack();
    let client = format!("postie-rfetch-{}", std::process::id());
    // Tokens live 6 s (used for ~5 s, postie renews a fifth of the life early).
    s.configure(&client, 6, "normal");
    let home = s.home(&client, "");
    // bob's INBOX is the fetch tests' shared fixture: held while rfetch empties it.
    let _bob = common::mailbox::lock_bob(&s.stack);
    let rc = std::fs::read_to_string(&home.rc)
        .unwrap()
        .replace("user alice\n", "user bob\n");
    std::fs::write(&home.rc, rc).unwrap();
    let login = device_login(&s, &home, "bob");
    let logged_in = Instant::now();
    assert!(login.status.success(), "{}", text(&login.stderr));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.token_file()).unwrap()).unwrap();
    let first_access = stored["access_token"].as_str().unwrap().to_owned();
    let first_refresh = stored["refresh_token"].as_str().unwrap().to_owned();

    // The oauth_* keys of the account, inherited by its fetch table; no auth key: the
    // provider's mechanism (OAUTHBEARER for a generic server) is the default.
    let md = home.dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let account = |name: &str, protocol: &str, port: u16| {
        format!(
            "[accounts.{name}]\nhost = \"127.0.0.1\"\nuser = \"bob\"\ntimeout = 5\n\
             tls_trust_file = \"{ca}\"\noauth_provider = \"generic\"\n\
             oauth_client_id = \"{client}\"\noauth_scope = \"mail\"\n\
             oauth_token_url = \"{url}/token\"\n\
             [accounts.{name}.fetch]\nprotocol = \"{protocol}\"\nport = {port}\n\
             tls_starttls = true\nkeep = false\nmaildir = \"{md}\"\n",
            ca = s.stack.ca().display(),
            url = s.url,
            md = md.display(),
        )
    };
    let cfg = home.dir.join("config.toml");
    std::fs::write(
        &cfg,
        account("viaimap", "imap", s.imap) + &account("viapop3", "pop3", s.pop3),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let message = |subject: &str| {
        format!("From: a@localhost\nSubject: {subject}\nMessage-ID: <{subject}@t>\n\nbody\n")
            .into_bytes()
    };
    let secrets = [first_access.as_str(), first_refresh.as_str()];
    let polls = [
        ("viaimap", "AUTHENTICATE OAUTHBEARER"),
        ("viapop3", "AUTH OAUTHBEARER"),
    ];

    // With the cached token: each protocol logs in with the provider's mechanism.
    for (name, command) in polls {
        let subject = format!("rfetch-oauth-{name}-{client}");
        common::mailbox::seed(&s.stack, &[message(&subject)]);
        let trace = rfetch_oauth(&home, &cfg, name, &secrets);
        assert!(trace.contains(command), "{name}: {trace}");
        assert!(!trace.contains(" LOGIN "), "{name}: {trace}");
        assert!(maildir_subjects(&md).contains(&subject), "{name}: {trace}");
    }
    assert_eq!(s.refreshes(&client), 0, "the cached token was used");

    // Past the expiry: rfetch refreshes by itself (once), the rotation is stored.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(logged_in.elapsed()));
    let refused = imap_login(&s, &first_access, Mechanism::OAuthBearer).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Auth, "{}", refused.chain());
    let mut traces = String::new();
    for (name, command) in polls {
        let subject = format!("rfetch-oauth-{name}-{client}-refreshed");
        common::mailbox::seed(&s.stack, &[message(&subject)]);
        let trace = rfetch_oauth(&home, &cfg, name, &secrets);
        assert!(trace.contains(command), "{name}: {trace}");
        assert!(maildir_subjects(&md).contains(&subject), "{name}: {trace}");
        assert_eq!(s.refreshes(&client), 1, "{name}: one refresh for both");
        if name == "viaimap" {
            assert!(trace.contains("(refresh_token grant)"), "{trace}");
        }
        traces.push_str(&trace);
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.token_file()).unwrap()).unwrap();
    let (access, refresh) = (
        stored["access_token"].as_str().unwrap(),
        stored["refresh_token"].as_str().unwrap(),
    );
    assert_ne!(access, first_access);
    assert_ne!(
        refresh, first_refresh,
        "the rotated refresh token is stored"
    );
    assert_no_secret(&traces, &[access, refresh]);
    let _ = std::fs::remove_dir_all(&home.dir);
}
