//! The `postie` administration command: man/postie.1 is generated from the same source as
//! `--help` (regenerate with POSTIE_BLESS=1 cargo test --test postie_cli), and its errors say
//! what to do: no OAuth2 account, a grant never authorized, a device flow against a provider
//! profile without a device endpoint.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

#[test]
fn postie_man_page_is_current() {
    let page = postie::cli::postie::postie_page();
    let text = String::from_utf8_lossy(&page);
    assert!(text.contains("REGISTERING A CLIENT") && text.contains("oauth_provider"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/postie.1");
    if std::env::var_os("POSTIE_BLESS").is_some() {
        std::fs::write(&path, &page).expect("write man page");
        return;
    }
    assert!(
        std::fs::read(&path).unwrap_or_default() == page,
        "man/postie.1 is out of date; regenerate with: POSTIE_BLESS=1 cargo test --test postie_cli"
    );
}

fn postie(home: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_postie"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn errors_name_the_fix() {
    let home = std::env::temp_dir().join(format!("postie-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let rc = home.join("msmtprc");
    std::fs::write(&rc, "account plain\nhost mail.example\nuser ann\n").unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = postie(&home, &["oauth", "token", "-C", rc.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("no account has an oauth_provider setting"),
        "{err}"
    );

    std::fs::write(
        &rc,
        "account m\nhost smtp.office365.com\nuser ann@contoso.com\noauth_provider microsoft\n\
         oauth_client_id cid\naccount g\nhost smtp.example\nuser ann\noauth_provider generic\n\
         oauth_client_id cid\noauth_token_url https://idp.example/token\n",
    )
    .unwrap();
    let (code, out, err) = postie(
        &home,
        &["oauth", "token", "-a", "m", "-C", rc.to_str().unwrap()],
    );
    assert_eq!(code, 77, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("no OAuth2 authorization for ann@contoso.com yet"),
        "{err}"
    );
    assert!(
        err.contains("postie oauth login --user ann@contoso.com"),
        "{err}"
    );
    let (code, _, err) = postie(&home, &["oauth", "token", "-C", rc.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("-a NAME or --user USER"), "{err}");
    let (code, _, err) = postie(
        &home,
        &[
            "oauth",
            "login",
            "--device",
            "--user",
            "ann",
            "-C",
            rc.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("no device authorization endpoint"), "{err}");
    let _ = std::fs::remove_dir_all(&home);
}
