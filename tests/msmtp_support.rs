//! No silent divergence from msmtp: every msmtprc directive of msmtp 1.8 is in exactly one of
//! rsend's three sets (`msmtprc::MSMTPRC_DIRECTIVES`), and the reader does what the set says:
//! refused is an error naming the file, line and why; warned is a warning naming the directive
//! and what rsend does instead; implemented changes the account rsend builds.

use std::path::Path;

use postie::account::Env;
use postie::config::msmtprc::{MSMTPRC_DIRECTIVES, Support, directive_support, parse};

/// msmtp 1.8's directives (msmtp(1) "CONFIGURATION FILES", conf.c read_conffile) with a
/// sample argument that differs from the default.
const DIRECTIVES: &[(&str, &str)] = &[
    ("defaults", ""),
    ("account", "other"),
    ("eval", "echo host evaluated.example.org"),
    ("host", "mail.example.org"),
    ("port", "2525"),
    ("source_ip", "127.0.0.1"),
    ("proxy_host", "127.0.0.1"),
    ("proxy_port", "9050"),
    ("socket", "/run/smtp.sock"),
    ("timeout", "30"),
    ("connect_timeout", "30"),
    ("protocol", "lmtp"),
    ("domain", "client.example.org"),
    ("auth", "plain"),
    ("user", "bob"),
    ("password", "secret"),
    ("passwordeval", "echo secret"),
    ("ntlmdomain", "DOM"),
    ("tls", "on"),
    ("tls_starttls", "off"),
    ("tls_nostarttls", ""),
    ("tls_trust_file", "/ca.pem"),
    ("tls_crl_file", "/crl.pem"),
    (
        "tls_fingerprint",
        "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
    ),
    ("tls_certcheck", "off"),
    ("tls_nocertcheck", ""),
    ("tls_key_file", "/k.pem"),
    ("tls_cert_file", "/c.pem"),
    ("tls_priorities", "NORMAL:-VERS-TLS1.0"),
    ("tls_host_override", "mail.example.org"),
    ("tls_min_dh_prime_bits", "2048"),
    ("tls_force_sslv3", "on"),
    ("from", "other@example.org"),
    ("from_full_name", "Bob"),
    ("allow_from_override", "off"),
    ("dsn_notify", "failure"),
    ("dsn_return", "full"),
    ("set_from_header", "on"),
    ("add_missing_from_header", "off"),
    ("set_date_header", "off"),
    ("add_missing_date_header", "off"),
    ("set_msgid_header", "off"),
    ("set_to_header", "on"),
    ("undisclosed_recipients", "on"),
    ("remove_bcc_headers", "off"),
    ("keepbcc", "on"),
    ("logfile", "/tmp/log"),
    ("logfile_time_format", "%H"),
    ("syslog", "LOG_MAIL"),
    ("aliases", "/etc/aliases"),
    ("auto_from", "on"),
    ("maildomain", "example.org"),
];

/// Implemented directives that ask for what rsend always does.
const ALWAYS_SO: &[(&str, &str)] = &[
    ("tls_force_sslv3", "msmtp ignores it too"),
    // Structure rather than a setting: its effect (the settings after it become the defaults
    // of the accounts after it) is msmtprc's defaults_apply_to_following_accounts_only_in_order.
    ("defaults", "structure"),
];

fn env() -> Env {
    Env {
        home: Some("/home/u".into()),
        user: Some("u".into()),
        ..Env::from_process()
    }
}

fn text(line4: &str) -> String {
    format!("account a\nhost h\nfrom f@example.org\n{line4}\n")
}

#[test]
fn every_directive_does_what_its_set_says() {
    let env = env();
    let path = Path::new("/m");
    let mut eval =
        |cmd: &str| -> Result<String, String> { Ok(cmd.trim_start_matches("echo ").to_owned()) };
    let baseline = parse(&text(""), path, &env, &mut eval).unwrap();
    let mut failures = Vec::new();
    for (name, _) in MSMTPRC_DIRECTIVES {
        if !DIRECTIVES.iter().any(|(d, _)| d == name) {
            failures.push(format!("{name} is in the table but not an msmtp directive"));
        }
    }
    for (i, (name, _)) in MSMTPRC_DIRECTIVES.iter().enumerate() {
        if MSMTPRC_DIRECTIVES[..i].iter().any(|(o, _)| o == name) {
            failures.push(format!("{name} is in the table twice"));
        }
    }
    for &(name, arg) in DIRECTIVES {
        let Some(support) = directive_support(name) else {
            failures.push(format!("{name} is in none of the three sets"));
            continue;
        };
        let line = format!("{name} {arg}");
        let parsed = parse(&text(line.trim()), path, &env, &mut eval);
        match support {
            Support::Refused(why) => match parsed {
                Ok(_) => failures.push(format!("{name}: refused, but accepted")),
                Err(e) => {
                    let m = e.to_string();
                    if !m.contains("/m:4") || !m.contains(&format!("{name} is refused: {why}")) {
                        failures.push(format!("{name}: refusal does not name /m:4 and why: {m}"));
                    }
                }
            },
            Support::Warned(instead) => match parsed {
                Err(e) => failures.push(format!("{name}: warned, but refused: {e}")),
                Ok(p) => {
                    if p.warnings.len() != 1
                        || !p.warnings[0].contains("/m:4")
                        || !p.warnings[0]
                            .contains(&format!("{name} is ignored by rsend: {instead}"))
                    {
                        failures.push(format!(
                            "{name}: expected one warning naming it: {:?}",
                            p.warnings
                        ));
                    }
                }
            },
            Support::Implemented => match parsed {
                Err(e) => failures.push(format!("{name}: implemented, but refused: {e}")),
                Ok(p) => {
                    if !p.warnings.is_empty() {
                        failures.push(format!("{name}: implemented, but warned: {:?}", p.warnings));
                    }
                    if ALWAYS_SO.iter().any(|(d, _)| *d == name) {
                        continue;
                    }
                    if format!("{:?}", p.accounts) == format!("{:?}", baseline.accounts) {
                        failures.push(format!(
                            "{name}: implemented, but the account is the same without it"
                        ));
                    }
                }
            },
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn auto_from_off_is_what_rsend_does() {
    let mut eval = |_: &str| -> Result<String, String> { Err("no eval".into()) };
    let p = parse(&text("auto_from off"), Path::new("/m"), &env(), &mut eval).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}
