//! The native TOML config reader. Key names are msmtprc's (and, for fetching, fetchmailrc's
//! where one exists), applied through the same key vocabulary as msmtprc
//! ([`crate::account::keys`]), so `tls_starttls = false` means exactly `tls_starttls off`.
//!
//! ```toml
//! default_account = "demo"          # optional; else the account named "default"
//! [defaults]                        # any account key; applies to every account
//! tls_trust_file = "/path/ca.crt"
//! [accounts.demo]
//! host = "localhost"
//! port = 465
//! tls_starttls = false
//! auth = "plain"                    # or true / "on" for automatic
//! user = "alice"
//! passwordeval = "pass show mail"   # or password = "..." (then the file must be mode 600),
//!                                   # or password = { keyring = true } (the system keyring)
//! from = "alice@localhost"
//! [accounts.demo.fetch]
//! protocol = "imap"                 # pop3 | imap (required)
//! port = 993                        # host, user, password and TLS settings default to the account's
//! tls_starttls = false
//! maildir = "~/Maildir"             # or mbox = "...", mda = ["procmail", "-d", "%T"],
//!                                   # lmtp = "host:port", smtp = "host:port"
//! recipient = "alice@localhost"     # RCPT TO for lmtp/smtp (default: $USER@localhost)
//! keep = false
//! folders = ["INBOX"]
//! ```
//!
//! Unlike msmtprc, `tls` defaults to on here (a built-in default): a new format has no
//! compatibility reason to start insecure.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::account::keys::{self, KeyError, KeyValue};
use crate::account::{
    Account, AuthSetting, Env, FetchProtocol, FetchSettings, Provenance, ServerSettings, Sourced,
    SubmitSettings,
};

use super::{ConfigError, Location};

/// A TOML config file, parsed.
#[derive(Debug, Clone)]
pub struct ParsedToml {
    pub path: PathBuf,
    /// In file order.
    pub accounts: Vec<Account>,
    /// Some table has a `password` key (so the permission rule applies).
    pub has_password: bool,
    /// Some table names a command rfetch or rsend will run (`passwordeval`, `mda`), so the
    /// file must not be writable by anyone else.
    pub has_command: bool,
    /// `default_account`, if set.
    pub default_account: Option<String>,
}

/// A key's value as written: TOML scalars become msmtprc-style text (`true` → `on`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<String>),
    /// Anything else (floats, dates, tables, mixed lists): rejected with a clear message.
    Other(::toml::Value),
}

impl Scalar {
    fn to_key_value(&self) -> KeyValue {
        match self {
            Scalar::Bool(b) => KeyValue::Text(if *b { "on" } else { "off" }.to_owned()),
            Scalar::Int(i) => KeyValue::Text(i.to_string()),
            Scalar::Str(s) => KeyValue::Text(s.clone()),
            Scalar::List(l) => KeyValue::List(l.clone()),
            Scalar::Other(v) => KeyValue::Text(v.to_string()),
        }
    }

    /// Text for msmtprc keys (a list joins with commas: `dsn_notify = ["failure", "delay"]`).
    fn to_text(&self) -> String {
        match self.to_key_value() {
            KeyValue::Text(t) => t,
            KeyValue::List(l) => l.join(","),
        }
    }
}

type Key = Option<Spanned<Scalar>>;

