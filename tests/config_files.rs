//! Config files on disk: lookup order, the secret-file permission rule, `-C`, and the
//! reference stack's msmtprc resolved as msmtp resolves it. Hermetic: every test builds its own
//! temp HOME / XDG_CONFIG_HOME / sysconfdir and passes them through `Env`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use postie::ErrorKind;
use postie::account::{AuthSetting, Env, Secret};
use postie::config::{self, ConfigErrorKind, SelectedBy};
use postie::net::{Endpoint, TlsMode, Trust};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "postie-config-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("home")).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        TempDir(dir)
    }

    fn env(&self) -> Env {
        Env {
            home: Some(self.0.join("home")),
            xdg_config_home: None,
            sysconfdir: self.0.join("etc"),
            user: Some("alice".into()),
            hostname: Some("box".into()),
            mailname: None,
        }
    }

    fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn no_eval(_: &str) -> Result<String, String> {
    Err("unexpected eval".into())
}

const WITH_PASSWORD: &str = "account default\nhost mx.example\nauth on\nuser a\npassword s3cret\n";
const WITH_EVAL: &str =
    "account default\nhost mx.example\nauth on\nuser a\npasswordeval echo s3cret\n";

#[test]
fn world_readable_file_with_password_is_refused() {
    let t = TempDir::new("insecure");
    let rc = t.write("home/.msmtprc", WITH_PASSWORD, 0o644);
    let err = config::load_msmtprc_with(&t.env(), None, &mut no_eval).unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::Insecure);
    let msg = err.to_string();
    let file = rc.display().to_string();
    assert_eq!(
        msg,
        format!(
            "{file} contains a password and is readable by others (mode 0644); run: chmod 600 {file}"
        )
    );
    assert_eq!(postie::Error::from(err).kind(), ErrorKind::InsecureConfig);
    // The same through -C, and for the native TOML file.
    let c = t.write("elsewhere/rc", WITH_PASSWORD, 0o640);
    let err = config::load_msmtprc_with(&t.env(), Some(&c), &mut no_eval).unwrap_err();
    assert!(
        err.to_string().contains("(mode 0640); run: chmod 600"),
        "{err}"
    );
    let toml = t.write(
        "home/.config/postie/config.toml",
        "[accounts.a]\nhost = \"h\"\npassword = \"x\"\n",
        0o604,
    );
    let err = config::load_toml(&t.env(), None).unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::Insecure);
    assert!(err.to_string().starts_with(&toml.display().to_string()));
}

#[test]
fn private_file_with_password_is_accepted() {
    let t = TempDir::new("private");
    t.write("home/.msmtprc", WITH_PASSWORD, 0o600);
    let set = config::load_msmtprc_with(&t.env(), None, &mut no_eval).unwrap();
    let (acc, by) = set.select(None, None, &t.env()).unwrap();
    assert_eq!(by, SelectedBy::Default);
    let s = acc.submit().unwrap();
    assert_eq!(
        s.server.password.as_ref().unwrap().value,
        Secret::Inline("s3cret".into())
    );
    assert_eq!(
        s.server.password(&t.env()).unwrap().as_deref(),
        Some("s3cret")
    );
}

#[test]
fn passwordeval_only_file_may_be_world_readable() {
    let t = TempDir::new("eval");
    t.write("home/.msmtprc", WITH_EVAL, 0o644);
    let set = config::load_msmtprc_with(&t.env(), None, &mut no_eval).unwrap();
    let s = set.find("default").unwrap().submit().unwrap();
    assert_eq!(
        s.server.password(&t.env()).unwrap().as_deref(),
        Some("s3cret")
    );
}

#[test]
fn system_file_is_never_permission_checked_and_merges_after_user() {
    let t = TempDir::new("system");
    t.write(
        "etc/msmtprc",
        "account sys\nhost sys.example\npassword p\naccount shared\nhost from-system\n",
        0o644,
    );
    t.write(
        "home/.config/msmtp/config",
        "account shared\nhost from-user\n",
        0o644,
    );
    let set = config::load_msmtprc_with(&t.env(), None, &mut no_eval).unwrap();
    let names: Vec<_> = set.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["shared", "sys"],
        "user accounts first, system ones not redefined"
    );
    assert_eq!(
        set.find("shared").unwrap().submit().unwrap().server.host(),
        Some("from-user")
    );
    assert_eq!(set.loaded.len(), 2);
}

