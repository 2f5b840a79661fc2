//! The fetchmailrc grammar against real-world files (the fetchmail man page's examples, Debian's
//! template, a Gmail-with-procmail setup), error positions,
//! warnings for unimplemented keywords, defaults inheritance, configdump, and permissions.

use std::path::{Path, PathBuf};

use postie::config::fetchmailrc::{
    AuthType, BadHeader, Envelope, FetchmailRc, FetchmailRcError, LocalName, Protocol,
    check_rc_permissions, configdump, parse_fetchmailrc, read_fetchmailrc,
};

fn parse(text: &str) -> FetchmailRc {
    parse_fetchmailrc(text, Path::new("/home/u/.fetchmailrc"))
        .unwrap_or_else(|e| panic!("{e}\n--- input ---\n{text}"))
}

fn syntax_error(text: &str) -> (u32, String) {
    match parse_fetchmailrc(text, Path::new("/home/u/.fetchmailrc")) {
        Err(FetchmailRcError::Syntax { line, message, .. }) => (line, message),
        other => panic!("expected a syntax error for {text:?}, got {other:?}"),
    }
}

fn local(name: &str) -> LocalName {
    LocalName {
        server_name: None,
        local: name.into(),
    }
}

#[test]
fn man_page_configuration_examples() {
    // Each line of the man page's examples is a complete rc file on its own.
    let rc = parse(r#"poll pop.provider.net proto pop3 user "jsmith" password "secret1""#);
    let p = &rc.polls[0];
    assert_eq!(p.label, "pop.provider.net");
    assert_eq!(p.server.protocol.as_ref().unwrap().value, Protocol::Pop3);
    assert_eq!(p.users[0].remote_name(), Some("jsmith"));
    assert_eq!(
        p.users[0].options.password.as_ref().unwrap().value.expose(),
        "secret1"
    );

    let rc = parse("defaults proto pop3 user \"jsmith\"\npoll pop.provider.net pass \"secret1\"\n");
    let eff = rc.effective_polls();
    assert_eq!(
        eff[0].server.protocol.as_ref().unwrap().value,
        Protocol::Pop3
    );
    assert_eq!(eff[0].users[0].remote_name(), Some("jsmith"));
    assert_eq!(
        eff[0].users[0]
            .options
            .password
            .as_ref()
            .unwrap()
            .value
            .expose(),
        "secret1"
    );
    assert!(eff[0].users[0].implicit);

    let rc = parse(r#"poll mail.provider.net user "jjsmith" there has password "secret2""#);
    assert_eq!(rc.polls[0].users[0].remote_name(), Some("jjsmith"));

    let rc = parse(
        "poll pop.provider.net proto pop3 port 3111\n\
         \tuser \"jsmith\" with pass \"secret1\" is \"smith\" here\n\
         \tuser jones with pass \"secret2\" is \"jjones\" here keep\n",
    );
    let p = &rc.polls[0];
    assert_eq!(p.server.service.as_ref().unwrap().value, "3111");
    assert_eq!(p.users.len(), 2);
    assert_eq!(p.users[0].remote_name(), Some("jsmith"));
    assert_eq!(p.users[0].locals, [local("smith")]);
    assert_eq!(p.users[0].line, 2);
    assert_eq!(p.users[1].remote_name(), Some("jones"));
    assert_eq!(p.users[1].locals, [local("jjones")]);
    assert!(p.users[1].options.keep.as_ref().unwrap().value);
    assert!(p.users[0].options.keep.is_none());

    let rc = parse(
        "poll pop.provider.net:  user maildrop with pass secret1 to golux 'hurkle'='happy' snark here",
    );
    let u = &rc.polls[0].users[0];
    assert_eq!(u.remote_name(), Some("maildrop"));
    assert_eq!(
        u.locals,
        [
            local("golux"),
            LocalName {
                server_name: Some("hurkle".into()),
                local: "happy".into()
            },
            local("snark")
        ]
    );
    assert!(u.is_multidrop());

    let rc = parse(
        "poll pop.provider.net localdomains loonytoons.org toons.org envelope X-Envelope-To\n\
         \tuser maildrop with pass secret1 to * here",
    );
    let p = &rc.polls[0];
    assert_eq!(
        p.server.localdomains.as_ref().unwrap().value,
        ["loonytoons.org", "toons.org"]
    );
    assert_eq!(
        p.server.envelope.as_ref().unwrap().value,
        Envelope::Header {
            skip: 0,
            name: "X-Envelope-To".into()
        }
    );
    assert!(p.users[0].wildcard && p.users[0].locals.is_empty());

    let rc = parse(
        r#"poll mailhost.net with proto imap: plugin "ssh %h /usr/sbin/imapd" auth ssh; user esr is esr here"#,
    );
    let p = &rc.polls[0];
    assert_eq!(p.server.auth.as_ref().unwrap().value, AuthType::Implicit);
    assert_eq!(p.users[0].locals, [local("esr")]);
    assert_eq!(
        p.server.plugin.as_ref().unwrap().value,
        "ssh %h /usr/sbin/imapd"
    );
    assert!(rc.warnings.is_empty() && rc.refusals.is_empty());
}

#[test]
fn debian_template() {
    let rc = parse(
        "set daemon 300\nset no bouncemail\n\ndefaults:\n  antispam -1\n  batchlimit 100\n\
         #poll foo.bar.org with protocol pop3\n\
         #  user baka there is localbaka here smtphost smtp.foo.bar.org;\n",
    );
    assert_eq!(rc.globals.daemon.as_ref().unwrap().value, 300);
    assert!(!rc.globals.bouncemail.as_ref().unwrap().value);
    let d = rc.defaults.as_ref().unwrap();
    assert_eq!(d.users[0].options.antispam.as_ref().unwrap().value, [-1]);
    assert_eq!(d.users[0].options.batchlimit.as_ref().unwrap().value, 100);
    assert!(rc.polls.is_empty());
}

#[test]
fn gmail_with_procmail() {
    let rc = parse(
        "defaults\n    proto IMAP\n    timeout 30\n    port 993\n    ssl\n    sslcertck\n\
         poll imap.gmail.com with proto IMAP\n  user \"youremail@gmail.com\" there with password \"YOUR_APP_PASSWORD\"\n\
         \x20 mda \"/opt/homebrew/bin/procmail -d $USER\"\n  keep\n",
    );
    let eff = rc.effective_polls();
    let p = &eff[0];
    assert_eq!(p.server.protocol.as_ref().unwrap().value, Protocol::Imap);
    assert_eq!(p.server.timeout.as_ref().unwrap().value, 30);
    assert_eq!(p.server.timeout.as_ref().unwrap().line, 3);
    assert_eq!(p.server.service.as_ref().unwrap().value, "993");
    let u = &p.users[0];
    assert_eq!(u.remote_name(), Some("youremail@gmail.com"));
    assert!(
        u.options.ssl.as_ref().unwrap().value,
        "ssl inherited from defaults"
    );
    assert!(u.options.sslcertck.as_ref().unwrap().value);
    assert_eq!(
        u.options.mda.as_ref().unwrap().value,
        "/opt/homebrew/bin/procmail -d $USER"
    );
    assert!(u.options.keep.as_ref().unwrap().value);
}

const CORNER_CASES: &str = r#"set daemon 300
set logfile "fm.log"
set no bouncemail
set softbounce
set properties "x"
defaults proto imap timeout 60 auth password
  user "u" there is "v" here ssl sslproto "tls1.2+"
poll imap.example.org via mail.example.org service 993 interval 2 tracepolls
  user "alice@example.org" there with password "se cret" is alice here
    ssl sslcertck folder INBOX,Lists limit 1000000 warnings 3600 fetchlimit 50 batchlimit 10 expunge 5
    mda "/usr/bin/procmail -d %T" no rewrite stripcr dropstatus dropdelivered
poll pop.example.org proto pop3 uidl
  user bob pass 'x y' is bob here keep smtphost localhost/2525 antispam 571 550 fastuidl 4 fetchsizelimit 1
skip multi.example.org proto pop3 envelope 1 "Delivered-To" qvirtual "mbox-" aka ex.org localdomains ex.org no dns
  user maildrop pass p to golux 'hurkle'='happy' * here smtpaddress example.org lmtp smtphost /var/run/lmtp
"#;

#[test]
fn grammar_corner_cases() {
    let rc = parse(CORNER_CASES);
    let g = &rc.globals;
    assert_eq!(
        g.logfile.as_ref().unwrap().value,
        PathBuf::from("/home/u/fm.log"),
        "relative to the rc file's directory"
    );
    assert!(!g.bouncemail.as_ref().unwrap().value);
    assert!(g.softbounce.as_ref().unwrap().value);
    assert_eq!(g.properties.as_ref().unwrap().value, "x");

    let eff = rc.effective_polls();
    assert_eq!(eff.len(), 3);
    let imap = &eff[0];
    assert_eq!(imap.host(), "mail.example.org");
    assert_eq!(imap.server.protocol.as_ref().unwrap().value, Protocol::Imap);
    assert_eq!(imap.server.auth.as_ref().unwrap().value, AuthType::Password);
    assert_eq!(imap.server.interval.as_ref().unwrap().value, 2);
    assert!(imap.server.tracepolls.as_ref().unwrap().value);
    let alice = &imap.users[0];
    assert_eq!(alice.remote_name(), Some("alice@example.org"));
    assert_eq!(
        alice.options.password.as_ref().unwrap().value.expose(),
        "se cret"
    );
    assert_eq!(
        alice.options.folders.as_ref().unwrap().value,
        ["INBOX", "Lists"]
    );
    assert_eq!(alice.options.limit.as_ref().unwrap().value, 1_000_000);
    assert_eq!(alice.options.fetchlimit.as_ref().unwrap().value, 50);
    assert_eq!(alice.options.expunge.as_ref().unwrap().value, 5);
    assert_eq!(alice.options.expunge.as_ref().unwrap().line, 10);
    assert!(!alice.options.rewrite.as_ref().unwrap().value);
    assert!(alice.options.stripcr.as_ref().unwrap().value);
    assert_eq!(
        alice.options.sslproto.as_ref().unwrap().value,
        "tls1.2+",
        "from defaults"
    );

    let pop = &eff[1];
    assert_eq!(pop.server.protocol.as_ref().unwrap().value, Protocol::Pop3);
    assert_eq!(
        pop.server.timeout.as_ref().unwrap().value,
        60,
        "from defaults"
    );
    assert!(pop.server.uidl.as_ref().unwrap().value);
    let bob = &pop.users[0];
    assert_eq!(bob.options.password.as_ref().unwrap().value.expose(), "x y");
    assert_eq!(
        bob.options.smtphosts.as_ref().unwrap().value,
        ["localhost/2525"]
    );
    assert_eq!(bob.options.antispam.as_ref().unwrap().value, [571, 550]);
    assert!(
        bob.options.ssl.as_ref().unwrap().value,
        "user options from defaults"
    );

    let multi = &eff[2];
    assert!(multi.skip);
    assert_eq!(
        multi.server.envelope.as_ref().unwrap().value,
        Envelope::Header {
            skip: 1,
            name: "Delivered-To".into()
        }
    );
    assert!(!multi.server.dns.as_ref().unwrap().value);
    let md = &multi.users[0];
    assert!(md.wildcard);
    assert_eq!(md.locals.len(), 2);
    assert!(md.options.lmtp.as_ref().unwrap().value);
    assert_eq!(
        md.options.smtphosts.as_ref().unwrap().value,
        ["/var/run/lmtp"]
    );

    let warned: Vec<(&str, u32)> = rc
        .warnings
        .iter()
        .map(|w| (w.keyword.as_str(), w.line))
        .collect();
    // qvirtual is implemented (multidrop), and `no dns` is what rfetch does.
    assert_eq!(
        warned,
        [
            ("tracepolls", 8),
            ("warnings", 10),
            ("fastuidl", 13),
            ("fetchsizelimit", 13)
        ]
    );
    let refused: Vec<(&str, u32)> = rc
        .refusals
        .iter()
        .map(|r| (r.keyword.as_str(), r.line))
        .collect();
    assert_eq!(refused, REFUSED_CORNER_CASES);
}

/// What rfetch refuses in the corner-case file: nothing since stripcr, dropstatus,
/// dropdelivered and antispam are implemented.
const REFUSED_CORNER_CASES: &[(&str, u32)] = &[];

#[test]
fn configdump_is_readable_and_reparses_to_the_same_dump() {
    let rc = parse(CORNER_CASES);
    let dump = configdump(&rc);
    assert!(
        dump.contains("poll \"imap.example.org\"    # line 8"),
        "{dump}"
    );
    assert!(dump.contains("password \"<redacted>\""), "{dump}");
    assert!(!dump.contains("se cret"), "secrets never printed");
    assert!(dump.contains("folder \"INBOX\" \"Lists\""), "{dump}");
    assert!(dump.contains("no rewrite"), "{dump}");
    assert!(dump.contains("\"hurkle\"=\"happy\""), "{dump}");
    assert!(
        dump.contains("# warning: /home/u/.fetchmailrc:8: `tracepolls`"),
        "{dump}"
    );
    let again = configdump(&parse(&dump));
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split('#').next().unwrap().trim_end().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(strip(&again), strip(&dump));
}

#[test]
fn lexical_rules() {
    // Escapes, quotes of both kinds spanning lines, comments, noise words, punctuation.
    let rc = parse(
        "# comment\npoll \"a.example\" with options proto pop3 ; and\n\
         user 'multi\nline' there wants password \"z\\x41\\101\\0102\" is x here, fetchall\n",
    );
    let u = &rc.polls[0].users[0];
    assert_eq!(u.remote_name(), Some("multi\nline"));
    assert_eq!(
        u.options.password.as_ref().unwrap().value.expose(),
        "zAe\u{8}2"
    );
    assert_eq!(u.options.password.as_ref().unwrap().line, 4);
    assert!(u.options.fetchall.as_ref().unwrap().value);

    // Name state: keywords after user/pass/is are literal.
    let rc = parse("poll h user keep pass with is poll here");
    let u = &rc.polls[0].users[0];
    assert_eq!(u.remote_name(), Some("keep"));
    assert_eq!(u.options.password.as_ref().unwrap().value.expose(), "with");
    assert_eq!(u.locals, [local("poll")]);

    // Negations: one word and two words.
    let rc = parse("poll h user u nokeep norewrite no fetchall nopass8 no sslcertck no idle");
    let o = &rc.polls[0].users[0].options;
    assert!(!o.keep.as_ref().unwrap().value);
    assert!(!o.rewrite.as_ref().unwrap().value);
    assert!(!o.fetchall.as_ref().unwrap().value);
    assert!(!o.pass8bits.as_ref().unwrap().value);
    assert!(!o.sslcertck.as_ref().unwrap().value);
    assert!(!o.idle.as_ref().unwrap().value);

    // Aliases; `set` anywhere, with `=`.
    let rc = parse(
        "poll h local d.org preauth cram\nset daemon = 60\nserver k proto POP3 auth opie user u smtp a b pre \"true\" post x folders A\nset idfile ids\n",
    );
    assert_eq!(
        rc.polls[0].server.auth.as_ref().unwrap().value,
        AuthType::CramMd5
    );
    assert_eq!(
        rc.polls[0].server.localdomains.as_ref().unwrap().value,
        ["d.org"]
    );
    assert_eq!(rc.globals.daemon.as_ref().unwrap().value, 60);
    assert_eq!(
        rc.globals.idfile.as_ref().unwrap().value,
        PathBuf::from("/home/u/ids")
    );
    let k = &rc.polls[1];
    assert_eq!(k.server.auth.as_ref().unwrap().value, AuthType::Otp);
    let o = &k.users[0].options;
    assert_eq!(o.smtphosts.as_ref().unwrap().value, ["a", "b"]);
    assert_eq!(o.preconnect.as_ref().unwrap().value, "true");
    assert_eq!(o.postconnect.as_ref().unwrap().value, "x");
    assert_eq!(o.folders.as_ref().unwrap().value, ["A"]);
    let warned: Vec<&str> = rc.warnings.iter().map(|w| w.keyword.as_str()).collect();
    // An smtphost list is a hunt list, tried in turn: no warning.
    assert_eq!(warned, ["auth otp"]);
    let refused: Vec<&str> = rc.refusals.iter().map(|r| r.keyword.as_str()).collect();
    assert!(refused.is_empty(), "{refused:?}");

    // `user LOCAL here is REMOTE there`.
    let rc = parse("poll h user me here is remote there keep");
    let u = &rc.polls[0].users[0];
    assert_eq!(u.remote_name(), Some("remote"));
    assert_eq!(u.locals, [local("me")]);

    // 6.5 / 7.0 keywords.
    let rc = parse(
        "poll h proto imap auth oauthbearer bad-header accept user u passwordeval \"pass show x\" idletimeout 1680 forceidle sslmode wrapped retrieve-error markseen",
    );
    let p = &rc.polls[0];
    assert_eq!(p.server.auth.as_ref().unwrap().value, AuthType::OauthBearer);
    let o = &p.users[0].options;
    assert_eq!(o.passwordeval.as_ref().unwrap().value, "pass show x");
    assert_eq!(o.idletimeout.as_ref().unwrap().value, 1680);
    assert_eq!(o.retrieve_error.as_ref().unwrap().value, "markseen");
    assert_eq!(o.sslmode.as_ref().unwrap().value, "wrapped");
}

#[test]
fn bad_header_is_a_server_option() {
    let rc = parse("poll h bad-header accept user u");
    assert_eq!(
        rc.polls[0].server.bad_header.as_ref().unwrap().value,
        BadHeader::Accept
    );
}

#[test]
fn errors_name_the_line_and_word() {
    let cases: &[(&str, u32, &str)] = &[
        ("poll h\n  user u\n  frobnicate 3\n", 3, "`frobnicate`"),
        (
            "poll h\n  user u keep\n  frobnicate 3\n",
            3,
            "unknown keyword `frobnicate`",
        ),
        (
            "poll h user u\n keep\n proto pop3\n",
            3,
            "server option `proto` after user options",
        ),
        (
            "poll h\nuser u\ndefaults proto imap\n",
            3,
            "\"defaults\" is not the first record",
        ),
        (
            "defaults keep\ndefaults fetchall\n",
            2,
            "multiple \"defaults\"",
        ),
        ("poll h proto Pop3\n", 1, "unknown protocol `Pop3`"),
        ("poll h proto iMap\n", 1, "unknown protocol"),
        (
            "poll h\n timeout soon\n",
            2,
            "expected a number after `timeout`",
        ),
        ("poll h user u limit -5\n", 1, "non-negative"),
        (
            "poll h auth magic\n",
            1,
            "unknown authentication type `magic`",
        ),
        ("set frob 1\n", 1, "unknown `set` option `frob`"),
        ("set batchlimit 10\n", 1, "no longer valid"),
        (
            "poll h user u pass \"open\n\n",
            1,
            "unterminated quoted string",
        ),
        ("poll h\n no timeout\n", 2, "`no timeout` is not valid"),
        ("poll h user u\n no limit 5\n", 2, "`no limit` is not valid"),
        (
            "poll h user u\n no frob\n",
            2,
            "`no` must be followed by an option name",
        ),
        ("keep\n", 1, "expected set, defaults, poll or skip"),
        ("poll\n", 1, "expected a value after `poll`"),
        ("poll h user a b\n", 1, "must be followed by `here`"),
        ("poll h via\n", 1, "expected a value after `via`"),
        ("poll h user u smtphost keep\n", 1, "found keyword `keep`"),
        ("poll h user u pass \"\\999\"\n", 1, "above 255"),
    ];
    for (text, line, needle) in cases {
        let (got_line, message) = syntax_error(text);
        assert_eq!(got_line, *line, "{text:?}: {message}");
        assert!(
            message.contains(needle),
            "{text:?}: {message:?} lacks {needle:?}"
        );
    }
    let err = parse_fetchmailrc("poll h\n bogus\n", Path::new("/etc/rc")).unwrap_err();
    assert!(err.to_string().starts_with("/etc/rc:2: "), "{err}");
    let e: postie::Error = err.into();
    assert_eq!(e.kind(), postie::ErrorKind::Config);
}

#[test]
fn secrets_are_redacted_in_debug() {
    let rc = parse("poll h esmtppassword x user u password hunter2");
    let debug = format!("{rc:?}");
    assert!(!debug.contains("hunter2"));
    assert!(debug.contains("<redacted>"));
}

#[test]
fn no_panics_on_garbage() {
    let inputs = [
        "",
        "\"",
        "'",
        "=",
        "poll",
        "poll =",
        "user",
        "set",
        "set no",
        "poll h user u to =",
        "poll h user u is * there",
        "\\",
        "poll h envelope",
        "poll h user u antispam",
        "poll h user \u{0}\u{ff}",
        "poll h user u is a=",
        "set daemon 99999999999999999999999",
    ];
    for text in inputs {
        let _ = parse_fetchmailrc(text, Path::new("rc"));
    }
    // Byte soup built from the grammar's own characters.
    let alphabet = [
        "poll", "user", "is", "=", "'", "\"", "\\", "\n", "#", "no", "here", "*", "x", ",", "5",
    ];
    let mut seed = 12345u64;
    for _ in 0..2000 {
        let mut s = String::new();
        for _ in 0..12 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(alphabet[(seed >> 33) as usize % alphabet.len()]);
            s.push(' ');
        }
        let _ = parse_fetchmailrc(&s, Path::new("rc"));
    }
}

#[test]
fn permissions_are_checked_on_disk() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("postie-rc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fetchmailrc");
    std::fs::write(&path, "poll h user u password p\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    match read_fetchmailrc(&path) {
        Err(e @ FetchmailRcError::Insecure { .. }) => {
            let ce: postie::Error = e.into();
            assert_eq!(ce.kind(), postie::ErrorKind::InsecureConfig);
        }
        other => panic!("{other:?}"),
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rc = read_fetchmailrc(&path).unwrap();
    assert_eq!(rc.polls.len(), 1);
    assert!(check_rc_permissions(Path::new("/dev/null")).is_ok());
    assert!(matches!(
        read_fetchmailrc(&dir.join("missing")),
        Err(FetchmailRcError::Read { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_pass8bits_is_warned_by_name_and_line() {
    // rfetch declares BODY=8BITMIME for every message to a listener that offers 8BITMIME, which
    // is what `pass8bits` asks for; `no pass8bits` (fetchmail: BODY=7BIT for a message whose
    // header says 7bit) changes nothing, so it is reported, never silently accepted.
    let rc = parse(
        "poll h proto imap\n  user u\n  no pass8bits\npoll k proto imap user v nopass8 \
         is x here\npoll l proto imap user w pass8bits\n",
    );
    let warned: Vec<String> = rc.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warned.len(), 2, "{warned:?}");
    for (w, line) in warned.iter().zip([3, 4]) {
        assert!(
            w.starts_with(&format!(
                "/home/u/.fetchmailrc:{line}: `no pass8bits` is not supported by rfetch and is \
                 ignored: "
            )) && w.contains("BODY=8BITMIME"),
            "{w}"
        );
    }
    assert!(rc.refusals.is_empty(), "{:?}", rc.refusals);
}