/// Declares a table struct whose fields are keys of the vocabulary, plus `entries()` listing
/// the ones present.
macro_rules! key_table {
    ($name:ident { $($key:ident),* $(,)? } $(extra { $($field:ident : $ty:ty),* })?) => {
        #[derive(Debug, Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $( #[serde(default)] $key: Key, )*
            $( $( #[serde(default)] $field: $ty, )* )?
        }

        impl $name {
            fn entries(&self) -> Vec<(&'static str, &Spanned<Scalar>)> {
                let mut out = Vec::new();
                $( if let Some(v) = &self.$key { out.push((stringify!($key), v)); } )*
                out
            }
        }
    };
}

key_table!(AccountTable {
    host, port, source_ip, timeout, auth, user, password, passwordeval, tls, tls_starttls,
    tls_trust_file, tls_fingerprint, tls_certcheck, tls_key_file, tls_cert_file,
    tls_host_override, danger_plaintext_auth, passwordkeyring, oauth_provider, oauth_client_id,
    oauth_client_secret, oauth_client_secret_eval, oauth_scope, oauth_authorize_url,
    oauth_token_url, oauth_device_url, oauth_tenant, oauth_token_file, oauth_token_store, socket,
    protocol, domain, from, from_full_name,
    allow_from_override, dsn_notify, dsn_return, set_from_header, set_date_header,
    set_msgid_header, set_to_header, remove_bcc_headers, logfile, logfile_time_format, syslog,
    aliases, queue, queue_dir, queue_max_age, proxy_host, proxy_port, proxy_user, proxy_password,
} extra { fetch: Option<Spanned<FetchTable>> });

key_table!(FetchTable {
    protocol,
    host,
    port,
    source_ip,
    timeout,
    auth,
    user,
    password,
    passwordeval,
    tls,
    tls_starttls,
    tls_trust_file,
    tls_fingerprint,
    tls_certcheck,
    tls_key_file,
    tls_cert_file,
    tls_host_override,
    danger_plaintext_auth,
    proxy_host,
    proxy_port,
    proxy_user,
    proxy_password,
    passwordkeyring,
    oauth_provider,
    oauth_client_id,
    oauth_client_secret,
    oauth_client_secret_eval,
    oauth_scope,
    oauth_authorize_url,
    oauth_token_url,
    oauth_device_url,
    oauth_tenant,
    oauth_token_file,
    oauth_token_store,
    folders,
    keep,
    fetchall,
    idle,
    maildir,
    mbox,
    mda,
    lmtp,
    smtp,
    recipient,
    limit,
    fetchlimit,
    batchlimit,
    limitflush,
    flush,
    expunge,
    idle_timeout,
    force_idle,
    max_connections,
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    #[serde(default)]
    default_account: Option<Spanned<String>>,
    #[serde(default)]
    defaults: Option<AccountTable>,
    #[serde(default)]
    accounts: BTreeMap<String, Spanned<AccountTable>>,
}

/// Line and column (1-based, in characters) of a byte offset.
#[cfg(test)]
fn line_col(text: &str, offset: usize) -> (u32, u32) {
    line_col_in(text, &line_starts(text), offset)
}

/// The byte offset where each line begins.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// [`line_col`] with the line starts computed once per file: a file with ten thousand accounts
/// has a hundred thousand keys, and counting lines from the top for each took minutes.
fn line_col_in(text: &str, starts: &[usize], offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let line = starts.partition_point(|&s| s <= offset).max(1);
    let start = starts.get(line - 1).copied().unwrap_or(0);
    let col = text.get(start..offset).map_or(0, |t| t.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

struct Ctx<'a> {
    text: &'a str,
    starts: Vec<usize>,
    path: &'a Path,
    env: &'a Env,
}

impl Ctx<'_> {
    fn location(&self, span: &Range<usize>) -> Location {
        let (line, col) = line_col_in(self.text, &self.starts, span.start);
        Location {
            path: self.path.to_owned(),
            line,
            column: Some(col),
        }
    }

    fn provenance(&self, span: &Range<usize>) -> Provenance {
        Provenance::file(
            self.path,
            line_col_in(self.text, &self.starts, span.start).0,
        )
    }

    fn error(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(Some(self.location(span)), message)
    }

    /// `password = { keyring = ... }` and `password = { eval = "..." }`: the table forms of
    /// `passwordkeyring` and `passwordeval` (`keyring = true` means msmtp's attributes,
    /// a string or list of strings gives `NAME=VALUE` attributes). `None` for anything else.
    fn password_table(
        &self,
        key: &str,
        v: &Spanned<Scalar>,
    ) -> Result<Option<(&'static str, String)>, ConfigError> {
        let Scalar::Other(::toml::Value::Table(table)) = v.get_ref() else {
            return Ok(None);
        };
        if key != "password" {
            return Ok(None);
        }
        let bad = || {
            self.error(
                &v.span(),
                "password as a table takes one key: keyring = true | \"NAME=VALUE ...\", or eval = \"command\"",
            )
        };
        let mut entries = table.iter();
        let (Some((name, value)), None) = (entries.next(), entries.next()) else {
            return Err(bad());
        };
        let text = match value {
            ::toml::Value::Boolean(true) => "on".to_owned(),
            ::toml::Value::String(s) => s.clone(),
            ::toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?
                .join(" "),
            _ => return Err(bad()),
        };
        match name.as_str() {
            "keyring" => Ok(Some(("passwordkeyring", text))),
            "eval" => Ok(Some(("passwordeval", text))),
            _ => Err(bad()),
        }
    }

    fn check_type(&self, key: &str, v: &Spanned<Scalar>) -> Result<(), ConfigError> {
        match v.get_ref() {
            Scalar::Other(value) => Err(self.error(
                &v.span(),
                format!(
                    "{key}: a {} is not allowed here; use a string, integer, boolean or list of strings",
                    value.type_str()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn key_error(&self, span: &Range<usize>, key: &str, e: KeyError) -> ConfigError {
        match e {
            KeyError::Unknown => self.error(span, format!("unknown key {key}")),
            KeyError::Invalid(m) => self.error(span, m),
        }
    }

    fn apply_submit(
        &self,
        s: &mut SubmitSettings,
        table: &AccountTable,
    ) -> Result<(), ConfigError> {
        for (key, v) in table.entries() {
            let (key, text) = match self.password_table(key, v)? {
                Some((key, text)) => (key, text),
                None => {
                    self.check_type(key, v)?;
                    (key, v.get_ref().to_text())
                }
            };
            let at = self.provenance(&v.span());
            match keys::set_submit(s, key, &text, &at, self.env) {
                Ok(Some(w)) => log::warn!("{at}: {w}"),
                Ok(None) => {}
                Err(e) => return Err(self.key_error(&v.span(), key, e)),
            }
        }
        Ok(())
    }
}

/// The server settings a fetch section inherits from its account: host, login, password, TLS
/// trust and the proxy (an account routed through Tor stays routed through it), but not the port, `tls_starttls` or `auth` (those differ between SMTP and
/// POP3/IMAP).
fn inherited_server(account: &ServerSettings) -> ServerSettings {
    ServerSettings {
        host: account.host.clone(),
        source_ip: account.source_ip.clone(),
        timeout: account.timeout.clone(),
        user: account.user.clone(),
        password: account.password.clone(),
        tls: account.tls.clone(),
        tls_trust_file: account.tls_trust_file.clone(),
        tls_fingerprint: account.tls_fingerprint.clone(),
        tls_certcheck: account.tls_certcheck.clone(),
        tls_key_file: account.tls_key_file.clone(),
        tls_cert_file: account.tls_cert_file.clone(),
        tls_host_override: account.tls_host_override.clone(),
        danger_plaintext_auth: account.danger_plaintext_auth.clone(),
        proxy_host: account.proxy_host.clone(),
        proxy_port: account.proxy_port.clone(),
        proxy_user: account.proxy_user.clone(),
        proxy_password: account.proxy_password.clone(),
        // One OAuth2 grant serves both directions of an account.
        oauth: account.oauth.clone(),
        ..ServerSettings::default()
    }
}

fn build_fetch(
    ctx: &Ctx<'_>,
    account: &ServerSettings,
    table: &Spanned<FetchTable>,
) -> Result<FetchSettings, ConfigError> {
    let t = table.get_ref();
    let Some(proto) = &t.protocol else {
        return Err(ctx.error(&table.span(), "fetch needs protocol = \"pop3\" or \"imap\""));
    };
    let protocol = match proto.get_ref() {
        Scalar::Str(p) if p.eq_ignore_ascii_case("pop3") => FetchProtocol::Pop3,
        Scalar::Str(p) if p.eq_ignore_ascii_case("imap") => FetchProtocol::Imap,
        _ => {
            return Err(ctx.error(&proto.span(), "protocol must be \"pop3\" or \"imap\""));
        }
    };
    let mut f = FetchSettings::new(Sourced::new(protocol, ctx.provenance(&proto.span())));
    f.server = inherited_server(account);
    for (key, v) in t.entries() {
        if key == "protocol" {
            continue;
        }
        let (key, value) = match ctx.password_table(key, v)? {
            Some((key, text)) => (key, KeyValue::Text(text)),
            None => {
                ctx.check_type(key, v)?;
                (key, v.get_ref().to_key_value())
            }
        };
        let at = ctx.provenance(&v.span());
        if key == "auth" {
            f.server.auth = Some(Sourced::new(fetch_auth(ctx, v)?, at));
            continue;
        }
        match keys::set_fetch(&mut f, key, &value, &at, ctx.env) {
            Ok(Some(w)) => log::warn!("{at}: {w}"),
            Ok(None) => {}
            Err(e) => return Err(ctx.key_error(&v.span(), key, e)),
        }
    }
    Ok(f)
}

/// A fetch section's `auth`: true/"on"/"any" for the automatic choice, or a method fetching
/// can use ("password", "apop", "cram-md5", "scram-sha-256", "external", ...); what postie
/// cannot do (GSSAPI, NTLM, Kerberos, ...) is an error here, never a fall back to the password.
fn fetch_auth(ctx: &Ctx<'_>, v: &Spanned<Scalar>) -> Result<AuthSetting, ConfigError> {
    let text = v.get_ref().to_text();
    match text.as_str() {
        "" | "on" | "off" => Ok(AuthSetting::Auto),
        name => match crate::session::auth::FetchAuth::from_name(name) {
            Some(crate::session::auth::FetchAuth::Any) => Ok(AuthSetting::Auto),
            Some(_) => Ok(AuthSetting::Method(name.to_ascii_uppercase())),
            None => Err(ctx.error(
                &v.span(),
                format!(
                    "auth {name:?} is not supported for fetching: use true, \"any\", \
                     \"password\", \"apop\", \"plain\", \"login\", \"cram-md5\", \
                     \"scram-sha-1\", \"scram-sha-256\" (or their -plus), \"external\", \
                     \"xoauth2\", \"oauthbearer\" or \"implicit\""
                ),
            )),
        },
    }
}

/// Parses the native TOML config. `path` is for provenance and messages only.
pub fn parse(text: &str, path: &Path, env: &Env) -> Result<ParsedToml, ConfigError> {
    let ctx = Ctx {
        text,
        starts: line_starts(text),
        path,
        env,
    };
    let file: FileTable = ::toml::from_str(text).map_err(|e| {
        let location = e.span().map(|s| ctx.location(&s)).or(Some(Location {
            path: path.to_owned(),
            line: 1,
            column: None,
        }));
        ConfigError::invalid(location, e.message().trim().to_owned())
    })?;

    // proxy_password is as secret as password.
    let is_password =
        |(k, _): &(&str, &Spanned<Scalar>)| *k == "password" || *k == "proxy_password";
    let is_command = |(k, _): &(&str, &Spanned<Scalar>)| matches!(*k, "passwordeval" | "mda");
    let mut has_password = file
        .defaults
        .as_ref()
        .is_some_and(|d| d.entries().iter().any(is_password));
    let mut has_command = file
        .defaults
        .as_ref()
        .is_some_and(|d| d.entries().iter().any(is_command));

    let mut base = SubmitSettings::default();
    keys::set_submit(&mut base, "tls", "on", &Provenance::Builtin, env)
        .map_err(|e| ctx.key_error(&(0..0), "tls", e))?;
    if let Some(d) = &file.defaults {
        if d.fetch.is_some() {
            return Err(ctx.error(&(0..0), "[defaults] cannot have a fetch table"));
        }
        ctx.apply_submit(&mut base, d)?;
    }

    let mut tables: Vec<(&String, &Spanned<AccountTable>)> = file.accounts.iter().collect();
    tables.sort_by_key(|(_, t)| t.span().start);

    let mut accounts = Vec::new();
    for (name, table) in tables {
        let t = table.get_ref();
        has_password |= t.entries().iter().any(is_password)
            || t.fetch
                .as_ref()
                .is_some_and(|f| f.get_ref().entries().iter().any(is_password));
        has_command |= t.entries().iter().any(is_command)
            || t.fetch
                .as_ref()
                .is_some_and(|f| f.get_ref().entries().iter().any(is_command));
        let mut submit = base.clone();
        ctx.apply_submit(&mut submit, t)?;
        let fetch = match &t.fetch {
            Some(f) => Some(build_fetch(&ctx, &submit.server, f)?),
            None => None,
        };
        // Before anything logs in: a password mechanism would send the OAuth2 token.
        submit.server.check_oauth_auth()?;
        if let Some(f) = &fetch {
            f.server.check_oauth_auth()?;
        }
        let has_submit_keys = !t.entries().is_empty() || file.defaults.is_some();
        accounts.push(Account {
            name: name.clone(),
            defined_at: ctx.provenance(&table.span()),
            submit: (has_submit_keys || fetch.is_none()).then_some(submit),
            fetch,
        });
    }

    let default_account = match &file.default_account {
        Some(d) => {
            if !accounts.iter().any(|a| &a.name == d.get_ref()) {
                return Err(ctx.error(
                    &d.span(),
                    format!(
                        "default_account {} is not defined in [accounts]",
                        d.get_ref()
                    ),
                ));
            }
            Some(d.get_ref().clone())
        }
        None => None,
    };

    Ok(ParsedToml {
        path: path.to_owned(),
        accounts,
        has_password,
        has_command,
        default_account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AuthSetting, Secret, Target};
    use crate::net::{Endpoint, TlsMode, Trust};

    fn env() -> Env {
        Env {
            home: Some("/home/a".into()),
            ..Default::default()
        }
    }

    fn parse_ok(text: &str) -> ParsedToml {
        match parse(text, Path::new("/c.toml"), &env()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(text, Path::new("/c.toml"), &env()) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    const EXAMPLE: &str = r#"
[defaults]
tls_trust_file = "/path/ca.crt"

[accounts.demo]
host = "localhost"
port = 465
tls = true
tls_starttls = false
auth = "plain"
user = "alice"
password = "alicepw"
from = "alice@localhost"

[accounts.demo.fetch]
protocol = "imap"
port = 993
tls_starttls = false
maildir = "/home/a/Maildir"
keep = false
folders = ["INBOX"]

[accounts.another]
host = "mx.example"
passwordeval = "pass mail"
auth = true
"#;

    #[test]
    fn the_documented_example() {
        let p = parse_ok(EXAMPLE);
        assert!(p.has_password);
        let names: Vec<_> = p.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["demo", "another"], "file order");
        let demo = &p.accounts[0];
        assert_eq!(demo.defined_at, Provenance::file("/c.toml", 5));
        let s = demo.submit().unwrap();
        assert_eq!(
            s.endpoint().unwrap(),
            Endpoint {
                host: "localhost".into(),
                port: 465
            }
        );
        assert_eq!(s.tls_mode(), TlsMode::Implicit);
        assert_eq!(
            s.tls_options().unwrap().trust,
            Trust::File("/path/ca.crt".into())
        );
        assert_eq!(s.server.auth(), AuthSetting::Method("PLAIN".into()));
        assert_eq!(
            s.server.password.as_ref().unwrap().value,
            Secret::Inline("alicepw".into())
        );
        assert_eq!(
            s.server.port.as_ref().unwrap().at,
            Provenance::file("/c.toml", 7)
        );
        let f = demo.fetch().unwrap();
        assert_eq!(
            f.endpoint().unwrap(),
            Endpoint {
                host: "localhost".into(),
                port: 993
            }
        );
        assert_eq!(f.tls_mode(), TlsMode::Implicit);
        assert_eq!(f.server.user(), Some("alice"));
        assert_eq!(
            f.server.password.as_ref().unwrap().value,
            Secret::Inline("alicepw".into())
        );
        assert_eq!(f.server.auth(), AuthSetting::Off, "auth is not inherited");
        assert_eq!(
            f.tls_options().unwrap().trust,
            Trust::File("/path/ca.crt".into())
        );
        assert_eq!(f.target(&env()), Target::Maildir("/home/a/Maildir".into()));
        assert_eq!(f.folders(), vec!["INBOX"]);
        let other = &p.accounts[1];
        let s = other.submit().unwrap();
        assert_eq!(
            s.tls_mode(),
            TlsMode::Starttls,
            "tls defaults to on in TOML"
        );
        assert_eq!(s.port(), Some(25));
        assert_eq!(s.server.auth(), AuthSetting::Auto);
        assert_eq!(s.server.tls.as_ref().unwrap().at, Provenance::Builtin);
        assert!(other.fetch.is_none());
    }

    #[test]
    fn fetch_defaults_and_targets() {
        let p = parse_ok(
            "[accounts.p]\n[accounts.p.fetch]\nprotocol = \"pop3\"\nhost = \"pop.example\"\nmda = [\"procmail\", \"-d\", \"%T\"]\n",
        );
        let f = p.accounts[0].fetch().unwrap();
        assert_eq!(f.endpoint().unwrap().port, 110);
        assert_eq!(f.tls_mode(), TlsMode::Starttls);
        assert_eq!(
            f.target(&env()),
            Target::Mda(vec!["procmail".into(), "-d".into(), "%T".into()])
        );
        assert!(p.accounts[0].submit.is_none());
        assert!(!p.has_password);
        let p = parse_ok(
            "[accounts.p.fetch]\nprotocol = \"imap\"\nhost = \"h\"\ntls_starttls = false\n",
        );
        let f = p.accounts[0].fetch().unwrap();
        assert_eq!(f.endpoint().unwrap().port, 993);
        assert_eq!(f.target(&env()), Target::Maildir("/home/a/Maildir".into()));
        assert!(f.recipient.is_none());
        let p = parse_ok(
            "[accounts.p.fetch]\nprotocol = \"imap\"\nhost = \"h\"\nlmtp = \"localhost:24\"\nrecipient = \"bob@localhost\"\n",
        );
        let r = p.accounts[0].fetch().unwrap().recipient.clone().unwrap();
        assert_eq!(r.value, "bob@localhost");
        assert_eq!(r.at, Provenance::file("/c.toml", 5));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "[accounts.a]\nhots = \"x\"\n",
                "/c.toml:2:1: unknown field `hots`",
            ),
            (
                "[accounts.a]\nport = 0\n",
                "/c.toml:2:8: invalid argument \"0\" for port",
            ),
            (
                "[accounts.a]\ntls = \"maybe\"\n",
                "/c.toml:2:7: invalid argument \"maybe\" for tls",
            ),
            (
                "[accounts.a.fetch]\nhost = \"h\"\n",
                "/c.toml:1:1: fetch needs protocol",
            ),
            (
                "[accounts.a.fetch]\nprotocol = \"nntp\"\n",
                "/c.toml:2:12: protocol must be",
            ),
            (
                "[accounts.a.fetch]\nprotocol = \"imap\"\nmda = \"procmail -d %T\"\n",
                "/c.toml:3:7: mda takes an argument list",
            ),
            (
                "default_account = \"zz\"\n[accounts.a]\n",
                "/c.toml:1:19: default_account zz is not defined",
            ),
            ("[accounts.a]\nhost = \n", "/c.toml:2:"),
            (
                "[accounts.a]\nport = 1.5\n",
                "/c.toml:2:8: port: a float is not allowed here",
            ),
            ("bogus = 1\n", "/c.toml:1:1: unknown field `bogus`"),
            (
                "[accounts.a.fetch]\nprotocol = \"imap\"\nfolder = \"x\"\n",
                "/c.toml:3:1: unknown field `folder`",
            ),
            (
                "[accounts.a.fetch]\nprotocol = \"imap\"\nrecipient = \"bob @localhost\"\n",
                "/c.toml:3:13: invalid argument \"bob @localhost\" for recipient",
            ),
            (
                "[accounts.a.fetch]\nprotocol = \"imap\"\nrecipient = [\"a@b\", \"c@d\"]\n",
                "/c.toml:3:13: recipient takes one value",
            ),
            (
                "[accounts.a.fetch]\nprotocol = \"imap\"\nrecipients = \"a@b\"\n",
                "/c.toml:3:1: unknown field `recipients`",
            ),
            (
                "[accounts.a]\nrecipient = \"a@b\"\n",
                "/c.toml:2:1: unknown field `recipient`",
            ),
        ];
        for (text, want) in cases {
            let e = parse_err(text);
            assert!(e.starts_with(want), "{text:?}: got {e:?}");
        }
    }

    #[test]
    fn proxy_keys_for_both_directions() {
        let p = parse_ok(
            "[accounts.a]\nhost = \"mail.example\"\nproxy_host = \"127.0.0.1\"\nproxy_port = 9050\n\
             proxy_user = \"u\"\nproxy_password = \"pw\"\n\
             [accounts.a.fetch]\nprotocol = \"imap\"\n\
             [accounts.b]\nhost = \"x\"\n[accounts.b.fetch]\nprotocol = \"pop3\"\nproxy_host = \"::1\"\n",
        );
        assert!(
            p.has_password,
            "proxy_password makes the file a secret file"
        );
        let a = &p.accounts[0];
        let proxy = a.submit().unwrap().server.proxy().unwrap();
        assert_eq!(
            (proxy.endpoint.host.as_str(), proxy.endpoint.port),
            ("127.0.0.1", 9050)
        );
        let fetch = a.fetch.as_ref().unwrap();
        assert_eq!(
            fetch.server.proxy(),
            Some(proxy),
            "the fetch section inherits the proxy"
        );
        assert!(matches!(
            fetch.connect_options().route,
            crate::net::Route::Socks5(_)
        ));
        let b = &p.accounts[1];
        assert!(b.submit().unwrap().server.proxy().is_none());
        let fp = b.fetch.as_ref().unwrap().server.proxy().unwrap();
        assert_eq!((fp.endpoint.host.as_str(), fp.endpoint.port), ("::1", 1080));
    }

    #[test]
    fn password_tables_name_keyring_and_eval() {
        use crate::account::Secret;
        let p = parse_ok(
            "[accounts.a]\nhost = \"h\"\npassword = { keyring = true }\n\
             [accounts.a.fetch]\nprotocol = \"imap\"\npassword = { keyring = [\"service=imap\", \"user=u\"] }\n\
             [accounts.b]\npassword = { eval = \"pass mail\" }\n",
        );
        let a = &p.accounts[0];
        let pw = |s: &crate::account::ServerSettings| s.password.as_ref().unwrap().value.clone();
        assert_eq!(
            pw(&a.submit.as_ref().unwrap().server),
            Secret::Keyring(vec![])
        );
        assert_eq!(
            pw(&a.fetch.as_ref().unwrap().server),
            Secret::Keyring(vec![
                ("service".into(), "imap".into()),
                ("user".into(), "u".into())
            ])
        );
        assert_eq!(
            pw(&p.accounts[1].submit.as_ref().unwrap().server),
            Secret::Command("pass mail".into())
        );
        for bad in [
            "password = { keyring = true, eval = \"x\" }",
            "password = { vault = \"x\" }",
            "password = { keyring = 3 }",
            "user = { keyring = true }",
        ] {
            let text = format!("[accounts.a]\n{bad}\n");
            assert!(
                parse(&text, Path::new("/c.toml"), &Env::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn password_detection() {
        assert!(parse_ok("[defaults]\npassword = \"x\"\n[accounts.a]\n").has_password);
        assert!(
            parse_ok("[accounts.a.fetch]\nprotocol = \"pop3\"\npassword = \"x\"\n").has_password
        );
        assert!(!parse_ok("[accounts.a]\npasswordeval = \"pass x\"\n").has_password);
        assert!(parse_ok("[accounts.a]\npasswordeval = \"pass x\"\n").has_command);
        assert!(
            parse_ok("[accounts.a.fetch]\nprotocol = \"pop3\"\nmda = [\"procmail\"]\n").has_command
        );
        assert!(!parse_ok("[accounts.a]\npassword = \"x\"\n").has_command);
    }

    #[test]
    fn default_account_and_lists() {
        let p = parse_ok(
            "default_account = \"b\"\n[accounts.a]\n[accounts.b]\ndsn_notify = [\"failure\", \"delay\"]\n",
        );
        assert_eq!(p.default_account.as_deref(), Some("b"));
        assert_eq!(
            p.accounts[1].submit().unwrap().dsn_notify(),
            crate::account::DsnNotify::On {
                failure: true,
                delay: true,
                success: false
            }
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé\nx", 0), (1, 1));
        assert_eq!(line_col("ab\ncé\nx", 3), (2, 1));
        assert_eq!(line_col("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
        assert_eq!(line_col("ab\n", 3), (2, 1));
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab\ncé\nx", 6), (2, 3));
    }

    #[test]
    fn password_auth_with_an_oauth_provider_is_refused() {
        let e = parse_err(
            "[accounts.a]\nhost = \"h\"\nuser = \"u\"\noauth_provider = \"google\"\n\
             oauth_client_id = \"c\"\nauth = \"plain\"\n",
        );
        assert!(e.starts_with("/c.toml:6"), "{e}");
        assert!(e.contains("oauth_provider"), "{e}");
        let e = parse_err(
            "[accounts.a]\nhost = \"h\"\nuser = \"u\"\noauth_provider = \"google\"\n\
             oauth_client_id = \"c\"\n[accounts.a.fetch]\nprotocol = \"imap\"\nauth = \"password\"\n",
        );
        assert!(e.starts_with("/c.toml:8"), "{e}");
        parse_ok(
            "[accounts.a]\nhost = \"h\"\nuser = \"u\"\noauth_provider = \"google\"\n\
             oauth_client_id = \"c\"\nauth = \"xoauth2\"\n[accounts.a.fetch]\nprotocol = \"imap\"\n\
             auth = \"oauthbearer\"\n",
        );
    }
}