#[test]
fn home_msmtprc_wins_over_xdg_and_xdg_config_home_is_honoured() {
    let t = TempDir::new("lookup");
    let mut env = t.env();
    env.xdg_config_home = Some(t.0.join("xdg"));
    t.write("xdg/msmtp/config", "account x\nhost xdg\n", 0o600);
    let set = config::load_msmtprc_with(&env, None, &mut no_eval).unwrap();
    assert!(set.find("x").is_some());
    t.write("home/.msmtprc", "account h\nhost home\n", 0o600);
    let set = config::load_msmtprc_with(&env, None, &mut no_eval).unwrap();
    assert!(set.find("h").is_some());
    assert!(set.find("x").is_none());
    assert_eq!(
        config::msmtp_user_file(&env),
        Some(t.0.join("home/.msmtprc"))
    );
}

#[test]
fn unreadable_system_file_is_ignored_silently() {
    let t = TempDir::new("sysdir");
    // A directory where the file should be: reading fails even as root.
    fs::create_dir_all(t.0.join("etc/msmtprc")).unwrap();
    let set = config::load_msmtprc_with(&t.env(), None, &mut no_eval).unwrap();
    assert!(set.accounts.is_empty());
    let err = set.select(None, None, &t.env()).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "account default not found: no configuration file available (looked for: "
        ),
        "{err}"
    );
}

#[test]
fn missing_dash_c_file_is_file_unreadable() {
    let t = TempDir::new("missing");
    let missing = t.0.join("nope.rc");
    let err = config::load_msmtprc_with(&t.env(), Some(&missing), &mut no_eval).unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::Unreadable);
    assert_eq!(
        err.to_string(),
        format!("cannot read {}", missing.display())
    );
    assert_eq!(postie::Error::from(err).kind(), ErrorKind::FileUnreadable);
    let err = config::load_toml(&t.env(), Some(&missing)).unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::Unreadable);
    // The default TOML file may be absent.
    assert!(
        config::load_toml(&t.env(), None)
            .unwrap()
            .accounts
            .is_empty()
    );
}

#[test]
fn toml_file_is_found_under_xdg_config_home() {
    let t = TempDir::new("toml");
    let mut env = t.env();
    env.xdg_config_home = Some(t.0.join("xdg"));
    t.write(
        "xdg/postie/config.toml",
        "[accounts.default]\nhost = \"h\"\npasswordeval = \"echo x\"\n",
        0o644,
    );
    let set = config::load_toml(&env, None).unwrap();
    assert_eq!(set.select(None, None, &env).unwrap().0.name, "default");
}

/// An msmtprc as a mail stack's setup script writes it for its test clients (one account per
/// port of the stack, the stack's CA as trust file), with its `$DIR` and port variables filled in.
fn mailstack_msmtprc(dir: &Path) -> String {
    let c = dir.join("client").display().to_string();
    let d = dir.display().to_string();
    format!(
        "# msmtp -C {c}/msmtprc [-a ACCOUNT] RCPT... < message
defaults
tls on
tls_trust_file {d}/tls/ca.crt
auth on
from alice@localhost

# implicit TLS (SMTPS) + AUTH PLAIN
account smtps
host localhost
port 10465
tls_starttls off
auth plain
user alice
password alicepw

# implicit TLS over IPv6 loopback (the cert carries IP SANs 127.0.0.1 and ::1)
account smtps6 : smtps
host ::1

# STARTTLS submission + AUTH PLAIN
account submission
host localhost
port 10587
tls_starttls on
auth plain
user alice
password alicepw

# STARTTLS submission + AUTH LOGIN
account submission-login
host localhost
port 10587
tls_starttls on
auth login
user alice
password alicepw

# smtp-sink: no TLS, no AUTH (raw throughput)
account sink
host 127.0.0.1
port 10026
tls off
auth off

account default : smtps
"
    )
}

