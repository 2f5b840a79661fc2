//! The provider examples (examples/providers/: Gmail with an app password and with OAuth2,
//! Microsoft 365 with OAuth2, Fastmail with an app password; each as TOML, msmtprc and
//! fetchmailrc) stay valid: rsend --pretend and rfetch --configdump accept them without a
//! warning, and every OAuth2 account resolves to a grant with the provider's endpoints.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use postie::account::{AuthSetting, Env};

const NAMES: &[&str] = &[
    "gmail-app-password",
    "gmail-oauth2",
    "microsoft365-oauth2",
    "fastmail-app-password",
];

fn install(name: &str) -> (PathBuf, PathBuf) {
    let home = std::env::temp_dir().join(format!("postie-providers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let copy = home.join(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/providers")
            .join(name),
        &copy,
    )
    .unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    (home, copy)
}

fn ok(bin: &str, home: &Path, args: &[&str]) -> String {
    let o = Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("FETCHMAILHOME")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{bin} {args:?}: {err}");
    assert_eq!(err, "", "{bin} {args:?} warned");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_provider_example_is_accepted() {
    for name in NAMES {
        for ext in ["toml", "msmtprc"] {
            let (home, cfg) = install(&format!("{name}.{ext}"));
            let pretend = ok(
                env!("CARGO_BIN_EXE_rsend"),
                &home,
                &["-C", cfg.to_str().unwrap(), "--pretend"],
            );
            assert!(pretend.contains("host"), "{pretend}");
            let _ = std::fs::remove_dir_all(&home);
        }
        let (home, rc) = install(&format!("{name}.fetchmailrc"));
        let dump = ok(
            env!("CARGO_BIN_EXE_rfetch"),
            &home,
            &["-f", rc.to_str().unwrap(), "--configdump"],
        );
        assert!(dump.contains("poll"), "{dump}");
        let _ = std::fs::remove_dir_all(&home);
    }
}

#[test]
fn oauth_examples_resolve_to_the_provider_grant_for_both_directions() {
    for (name, token_url) in [
        ("gmail-oauth2", "https://oauth2.googleapis.com/token"),
        (
            "microsoft365-oauth2",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
        ),
    ] {
        let (home, cfg) = install(&format!("{name}.toml"));
        let env = Env {
            home: Some(home.clone()),
            sysconfdir: home.join("etc"),
            ..Env::default()
        };
        let set = postie::config::load_toml(&env, Some(&cfg)).unwrap();
        let account = &set.accounts[0];
        let submit = &account.submit.as_ref().unwrap().server;
        let fetch = &account.fetch.as_ref().unwrap().server;
        assert_eq!(submit.auth(), AuthSetting::Method("XOAUTH2".into()));
        assert_eq!(
            fetch.fetch_auth().unwrap(),
            postie::session::pop3::FetchAuth::Sasl(postie::proto::sasl::Mechanism::XOAuth2),
            "rfetch logs in with the provider's mechanism, not LOGIN"
        );
        let a = submit.oauth_grant(&env).unwrap().unwrap();
        let b = fetch.oauth_grant(&env).unwrap().unwrap();
        assert_eq!(a.profile.token_url, token_url);
        assert_eq!(
            a.token_file.path(),
            b.token_file.path(),
            "one grant for both directions"
        );
        assert!(
            a.token_file
                .path()
                .starts_with(home.join(".local/state/postie/oauth"))
        );
        let _ = std::fs::remove_dir_all(&home);
    }
}