#[test]
fn mailstack_msmtprc_resolves_as_msmtp_would() {
    let t = TempDir::new("mailstack");
    let rc = t.write("client/msmtprc", &mailstack_msmtprc(&t.0), 0o600);
    let env = t.env();
    let set = config::load_msmtprc_with(&env, Some(&rc), &mut no_eval).unwrap();
    let names: Vec<_> = set.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "smtps",
            "smtps6",
            "submission",
            "submission-login",
            "sink",
            "default"
        ]
    );
    let ca = Trust::File(t.0.join("tls/ca.crt"));

    let pick = |name: Option<&str>, from: Option<&str>| {
        let (a, by) = set.select(name, from, &env).unwrap();
        (a.submit().unwrap().clone(), a.name.clone(), by)
    };

    let (s, _, by) = pick(Some("smtps"), None);
    assert_eq!(by, SelectedBy::Name);
    assert_eq!(
        s.endpoint().unwrap(),
        Endpoint {
            host: "localhost".into(),
            port: 10465
        }
    );
    assert_eq!(s.tls_mode(), TlsMode::Implicit);
    assert_eq!(s.tls_options().unwrap().trust, ca);
    assert_eq!(s.server.auth(), AuthSetting::Method("PLAIN".into()));
    assert_eq!(s.server.user(), Some("alice"));
    assert_eq!(s.server.password(&env).unwrap().as_deref(), Some("alicepw"));
    assert_eq!(s.from_address(&env).as_deref(), Some("alice@localhost"));
    assert_eq!(s.domain(&env), "localhost");
    s.validate().unwrap();

    let (s6, ..) = pick(Some("smtps6"), None);
    assert_eq!(
        s6.endpoint().unwrap(),
        Endpoint {
            host: "::1".into(),
            port: 10465
        }
    );
    assert_eq!(s6.tls_mode(), TlsMode::Implicit);
    assert_eq!(s6.server.user(), Some("alice"));

    let (sub, ..) = pick(Some("submission"), None);
    assert_eq!(
        sub.endpoint().unwrap(),
        Endpoint {
            host: "localhost".into(),
            port: 10587
        }
    );
    assert_eq!(sub.tls_mode(), TlsMode::Starttls);
    assert_eq!(sub.tls_options().unwrap().trust, ca);

    let (login, ..) = pick(Some("submission-login"), None);
    assert_eq!(login.server.auth(), AuthSetting::Method("LOGIN".into()));

    let (sink, ..) = pick(Some("sink"), None);
    assert_eq!(sink.tls_mode(), TlsMode::Off);
    assert_eq!(sink.server.auth(), AuthSetting::Off);
    assert_eq!(
        sink.endpoint().unwrap(),
        Endpoint {
            host: "127.0.0.1".into(),
            port: 10026
        }
    );
    assert!(!sink.server.danger_plaintext_auth());

    let (def, name, by) = pick(None, None);
    assert_eq!((name.as_str(), by), ("default", SelectedBy::Default));
    assert_eq!(def.endpoint().unwrap(), s.endpoint().unwrap());
    assert_eq!(def.tls_mode(), TlsMode::Implicit);
    assert_eq!(def.server.auth(), AuthSetting::Method("PLAIN".into()));
    assert_eq!(
        def.server.password(&env).unwrap().as_deref(),
        Some("alicepw")
    );

    // Every account has `from alice@localhost` (from defaults): -f picks the first, as msmtp.
    let (_, name, by) = pick(None, Some("alice+test@localhost"));
    assert_eq!((name.as_str(), by), ("smtps", SelectedBy::EnvelopeFrom));
    let (_, name, _) = pick(None, Some("bob@localhost"));
    assert_eq!(name, "default");

    let err = set.select(Some("nope"), None, &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("account nope not found (looked in: {})", rc.display())
    );
}
