//! The properties every fuzz target checks, one public function per target. This one file is
//! compiled into each libFuzzer target (fuzz/fuzz_targets/*.rs) and into the stable replay test
//! (tests/fuzz_corpus.rs), so the fuzzer and `cargo test` check the same thing.
//!
//! Input layout: the first byte(s) are control bytes (where to split the stream into reads,
//! which command script or mechanism to use); the rest is what the server, the message or the
//! config file says. Streaming machines are fed the payload whole and split at the points the
//! control byte chooses, and must produce the same events either way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use postie::account::Env;
use postie::config::{fetchmailrc, msmtprc, toml as toml_config};
use postie::deliver::MessageInfo;
use postie::deliver::mda;
use postie::message::address::{parse_address_list, parse_recipient_list};
use postie::proto::dotstuff::{DotStuffer, DotUnstuffer};
use postie::proto::imap;
use postie::proto::pop3;
use postie::proto::sasl::{Mechanism, SaslClient};
use postie::proto::smtp::{
    AuthConfig, AuthMethod, Command as SmtpCommand, Envelope, Handshake, HandshakeConfig,
    HandshakeStep, Protocol, RcptStatus, Recipient, Reply, ReplyParser, Transaction, TxnStep,
};
use postie::submit::headers::{self, HeaderPolicy, SetFrom, SetTo};

/// The password every client machine is given; it must never show up where it must not.
pub const SECRET: &str = "pw-Sekr1t-Fz";
/// The user name the client machines log in as.
pub const USER: &str = "fuzzuser";

/// A check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every target with the check the replay test runs (the MDA check always runs /bin/sh there).
pub const TARGETS: &[(&str, Check)] = &[
    ("smtp_reply", smtp_reply),
    ("smtp_client", smtp_client),
    ("pop3", pop3),
    ("imap", imap),
    ("sasl", sasl),
    ("dotstuff", dotstuff),
    ("rsend_headers", rsend_headers),
    ("msmtprc", msmtprc),
    ("fetchmailrc", fetchmailrc),
    ("config_toml", config_toml),
    ("mda_expand", mda_expand_always_exec),
    ("socks5", socks5),
    ("dns", dns),
    ("smtp_server", smtp_server),
];

/// Splits `data` into the `N` leading control bytes and the payload.
fn take<const N: usize>(data: &[u8]) -> Option<([u8; N], &[u8])> {
    let head: [u8; N] = data.get(..N)?.try_into().ok()?;
    Some((head, &data[N..]))
}

/// Splits `data` into reads whose sizes `seed` decides: its low three bits pick the largest read
/// (1 byte up to everything at once), the rest seeds the sizes.
pub fn split(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    const MAX_READ: [usize; 8] = [1, 2, 3, 5, 8, 17, 64, 1 << 20];
    let max = MAX_READ[usize::from(seed & 7)];
    let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + state as usize % max;
        let (read, after) = rest.split_at(n.min(rest.len()));
        out.push(read);
        rest = after;
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// SMTP

const SMTP_MAX_LINE: usize = 128;
const SMTP_MAX_LINES: usize = 8;

fn parse_replies(chunks: &[&[u8]]) -> (Vec<Reply>, Option<String>) {
    let mut parser = ReplyParser::new(SMTP_MAX_LINE, SMTP_MAX_LINES);
    let mut replies = Vec::new();
    for chunk in chunks {
        parser.push(chunk);
        loop {
            match parser.next_reply() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => {
                    // Memory stays bounded: an unfinished line is never longer than the limit.
                    assert!(parser.buffered().len() <= SMTP_MAX_LINE + 1 + chunk.len());
                    break;
                }
                Err(e) => return (replies, Some(e.to_string())),
            }
        }
    }
    (replies, None)
}

/// SMTP reply parser: the same replies (and the same error) for any split of the stream; every
/// reply within the bounds; a reply written back out parses to itself.
pub fn smtp_reply(data: &[u8]) {
    let Some(([seed], payload)) = take::<1>(data) else {
        return;
    };
    let whole = parse_replies(&[payload]);
    let chunked = parse_replies(&split(seed, payload));
    assert_eq!(
        whole, chunked,
        "reply parsing depends on how the stream was split"
    );
    for reply in &whole.0 {
        assert!((200..600).contains(&reply.code()));
        assert!(!reply.lines().is_empty() && reply.lines().len() <= SMTP_MAX_LINES);
        let mut wire = Vec::new();
        for (i, line) in reply.lines().iter().enumerate() {
            assert!(!line.contains('\n'));
            let sep = if i + 1 == reply.lines().len() {
                ' '
            } else {
                '-'
            };
            wire.extend_from_slice(format!("{}{sep}{line}\r\n", reply.code()).as_bytes());
        }
        let mut again = ReplyParser::new(4 * SMTP_MAX_LINE, SMTP_MAX_LINES);
        again.push(&wire);
        assert_eq!(again.next_reply().ok().flatten().as_ref(), Some(reply));
        if let Some(e) = reply.enhanced() {
            assert_eq!(u16::from(e.class), reply.code() / 100);
        }
    }
}

/// Pulls the next reply from `parser`, feeding it reads from `reads` as needed.
fn next_reply<'a>(
    parser: &mut ReplyParser,
    reads: &mut impl Iterator<Item = &'a [u8]>,
) -> Option<Reply> {
    loop {
        match parser.next_reply() {
            Ok(Some(reply)) => return Some(reply),
            Ok(None) => parser.push(reads.next()?),
            Err(_) => return None,
        }
    }
}

/// What one write of the client may contain: whole CRLF-terminated lines, no secret in the
/// trace, and no password-equivalent on an unencrypted connection unless allowed.
/// `server` is everything the server sent: a password the server sent itself (SCRAM echoes the
/// server's nonce) is not a leak.
fn check_smtp_write(
    server: &[u8],
    bytes: &[u8],
    trace: &str,
    lines: usize,
    tls: bool,
    allow_plaintext: bool,
) {
    assert!(bytes.ends_with(b"\r\n"), "write without CRLF: {trace:?}");
    assert_eq!(
        bytes.iter().filter(|&&b| b == b'\n').count(),
        lines,
        "write with an unexpected line count: {trace:?}"
    );
    assert_eq!(
        bytes.iter().filter(|&&b| b == b'\r').count(),
        lines,
        "write with a stray CR: {trace:?}"
    );
    assert!(!trace.contains(SECRET), "the secret is in the trace");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let echoed =
        contains(server, SECRET.as_bytes()) || contains(server, b64.encode(SECRET).as_bytes());
    if !tls && !allow_plaintext && !echoed {
        for plain in [
            SECRET.as_bytes().to_vec(),
            b64.encode(SECRET).into_bytes(),
            b64.encode(format!("\0{USER}\0{SECRET}")).into_bytes(),
        ] {
            assert!(!contains(bytes, &plain), "the secret went out unencrypted");
        }
    }
}

/// Where the server's plaintext ends and what it says over TLS begins, in a `smtp_client` input.
const TLS_MARK: &[u8] = b"\0TLS\0";

/// The SMTP/LMTP client machines (handshake, then one transaction) fed replies parsed from
/// hostile bytes: no panic; writes are whole lines; the secret stays out of traces and off an
/// unencrypted connection; a required STARTTLS cannot be skipped; a transaction only reports
/// success when the server accepted the end of data (SMTP) or at least one recipient's copy
/// (LMTP), and every recipient when partial delivery was not allowed. The payload is the
/// server's plaintext, then [`TLS_MARK`] and what it sends after the TLS handshake.
pub fn smtp_client(data: &[u8]) {
    let Some(([seed, opts, more], payload)) = take::<3>(data) else {
        return;
    };
    let protocol = if opts & 1 != 0 {
        Protocol::Lmtp
    } else {
        Protocol::Smtp
    };
    let starttls = opts & 2 != 0;
    let mut tls = opts & 4 != 0;
    let allow_plaintext = opts & 8 != 0;
    let method = match (opts >> 4) & 7 {
        0 => None,
        1 => Some(AuthMethod::Auto),
        n => Mechanism::ALL
            .get(usize::from(n) - 2)
            .map(|&m| AuthMethod::Mechanism(m)),
    };
    let config = HandshakeConfig {
        protocol,
        helo_domain: "client.example".into(),
        starttls,
        tls_active: tls,
        auth: method.map(|method| AuthConfig {
            method,
            user: USER.into(),
            secret: SECRET.into(),
            allow_plaintext,
            server: Some(("mx.example".into(), 587)),
        }),
    };
    let wants_auth = config.auth.is_some();
    let mut hs = Handshake::new(config);
    let mut parser = ReplyParser::new(512, 16);
    let (plain, encrypted) = match find(payload, TLS_MARK) {
        Some(i) => (&payload[..i], &payload[i + TLS_MARK.len()..]),
        None => (payload, &[][..]),
    };
    let mut reads = split(seed, plain).into_iter();

    // The handshake.
    loop {
        let Some(reply) = next_reply(&mut parser, &mut reads) else {
            return;
        };
        match hs.on_reply(reply) {
            Ok(HandshakeStep::Send(out)) => {
                check_smtp_write(payload, &out.bytes, &out.trace(), 1, tls, allow_plaintext);
                if hs.in_auth() {
                    let trace = out.trace();
                    let t = trace.as_str();
                    let hidden = postie::proto::trace::REDACTED;
                    assert!(
                        t == hidden
                            || t == "*"
                            || (t.starts_with("AUTH ")
                                && (t.split(' ').count() == 2
                                    || t.ends_with(&format!(" {hidden}")))),
                        "AUTH payload in the trace: {t:?}"
                    );
                }
            }
            Ok(HandshakeStep::StartTls) => {
                // The session refuses plaintext sent after the go-ahead (whether it came with
                // the go-ahead or later: it would be read as TLS), then forgets everything.
                if !parser.is_empty() || reads.len() > 0 {
                    return;
                }
                parser.clear();
                reads = split(seed, encrypted).into_iter();
                let out = hs
                    .tls_established()
                    .expect("tls_established right after the STARTTLS go-ahead");
                tls = true;
                assert!(hs.capabilities().is_none(), "pre-TLS capabilities kept");
                check_smtp_write(payload, &out.bytes, &out.trace(), 1, tls, allow_plaintext);
            }
            Ok(HandshakeStep::Ready) => break,
            Err(e) => {
                // Error messages quote the server; only our own text must not hold the secret.
                if !contains(payload, SECRET.as_bytes()) {
                    assert!(!e.to_string().contains(SECRET), "secret in the error: {e}");
                }
                return;
            }
        }
    }
    assert!(!starttls || hs.tls(), "ready without the required STARTTLS");
    if wants_auth {
        let m = hs.auth_mechanism().expect("ready without AUTH");
        assert!(tls || allow_plaintext || !m.is_plaintext_equivalent());
    }

    // One transaction.
    let caps = hs.capabilities().cloned().unwrap_or_default();
    let count = usize::from(more & 3) + 1;
    let envelope = Envelope {
        from: "sender@example.org".into(),
        rcpts: (0..count)
            .map(|i| Recipient::new(&format!("rcpt{i}@example.net")))
            .collect(),
        body_8bit: more & 4 != 0,
        allow_partial: more & 8 != 0,
        ..Envelope::default()
    };
    let size_hint = (more & 16 != 0).then_some(1000);
    let Ok((mut txn, first)) = Transaction::start(protocol, &caps, &envelope, size_hint) else {
        return;
    };
    let batch = first.bytes.iter().filter(|&&b| b == b'\n').count();
    assert!(batch >= 1);
    check_smtp_write(
        payload,
        &first.bytes,
        &first.trace(),
        batch,
        tls,
        allow_plaintext,
    );
    let mut body_sent = false;
    while let Some(reply) = next_reply(&mut parser, &mut reads) {
        match txn.on_reply(reply) {
            Ok(TxnStep::Send(out)) => {
                let lines = out.bytes.iter().filter(|&&b| b == b'\n').count();
                check_smtp_write(
                    payload,
                    &out.bytes,
                    &out.trace(),
                    lines,
                    tls,
                    allow_plaintext,
                );
            }
            Ok(TxnStep::Read) => {}
            Ok(TxnStep::SendBody) => {
                assert!(!body_sent, "body requested twice");
                body_sent = true;
            }
            Ok(TxnStep::Done(report)) => {
                assert!(body_sent, "done without sending the body");
                assert_eq!(report.recipients.len(), count);
                let accepted = report
                    .recipients
                    .iter()
                    .filter(|r| matches!(r.status, RcptStatus::Accepted(_)))
                    .count();
                assert!(accepted >= 1, "done with no recipient accepted");
                for r in &report.recipients {
                    match &r.status {
                        RcptStatus::Accepted(reply) => assert!(reply.is_success()),
                        RcptStatus::Rejected(reply) => assert!(!reply.is_success()),
                    }
                }
                match protocol {
                    Protocol::Smtp => {
                        assert!(
                            report.final_reply.is_success(),
                            "done without a 2xx to \".\""
                        );
                        assert!(envelope.allow_partial || accepted == count);
                    }
                    Protocol::Lmtp => {}
                }
                return;
            }
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// POP3

const POP3_LIMITS: pop3::Limits = pop3::Limits {
    max_line: 256,
    max_listing_lines: 32,
    max_capa_lines: 32,
    max_message_size: Some(8192),
};

fn pop3_script(choice: u8) -> Vec<pop3::Command> {
    use pop3::Command as C;
    match choice % 4 {
        0 => vec![
            C::Capa,
            C::User(USER.into()),
            C::Pass(SECRET.into()),
            C::Stat,
            C::UidlAll,
            C::ListAll,
            C::Retr(1),
            C::Dele(1),
            C::Quit,
        ],
        1 => vec![C::Capa, C::Stls, C::Capa],
        2 => vec![
            C::Auth {
                mechanism: "CRAM-MD5".into(),
                initial: None,
            },
            C::Stat,
            C::Top(1, 0),
            C::Retr(2),
            C::Quit,
        ],
        _ => vec![
            C::Apop {
                user: USER.into(),
                digest: pop3::apop_digest("<1.2@x>", SECRET),
            },
            C::Uidl(1),
            C::List(1),
            C::Retr(1),
            C::Retr(2),
            C::Noop,
            C::Rset,
            C::Quit,
        ],
    }
}

/// Events with consecutive message chunks joined (how a body is cut into chunks may differ).
fn push_pop3(events: &mut Vec<pop3::Event>, ev: pop3::Event) {
    if let (Some(pop3::Event::MessageData(prev)), pop3::Event::MessageData(more)) =
        (events.last_mut(), &ev)
    {
        prev.extend_from_slice(more);
        return;
    }
    events.push(ev);
}

fn run_pop3(script: u8, reads: &[&[u8]]) -> (Vec<pop3::Event>, Option<pop3::Pop3Error>) {
    // Bit 2 of the script byte lifts the listing bound to the default's order, so long CAPA
    // and UIDL listings (and any per-line recursion) are reachable.
    let limits = if script & 4 != 0 {
        pop3::Limits {
            max_listing_lines: 1_000_000,
            max_capa_lines: 1_000_000,
            ..POP3_LIMITS
        }
    } else {
        POP3_LIMITS
    };
    let mut client = pop3::Client::new(limits);
    for cmd in pop3_script(script) {
        let out = client.send(&cmd);
        assert!(!out.trace().contains(SECRET), "password in the trace");
        let line = out.bytes;
        assert!(line.ends_with(b"\r\n") && line.iter().filter(|&&b| b == b'\n').count() == 1);
    }
    let mut events = Vec::new();
    for read in reads {
        let tls_wait = client.awaiting_tls();
        client.receive(read);
        loop {
            match client.poll() {
                Ok(Some(ev)) => {
                    assert!(!tls_wait, "an event from bytes received after STLS");
                    push_pop3(&mut events, ev);
                }
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

/// POP3 client machine: the same events for any split of the stream; message bodies within the
/// limit and counted exactly; unique-ids printable and bounded; nothing read after STLS.
pub fn pop3(data: &[u8]) {
    let Some(([seed, script], payload)) = take::<2>(data) else {
        return;
    };
    let whole = run_pop3(script, &[payload]);
    let chunked = run_pop3(script, &split(seed, payload));
    assert_eq!(
        whole, chunked,
        "POP3 events depend on how the stream was split"
    );
    let mut body: Option<u64> = None;
    for ev in &whole.0 {
        match ev {
            pop3::Event::MessageStart => body = Some(0),
            pop3::Event::MessageData(d) => {
                let n = body.as_mut().expect("message data outside a message");
                *n += d.len() as u64;
                assert!(*n <= POP3_LIMITS.max_message_size.unwrap_or(u64::MAX));
            }
            pop3::Event::MessageEnd { octets } => {
                assert_eq!(
                    body.take(),
                    Some(*octets),
                    "octet count differs from the data"
                );
            }
            pop3::Event::UidlEntry { uid, .. } => {
                assert!(!uid.is_empty() && uid.len() <= pop3::MAX_UID_LEN);
                assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            }
            pop3::Event::Greeting {
                apop_timestamp: Some(ts),
                ..
            } => assert!(ts.starts_with('<') && ts.ends_with('>') && ts.is_ascii()),
            _ => assert!(body.is_none(), "event inside a message body"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// IMAP

const IMAP_LIMITS: imap::Limits = imap::Limits {
    max_line: 512,
    max_search_line: 2048,
    max_literal: 8192,
    max_untagged: 64,
};

fn imap_script(choice: u8) -> Vec<imap::Command> {
    use imap::Command as C;
    match choice % 4 {
        0 => vec![
            C::Capability,
            C::Login {
                user: USER.into(),
                password: SECRET.into(),
            },
            C::Select("INBOX".into()),
            C::UidSearch(imap::Search::All),
            C::UidFetch {
                set: "1:*".into(),
                body: true,
            },
            C::UidStoreAdd {
                set: "1".into(),
                flags: vec!["\\Seen".into(), "\\Deleted".into()],
            },
            C::UidExpunge("1".into()),
            C::Logout,
        ],
        1 => vec![C::Capability, C::StartTls, C::Capability],
        2 => vec![
            C::Authenticate {
                mechanism: "CRAM-MD5".into(),
                initial: None,
            },
            C::Examine("INBOX".into()),
            C::UidFetch {
                set: "1".into(),
                body: false,
            },
            C::Idle,
            C::Noop,
        ],
        // A password that is not printable ASCII goes out as a synchronising literal.
        _ => vec![
            C::Login {
                user: USER.into(),
                password: format!("{SECRET}\u{e9}"),
            },
            C::Select("Entw\u{fc}rfe".into()),
            C::UidSearch(imap::Search::UidFrom(7)),
            C::UidFetch {
                set: "7:*".into(),
                body: true,
            },
            C::Expunge,
            C::Logout,
        ],
    }
}

fn push_imap(events: &mut Vec<imap::Event>, ev: imap::Event) {
    if let (Some(imap::Event::BodyChunk(prev)), imap::Event::BodyChunk(more)) =
        (events.last_mut(), &ev)
    {
        prev.extend_from_slice(more);
        return;
    }
    events.push(ev);
}

fn run_imap(script: u8, reads: &[&[u8]]) -> (Vec<imap::Event>, Option<imap::ImapError>) {
    let mut client = imap::Client::new(IMAP_LIMITS);
    for cmd in imap_script(script) {
        let (_tag, first) = client.command(&cmd);
        assert!(!first.trace().contains(SECRET), "password in the trace");
        assert!(first.bytes.ends_with(b"\r\n"));
        assert!(!format!("{cmd:?}").contains(SECRET), "password in Debug");
    }
    let mut events = Vec::new();
    for read in reads {
        let tls_wait = client.awaiting_tls();
        client.receive(read);
        loop {
            match client.poll() {
                Ok(Some(ev)) => {
                    assert!(!tls_wait, "an event from bytes received after STARTTLS");
                    push_imap(&mut events, ev);
                }
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

/// IMAP client machine: the same events for any split of the stream (literals, nested lists,
/// continuations); every streamed body has exactly the announced size within the limit; nothing
/// read after a STARTTLS go-ahead.
pub fn imap(data: &[u8]) {
    let Some(([seed, script], payload)) = take::<2>(data) else {
        return;
    };
    let whole = run_imap(script, &[payload]);
    let chunked = run_imap(script, &split(seed, payload));
    assert_eq!(
        whole, chunked,
        "IMAP events depend on how the stream was split"
    );
    let mut body: Option<(u64, u64)> = None;
    for ev in &whole.0 {
        match ev {
            imap::Event::BodyStart { size, .. } => {
                assert!(body.is_none(), "a body inside a body");
                assert!(*size <= IMAP_LIMITS.max_literal);
                body = Some((*size, 0));
            }
            imap::Event::BodyChunk(d) => {
                let (size, got) = body.as_mut().expect("body chunk outside a body");
                *got += d.len() as u64;
                assert!(*got <= *size, "more body bytes than announced");
            }
            other => {
                if let Some((size, got)) = body.take() {
                    assert_eq!(size, got, "body shorter than announced before {other:?}");
                }
                if let imap::Event::Search(uids) = other {
                    assert!(uids.len() <= IMAP_LIMITS.max_search_line / 2);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SASL

/// The largest SCRAM iteration count the fuzzer lets through: the client accepts up to ten
/// million (seconds of PBKDF2, bounded on purpose), which would only make executions slow.
const FUZZ_MAX_SCRAM_ITERATIONS: u64 = 256;

/// SASL mechanisms fed hostile challenges (separated by 0xFF in the input; `%N` stands for the
/// client's SCRAM nonce so the fuzzer gets past the nonce check): no panic; the challenge-response
/// mechanisms never put the password in an answer; Debug output never shows it; SCRAM success
/// needs the server's proof.
pub fn sasl(data: &[u8]) {
    let Some(([choice], payload)) = take::<1>(data) else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(choice & 0x7f) % Mechanism::ALL.len()];
    let mut client = SaslClient::new(mechanism, "fuzz,user=", SECRET);
    if choice & 0x80 != 0 {
        client = client.with_server("mx.example", 993);
    }
    let mut answers = Vec::new();
    let initial = client.start();
    let nonce = initial
        .as_deref()
        .and_then(|m| std::str::from_utf8(m).ok())
        .and_then(|m| m.rsplit(",r=").next().map(str::to_owned))
        .filter(|_| mechanism == Mechanism::ScramSha256)
        .unwrap_or_default();
    answers.extend(initial);
    let mut last = &[][..];
    let mut verified_steps = 0;
    for challenge in payload.split(|&b| b == 0xff).take(8) {
        last = challenge;
        let challenge = replace_all(challenge, b"%N", nonce.as_bytes());
        if scram_iterations(&challenge).is_some_and(|i| i > FUZZ_MAX_SCRAM_ITERATIONS) {
            return;
        }
        match client.step(&challenge) {
            Ok(answer) => {
                verified_steps += 1;
                answers.push(answer);
            }
            Err(e) => {
                if !contains(payload, SECRET.as_bytes()) {
                    assert!(!e.to_string().contains(SECRET), "secret in the error: {e}");
                }
                break;
            }
        }
    }
    assert!(!format!("{client:?}").contains(SECRET), "secret in Debug");
    // A server may put the password in its own nonce, which SCRAM echoes: only a password the
    // server did not send counts.
    if matches!(mechanism, Mechanism::CramMd5 | Mechanism::ScramSha256)
        && !contains(payload, SECRET.as_bytes())
    {
        for a in &answers {
            assert!(!contains(a, SECRET.as_bytes()), "the password went out");
        }
    }
    let finished = client.finish(None).is_ok() || client.finish(Some(last)).is_ok();
    if mechanism == Mechanism::ScramSha256 && finished {
        // client-first, then server-first answered, then server-final checked (or given to
        // finish): success is impossible with fewer exchanges.
        assert!(
            verified_steps >= 1,
            "SCRAM success without the server's proof"
        );
    }
}

fn replace_all(input: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The `i=` attribute of a SCRAM server-first message, read as the client reads it.
fn scram_iterations(challenge: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(challenge).ok()?;
    text.split(',')
        .filter_map(|a| a.split_once('='))
        .rfind(|(k, _)| *k == "i")
        .and_then(|(_, v)| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Dot-stuffing

fn stuff(reads: &[&[u8]]) -> Vec<u8> {
    let mut s = DotStuffer::new();
    let mut out = Vec::new();
    for r in reads {
        s.encode(r, &mut out);
    }
    s.finish(&mut out);
    out
}

fn unstuff(reads: &[&[u8]]) -> (Vec<u8>, bool, usize) {
    let mut u = DotUnstuffer::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for r in reads {
        let progress = u.decode(r, &mut out);
        consumed += progress.consumed;
        if progress.done {
            return (out, true, consumed);
        }
        assert_eq!(progress.consumed, r.len(), "stopped before the terminator");
    }
    (out, u.is_done(), consumed)
}

/// The message as SMTP carries it: every line ending (CRLF, lone CR, lone LF) a CRLF, and a
/// final CRLF when the message has text after its last line ending.
fn normalise_line_ends(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 2);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Dot-stuffing: the same wire bytes for any split of the message; the wire form has only CRLF
/// line ends and no "\r\n.\r\n" before its end; unstuffing it (the decoder, and the POP3
/// client's own) gives back the message exactly; the decoder ignores splitting on any input.
pub fn dotstuff(data: &[u8]) {
    let Some(([seed], message)) = take::<1>(data) else {
        return;
    };
    let wire = stuff(&[message]);
    assert_eq!(
        wire,
        stuff(&split(seed, message)),
        "stuffing depends on splits"
    );
    let expected = normalise_line_ends(message);

    assert!(wire.ends_with(b".\r\n"));
    if expected.is_empty() {
        assert_eq!(wire, b".\r\n");
    } else {
        assert_eq!(
            find(&wire, b"\r\n.\r\n"),
            Some(wire.len() - 5),
            "an end of data before the end"
        );
    }
    for (i, &b) in wire.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(wire.get(i + 1), Some(&b'\n'), "lone CR on the wire"),
            b'\n' => assert!(i > 0 && wire[i - 1] == b'\r', "bare LF on the wire"),
            _ => {}
        }
    }

    let (decoded, done, consumed) = unstuff(&split(seed.rotate_left(3), &wire));
    assert!(done && consumed == wire.len());
    assert_eq!(decoded, expected, "encode then decode is not the identity");

    // The POP3 client's own unstuffing of the same bytes.
    let mut client = pop3::Client::new(pop3::Limits::default());
    client.send(&pop3::Command::Retr(1));
    let mut reply = b"+OK greeting\r\n+OK message follows\r\n".to_vec();
    reply.extend_from_slice(&wire);
    let mut got = Vec::new();
    let mut ended = None;
    for read in split(seed.rotate_left(5), &reply) {
        client.receive(read);
        while let Some(ev) = client.poll().expect("POP3 client refused a valid body") {
            match ev {
                pop3::Event::MessageData(d) => got.extend_from_slice(&d),
                pop3::Event::MessageEnd { octets } => ended = Some(octets),
                _ => {}
            }
        }
    }
    assert_eq!(ended, Some(expected.len() as u64));
    assert_eq!(
        got, expected,
        "POP3 unstuffing is not the inverse of stuffing"
    );

    // The decoder on arbitrary input: splitting does not matter.
    let a = unstuff(&[message]);
    let b = unstuff(&split(seed, message));
    assert_eq!(a, b, "unstuffing depends on splits");
}

// ---------------------------------------------------------------------------------------------
// rsend's header pass

fn is_bcc_start(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..colon];
    name.eq_ignore_ascii_case(b"bcc") || name.eq_ignore_ascii_case(b"resent-bcc")
}

/// The header pass: finding the header block while the message streams in gives what the whole
/// message gives; with Bcc removal no Bcc field reaches the wire (after dot-stuffing, which
/// turns every lone CR or LF into a line end); `-t` collects exactly the addresses of the
/// To/Cc/Bcc fields (or of the first Resent- block) and every one is a safe RCPT argument or
/// refused.
pub fn rsend_headers(data: &[u8]) {
    let Some(([seed, opts], message)) = take::<2>(data) else {
        return;
    };
    let full = headers::split_head(message, true);
    let mut have = 0;
    for read in split(seed, message) {
        have += read.len();
        let partial = headers::split_head(&message[..have], false);
        if !matches!(partial, Ok(None)) {
            assert_eq!(
                partial, full,
                "header split depends on how the input arrived"
            );
            break;
        }
    }
    let Ok(Some(head)) = full else {
        return;
    };
    assert!(head.consumed <= message.len());

    let policy = HeaderPolicy {
        read_recipients: true,
        remove_bcc: true,
        set_from: [SetFrom::Auto, SetFrom::On, SetFrom::Off][usize::from(opts % 3)],
        set_date: opts & 4 != 0,
        set_msgid: opts & 8 != 0,
        set_to: [SetTo::Off, SetTo::Off, SetTo::On, SetTo::Undisclosed]
            [usize::from((opts >> 4) & 3)],
        from_address: Some("sender@example.org".into()),
        from_full_name: (opts & 64 != 0).then(|| "Fuzz \"Q\" User".into()),
        date: "Sat, 05 Dec 2026 10:00:00 +0000".into(),
        message_id: "<fuzz@example.org>".into(),
    };
    let Ok(prepared) = headers::prepare(&head, &policy, &["env@example.net".to_string()]) else {
        return;
    };

    // What the server receives for the header block.
    let mut wire = Vec::new();
    let mut stuffer = DotStuffer::new();
    stuffer.encode(&prepared.header, &mut wire);
    for line in wire.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix(b".").unwrap_or(line);
        assert!(
            !is_bcc_start(line),
            "a Bcc field reached the wire: {:?}",
            String::from_utf8_lossy(line)
        );
    }

    let is =
        |f: &headers::Field, names: &[&str]| names.iter().any(|n| f.name.eq_ignore_ascii_case(n));
    let resent = |f: &headers::Field| {
        f.name.len() > 7 && f.name.as_bytes()[..7].eq_ignore_ascii_case(b"resent-")
    };
    let expected: Vec<String> = match head.fields.iter().position(resent) {
        Some(start) => head.fields[start..]
            .iter()
            .take_while(|f| resent(f))
            .filter(|f| is(f, &["Resent-To", "Resent-Cc", "Resent-Bcc"]))
            .flat_map(|f| parse_recipient_list(&f.value()).unwrap_or_default())
            .collect(),
        None => head
            .fields
            .iter()
            .filter(|f| is(f, &["To", "Cc", "Bcc"]))
            .flat_map(|f| parse_recipient_list(&f.value()).unwrap_or_default())
            .collect(),
    };
    assert_eq!(prepared.recipients, expected);
    for r in &prepared.recipients {
        check_address(r);
    }
    if let Some(from) = headers::from_address(&head) {
        check_address(&from);
    }
    // The address parser straight on the whole input as one field body. Real callers give it
    // unfolded values; raw text can leave a CR in an address (an obsolete quoted-pair "\\<CR>"),
    // which the RCPT encoder must then refuse.
    for a in parse_address_list(&String::from_utf8_lossy(message)) {
        assert!(!a.is_empty());
        if let Ok(line) = SmtpCommand::Rcpt(&a, None).encode() {
            assert_eq!(
                line.iter().filter(|&&b| b == b'\n' || b == b'\r').count(),
                2
            );
        }
    }
}

/// An address from a header is never empty, never holds a line break, and either encodes as one
/// RCPT line or is refused.
fn check_address(addr: &str) {
    assert!(!addr.is_empty());
    assert!(!addr.contains(['\r', '\n']), "line break in {addr:?}");
    if let Ok(line) = SmtpCommand::Rcpt(addr, None).encode() {
        assert!(line.ends_with(b"\r\n"));
        assert_eq!(
            line.iter().filter(|&&b| b == b'\n' || b == b'\r').count(),
            2
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Config readers (text only: eval is a stub, no file is read, no command runs)

fn fuzz_env() -> Env {
    Env {
        home: Some(PathBuf::from("/nonexistent/home")),
        xdg_config_home: None,
        sysconfdir: PathBuf::from("/nonexistent/etc"),
        user: Some("fuzz".into()),
        hostname: Some("fuzzhost".into()),
        mailname: None,
    }
}

/// Whether `value` is distinctive enough to look for in output: alphanumeric, at least 6
/// characters, and appearing once in the whole text (so no other setting can hold it).
fn distinctive(value: &str, text: &str) -> bool {
    value.len() >= 6
        && value.chars().all(|c| c.is_ascii_alphanumeric())
        && text.matches(value).count() == 1
}

/// A stand-in for `value` of the same length that shares no character with it.
fn stand_in(value: &str) -> String {
    value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let pick = [b'Z', b'q', b'7'][i % 3] as char;
            if pick == c { 'W' } else { pick }
        })
        .collect()
}

/// Whether `value` shows in `shown` (Debug or configdump output of `text`) because it is the
/// password: it must vanish when the password in the text is replaced by a stand-in. A value
/// that shows anyway is a field or variant name (`defaults`), not a leak; a text that no longer
/// parses used the value as syntax, not as a password.
fn leaked(value: &str, text: &str, shown: &str, show: impl Fn(&str) -> Option<String>) -> bool {
    if !shown.contains(value) {
        return false;
    }
    match show(&text.replace(value, &stand_in(value))) {
        Some(again) => !again.contains(value),
        None => false,
    }
}

/// msmtprc `password` values: lines whose command word is `password`.
fn msmtprc_passwords(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (cmd, arg) = line.trim().split_once(char::is_whitespace)?;
            (cmd == "password").then(|| arg.trim().trim_matches('"').to_owned())
        })
        .filter(|v| distinctive(v, text))
        .collect()
}

/// fetchmailrc password values: the word after an unquoted `password`/`pass`/`passwd` keyword
/// (quoted strings are one word, so a keyword inside a user name does not count).
fn fetchmailrc_passwords(text: &str) -> Vec<String> {
    let mut words: Vec<(bool, String)> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' {
            let mut w = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => w.extend(chars.next()),
                    c => w.push(c),
                }
            }
            words.push((true, w));
        } else {
            let mut w = String::from(c);
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            words.push((false, w));
        }
    }
    words
        .windows(2)
        .filter(|w| {
            !w[0].0
                && ["password", "pass", "passwd"]
                    .iter()
                    .any(|k| w[0].1.eq_ignore_ascii_case(k))
        })
        .map(|w| w[1].1.clone())
        .filter(|v| distinctive(v, text))
        .collect()
}

/// TOML `password = "..."` values.
fn toml_passwords(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("password")?;
            let value = rest.trim_start().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .filter(|v| distinctive(v, text))
        .collect()
}

/// msmtprc reader: no panic on any text; `eval` lines go only to the injected runner (which
/// runs nothing here); a parsed file's Debug output never shows a password.
pub fn msmtprc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    const EVAL_SECRET: &str = "EvAlPw0rdFz9";
    let mut eval = |cmd: &str| -> Result<String, String> {
        match cmd.len() % 3 {
            0 => Ok(format!("password {EVAL_SECRET}")),
            1 => Ok(cmd.to_owned()),
            _ => Err("not run while fuzzing".into()),
        }
    };
    let path = Path::new("/nonexistent/msmtprc");
    let Ok(parsed) = msmtprc::parse(&text, path, &fuzz_env(), &mut eval) else {
        return;
    };
    let debug = format!("{parsed:?}");
    assert!(!debug.contains(EVAL_SECRET), "eval'd password in Debug");
    let show = |t: &str| {
        let parsed = msmtprc::parse(t, path, &fuzz_env(), &mut |_: &str| Err(String::new()));
        parsed.ok().map(|p| format!("{p:?}"))
    };
    for p in msmtprc_passwords(&text) {
        assert!(!leaked(&p, &text, &debug, show), "password {p:?} in Debug");
    }
}

/// fetchmailrc reader: no panic on any text; Debug and `--configdump` never show a password.
pub fn fetchmailrc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(rc) = fetchmailrc::parse_fetchmailrc(&text, Path::new("/nonexistent/fetchmailrc"))
    else {
        return;
    };
    let debug = format!("{rc:?}");
    let dump = fetchmailrc::configdump(&rc);
    let _ = rc.effective_polls();
    let parse = |t: &str| fetchmailrc::parse_fetchmailrc(t, Path::new("/nonexistent/fetchmailrc"));
    let show_debug = |t: &str| parse(t).ok().map(|rc| format!("{rc:?}"));
    let show_dump = |t: &str| parse(t).ok().map(|rc| fetchmailrc::configdump(&rc));
    for p in fetchmailrc_passwords(&text) {
        assert!(
            !leaked(&p, &text, &debug, show_debug),
            "password {p:?} in Debug"
        );
        assert!(
            !leaked(&p, &text, &dump, show_dump),
            "password {p:?} in configdump"
        );
    }
}

/// Native TOML reader: no panic on any text; a parsed file's Debug never shows a password.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = toml_config::parse(&text, Path::new("/nonexistent/config.toml"), &fuzz_env())
    else {
        return;
    };
    let debug = format!("{parsed:?}");
    let show = |t: &str| {
        toml_config::parse(t, Path::new("/nonexistent/config.toml"), &fuzz_env())
            .ok()
            .map(|p| format!("{p:?}"))
    };
    for p in toml_passwords(&text) {
        assert!(!leaked(&p, &text, &debug, show), "password {p:?} in Debug");
    }
}

// ---------------------------------------------------------------------------------------------
// MDA command expansion

/// Command templates with `%F`/`%T` where fetchmailrc users write them: as separate words, glued
/// to other text, and inside single or double quotes. `printf '%s\0'` prints each argument the
/// shell passed, NUL-terminated.
const MDA_TEMPLATES: [&str; 5] = [
    "printf '%s\\0' %F %T",
    "printf '%s\\0' -f%F --to=%T",
    "printf '%s\\0' %T.box",
    "printf '%s\\0' \"<%F>\" -f'<%F>'",
    "printf '%s\\0' '%F' \"%T\"",
];

/// The arguments `printf` must receive for template `choice`.
fn mda_expected(choice: usize, sender: &str, recipients: &[&str]) -> Vec<String> {
    let last = recipients.len() - 1;
    let mut args: Vec<String> = Vec::new();
    match choice {
        0 => {
            args.push(sender.to_owned());
            args.extend(recipients.iter().map(|r| r.to_string()));
        }
        1 => {
            args.push(format!("-f{sender}"));
            for (i, r) in recipients.iter().enumerate() {
                args.push(if i == 0 {
                    format!("--to={r}")
                } else {
                    r.to_string()
                });
            }
        }
        2 => {
            // `%T.box` with several recipients: the suffix sticks to the last one's word.
            for (i, r) in recipients.iter().enumerate() {
                args.push(if i == last {
                    format!("{r}.box")
                } else {
                    r.to_string()
                });
            }
        }
        3 => {
            args.push(format!("<{sender}>"));
            args.push(format!("-f<{sender}>"));
        }
        _ => {
            // Inside double quotes every recipient goes into the one word, joined by spaces.
            args.push(sender.to_owned());
            args.push(recipients.join(" "));
        }
    }
    args
}

static MDA_EXECS: AtomicU64 = AtomicU64::new(0);

/// The MDA expansion as the fuzzer runs it: real /bin/sh on every 256th input.
pub fn mda_expand(data: &[u8]) {
    let n = MDA_EXECS.fetch_add(1, Ordering::Relaxed);
    mda_expand_check(data, n.is_multiple_of(256));
}

fn mda_expand_always_exec(data: &[u8]) {
    mda_expand_check(data, true);
}

/// `%F` and `%T` expanded into a shell command: the script the shell parses holds no byte of any
/// value (it is the same for any values), and the shell passes each value on byte for byte
/// (a NUL, which no argument can carry, as `_`), whatever quoting surrounds the placeholder.
/// Input: a template choice byte, then sender, recipient and further recipients separated by
/// 0xFF.
pub fn mda_expand_check(data: &[u8], exec_shell: bool) {
    let Some(([choice], rest)) = take::<1>(data) else {
        return;
    };
    let mut values = rest
        .split(|&b| b == 0xff)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let sender = values.next().unwrap_or_default();
    let recipient = values.next().unwrap_or_default();
    let also: Vec<String> = values.take(3).collect();
    let choice = usize::from(choice) % MDA_TEMPLATES.len();
    let info = MessageInfo {
        sender: sender.clone(),
        recipient: recipient.clone(),
        also: also.clone(),
    };
    let invocation = mda::expand_shell(MDA_TEMPLATES[choice], &info);
    // The shell never parses a value: the script is the same whatever the values are.
    let placeholder = MessageInfo {
        sender: "S".into(),
        recipient: "R".into(),
        also: vec!["A".into(); also.len()],
    };
    assert_eq!(
        invocation.script,
        mda::expand_shell(MDA_TEMPLATES[choice], &placeholder).script,
        "a value reached the shell script"
    );
    let no_nul = |v: &str| v.replace('\0', "_");
    let mut params = vec![no_nul(&sender), no_nul(&recipient)];
    params.extend(also.iter().map(|a| no_nul(a)));
    assert_eq!(invocation.params, params);

    if exec_shell {
        let recipients: Vec<String> = std::iter::once(&recipient)
            .chain(&also)
            .map(|r| no_nul(r))
            .collect();
        let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
        let args = mda_expected(choice, &no_nul(&sender), &recipients);
        let argv = invocation.argv();
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .expect("run /bin/sh");
        let mut want = Vec::new();
        for w in &args {
            want.extend_from_slice(w.as_bytes());
            want.push(0);
        }
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&want),
            "/bin/sh {argv:?} saw other words"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SOCKS5

/// The targets a SOCKS5 handshake is asked for: a name (sent for the proxy to resolve), an
/// IPv4 and a bracketed IPv6 literal (sent as addresses), the longest name a request can carry,
/// and one byte more (refused before anything is sent).
fn socks5_host(choice: u8) -> String {
    match choice % 5 {
        0 => "mail.example.org".to_owned(),
        1 => "192.0.2.7".to_owned(),
        2 => "[2001:db8::1]".to_owned(),
        3 => "h".repeat(255),
        _ => "h".repeat(256),
    }
}

/// The CONNECT request RFC 1928 prescribes for `host` port 25, or `None` when it cannot be sent.
fn socks5_request(host: &str) -> Option<Vec<u8>> {
    let mut req = vec![5, 1, 0];
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            req.push(3);
            req.push(u8::try_from(bare.len()).ok()?);
            req.extend_from_slice(bare.as_bytes());
        }
    }
    req.extend_from_slice(&[0, 25]);
    Some(req)
}

/// How a handshake ended: connected after `consumed` bytes, failed, or the stream ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SocksEnd {
    Connected,
    Failed(postie::proto::socks5::Socks5Error),
    Starved,
}

/// One handshake against the proxy bytes arriving as `reads`; every read is at most
/// `wanted()`, as the dialer does. Returns what the client sent, how many bytes it consumed
/// and how it ended.
fn run_socks5(host: &str, with_credentials: bool, reads: &[&[u8]]) -> (Vec<u8>, usize, SocksEnd) {
    use postie::proto::socks5::{Credentials, Socks5Client, Step};
    let credentials = with_credentials.then(|| Credentials {
        user: USER.to_owned(),
        password: SECRET.to_owned(),
    });
    let (mut client, greeting) = match Socks5Client::start(host, 25, credentials) {
        Ok(started) => started,
        Err(e) => return (Vec::new(), 0, SocksEnd::Failed(e)),
    };
    let mut sent = greeting;
    let mut consumed = 0;
    for read in reads {
        let mut rest = *read;
        while !rest.is_empty() {
            let want = client.wanted();
            assert!(
                (1..=262).contains(&want),
                "wanted() is {want} before the tunnel is open"
            );
            let n = want.min(rest.len());
            let result = client.feed(&rest[..n]);
            // Checked when the state changes (not after every byte: formatting is slow).
            if !matches!(result, Ok((_, Step::NeedMore))) {
                let debug = format!("{client:?} {result:?}");
                assert!(!debug.contains(SECRET), "password in Debug: {debug}");
            }
            match result {
                Ok((took, step)) => {
                    assert_eq!(took, n, "a read of at most wanted() is taken whole");
                    consumed += took;
                    rest = &rest[took..];
                    match step {
                        Step::NeedMore => {}
                        Step::Send(bytes) => sent.extend_from_slice(&bytes),
                        Step::Connected => {
                            assert_eq!(client.wanted(), 0, "connected but wants more");
                            return (sent, consumed, SocksEnd::Connected);
                        }
                    }
                }
                Err(e) => {
                    // The bytes were read from the socket even though they were refused.
                    consumed += n;
                    let text = e.to_string();
                    assert!(!text.is_empty() && !text.contains(SECRET), "{text:?}");
                    return (sent, consumed, SocksEnd::Failed(e));
                }
            }
        }
    }
    (sent, consumed, SocksEnd::Starved)
}

/// An independent reading of RFC 1928/1929 for the proxy's bytes `p`: what the client must
/// send, how many bytes it may consume, and how it ends. Protocol errors compare by kind only.
fn socks5_model(host: &str, with_credentials: bool, p: &[u8]) -> (Vec<u8>, usize, SocksEnd) {
    use postie::proto::socks5::Socks5Error as E;
    let Some(request) = socks5_request(host) else {
        return (Vec::new(), 0, SocksEnd::Failed(E::BadTarget(String::new())));
    };
    let mut sent = if with_credentials {
        vec![5, 2, 0, 2]
    } else {
        vec![5, 1, 0]
    };
    let protocol = || SocksEnd::Failed(E::Protocol(String::new()));
    if p.len() < 2 {
        return (sent, p.len(), SocksEnd::Starved);
    }
    if p[0] != 5 {
        return (sent, 2, protocol());
    }
    let mut at = 2;
    match p[1] {
        0 => {}
        2 if with_credentials => {
            sent.push(1);
            sent.push(USER.len() as u8);
            sent.extend_from_slice(USER.as_bytes());
            sent.push(SECRET.len() as u8);
            sent.extend_from_slice(SECRET.as_bytes());
            if p.len() < 4 {
                return (sent, p.len(), SocksEnd::Starved);
            }
            if p[2] != 1 {
                return (sent, 4, protocol());
            }
            if p[3] != 0 {
                return (sent, 4, SocksEnd::Failed(E::AuthRejected));
            }
            at = 4;
        }
        0xFF => {
            let offered_password = with_credentials;
            return (
                sent,
                2,
                SocksEnd::Failed(E::NoAcceptableMethod { offered_password }),
            );
        }
        _ => return (sent, 2, protocol()),
    }
    sent.extend_from_slice(&request);
    let reply = &p[at..];
    if reply.len() < 5 {
        return (sent, p.len(), SocksEnd::Starved);
    }
    if reply[0] != 5 {
        return (sent, at + 5, protocol());
    }
    if reply[1] != 0 {
        return (sent, at + 5, SocksEnd::Failed(E::ConnectRefused(reply[1])));
    }
    let total = match reply[3] {
        1 => 10,
        4 => 22,
        3 => 7 + usize::from(reply[4]),
        _ => return (sent, at + 5, protocol()),
    };
    if reply.len() < total {
        return (sent, p.len(), SocksEnd::Starved);
    }
    (sent, at + total, SocksEnd::Connected)
}

/// Protocol errors carry a description; the model only knows their kind.
fn socks_end_kind(end: &SocksEnd) -> SocksEnd {
    use postie::proto::socks5::Socks5Error as E;
    match end {
        SocksEnd::Failed(E::Protocol(_)) => SocksEnd::Failed(E::Protocol(String::new())),
        SocksEnd::Failed(E::BadTarget(_)) => SocksEnd::Failed(E::BadTarget(String::new())),
        other => other.clone(),
    }
}

/// SOCKS5 client handshake against hostile proxy bytes. Byte 0 splits the stream into reads,
/// byte 1 picks the target and whether credentials are configured. The same outcome for any
/// split; exactly what an independent reading of RFC 1928/1929 says it must send, consume
/// (never a byte past the proxy's reply: those belong to the mail server) and report; the
/// password only in the RFC 1929 message after the proxy chose that method, never in Debug or
/// an error.
pub fn socks5(data: &[u8]) {
    let Some(([seed, options], payload)) = take::<2>(data) else {
        return;
    };
    let host = socks5_host(options >> 1);
    let with_credentials = options & 1 == 1;
    let whole = run_socks5(&host, with_credentials, &[payload]);
    let chunked = run_socks5(&host, with_credentials, &split(seed, payload));
    assert_eq!(
        whole, chunked,
        "the handshake depends on how the stream was split"
    );
    let (sent, consumed, end) = whole;
    let (want_sent, want_consumed, want_end) = socks5_model(&host, with_credentials, payload);
    assert_eq!(socks_end_kind(&end), want_end, "outcome");
    assert_eq!(consumed, want_consumed, "bytes consumed");
    assert_eq!(sent, want_sent, "bytes sent");
    let password_sent = contains(&sent, SECRET.as_bytes());
    assert_eq!(
        password_sent,
        with_credentials
            && socks5_request(&host).is_some()
            && payload.get(..2) == Some(&[5u8, 2][..]),
        "the password goes out only when the proxy chose username/password"
    );
}

// ---------------------------------------------------------------------------------------------
// DNS (SRV lookups for --configure)

/// What a target name must look like after reading: labels of letters, digits, `-`, `_` and
/// `?` (every other byte), none empty, at most 255 bytes in all; empty means ".".
fn check_srv_target(target: &str) {
    assert!(target.len() <= 255, "target of {} bytes", target.len());
    if target.is_empty() {
        return;
    }
    for label in target.split('.') {
        assert!(!label.is_empty(), "empty label in {target:?}");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'?')),
            "unsafe byte in {target:?}"
        );
    }
}

/// A hostile answer: no panic or endless loop; the identifier is checked; records only from a
/// successful, complete response, no more than it announced, best first, with safe names.
fn dns_answer(msg: &[u8]) {
    use postie::proto::dns::{DnsError, parse_srv_answer};
    let id = match msg {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    if msg.len() >= 2 {
        assert_eq!(
            parse_srv_answer(id ^ 0x5A5A, msg),
            Err(DnsError::Malformed("wrong identifier")),
            "an answer to another query is not read"
        );
    }
    let Ok(records) = parse_srv_answer(id, msg) else {
        return;
    };
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    assert!(flags & 0x8000 != 0, "a query read as an answer");
    assert!(flags & 0x0200 == 0, "a truncated answer read as complete");
    assert!(
        matches!(flags & 0xF, 0 | 3),
        "an error answer read as a result"
    );
    if records.is_empty() {
        return;
    }
    assert_eq!(flags & 0xF, 0, "records from a \"no such name\" answer");
    let announced = usize::from(u16::from_be_bytes([msg[6], msg[7]]));
    assert!(records.len() <= announced, "more records than announced");
    for r in &records {
        check_srv_target(&r.target);
    }
    for pair in records.windows(2) {
        let key = |s: &postie::proto::dns::Srv| (s.priority, std::cmp::Reverse(s.weight));
        assert!(key(&pair[0]) <= key(&pair[1]), "records not best first");
    }
}

/// A name asked for: refused exactly when DNS cannot carry it; otherwise the query carries its
/// labels byte for byte, is not mistaken for an answer, and an answer naming it as the target
/// (compressed and in full) reads back to it with unsafe bytes shown as `?`.
fn dns_query_round_trip(mode: u8, payload: &[u8]) {
    use postie::proto::dns::{DnsError, parse_srv_answer, srv_query};
    let name = String::from_utf8_lossy(payload);
    let id = u16::from(mode).wrapping_mul(257);
    let bare = name.strip_suffix('.').unwrap_or(&name);
    let carriable = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    let query = match srv_query(id, &name) {
        Err(e) => {
            assert_eq!(e, DnsError::BadName);
            assert!(!carriable, "{name:?} refused");
            return;
        }
        Ok(q) => q,
    };
    assert!(carriable, "{name:?} accepted");
    let mut want = id.to_be_bytes().to_vec();
    want.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let mut encoded_name = Vec::new();
    for label in bare.split('.') {
        encoded_name.push(label.len() as u8);
        encoded_name.extend_from_slice(label.as_bytes());
    }
    encoded_name.push(0);
    want.extend_from_slice(&encoded_name);
    want.extend_from_slice(&[0, 33, 0, 1]);
    assert_eq!(query, want, "query bytes");
    assert!(
        parse_srv_answer(id, &query).is_err(),
        "a query is not an answer"
    );

    let mut answer = query.clone();
    answer[2] |= 0x80;
    answer[7] = 2;
    let record = |answer: &mut Vec<u8>, priority: u8, target: &[u8]| {
        answer.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 1, 44]);
        answer.extend_from_slice(&(6 + target.len() as u16).to_be_bytes());
        answer.extend_from_slice(&[0, priority, 0, mode, 0x02, 0x4B]);
        answer.extend_from_slice(target);
    };
    record(&mut answer, 1, &[0xC0, 12]);
    record(&mut answer, 2, &encoded_name);
    let records = parse_srv_answer(id, &answer).expect("a well-formed answer");
    let shown: String = bare
        .split('.')
        .map(|label| {
            label
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                        b as char
                    } else {
                        '?'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(".");
    assert_eq!(records.len(), 2);
    for (r, priority) in records.iter().zip([1, 2]) {
        assert_eq!(
            (r.priority, r.weight, r.port),
            (priority, u16::from(mode), 587)
        );
        assert_eq!(r.target, shown, "target read back");
        check_srv_target(&r.target);
    }
}

/// DNS SRV reader and query writer. Byte 0 chooses: even, the rest is a hostile answer (its own
/// first two bytes are taken as the query identifier, so the parser gets past that check); odd,
/// the rest is a name to ask for, round-tripped through a query and an answer.
pub fn dns(data: &[u8]) {
    let Some(([mode], payload)) = take::<1>(data) else {
        return;
    };
    if mode & 1 == 0 {
        dns_answer(payload);
    } else {
        dns_query_round_trip(mode, payload);
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP server (rsend -bs)

/// Longest command line `rsend -bs` reads (a longer one is answered 500 and skipped).
const BS_MAX_COMMAND: usize = 4096;

/// A reply as sent: only its own CRLF line ends, every line `CODE-` but the last `CODE `, no
/// other control character, a code from 2xx to 5xx.
fn check_server_reply(reply: &postie::proto::smtp_server::Reply) {
    assert!((200..600).contains(&reply.code), "code {}", reply.code);
    let wire = reply.to_bytes();
    let text = String::from_utf8(wire).expect("replies are UTF-8");
    let body = text.strip_suffix("\r\n").expect("ends with CRLF");
    let lines: Vec<&str> = body.split("\r\n").collect();
    assert_eq!(lines.len(), reply.lines.len().max(1), "{text:?}");
    let code = reply.code.to_string();
    for (i, line) in lines.iter().enumerate() {
        assert!(!line.chars().any(char::is_control), "control in {line:?}");
        let rest = line.strip_prefix(&code).expect("line starts with the code");
        let last = i + 1 == lines.len();
        if !(last && rest.is_empty()) {
            assert!(
                rest.starts_with(if last { ' ' } else { '-' }),
                "separator in {line:?}"
            );
        }
    }
}

/// The end of the message after DATA: the offset just past its "." line, as the relay reads it.
fn end_of_data(stream: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < stream.len() {
        let end = stream[at..].iter().position(|&b| b == b'\n')? + at + 1;
        let line = &stream[at..end];
        if line == b".\r\n" || line == b".\n" {
            return Some(end);
        }
        at = end;
    }
    None
}

/// `rsend -bs`'s command side against a hostile local client: the byte stream is cut into
/// command lines as rsend reads them (LF or CRLF, at most 4096 bytes, a message skipped to its
/// "." line). Every reply is well-formed lines whatever the client sent; a message is read only
/// after a greeting, an accepted MAIL and at least one accepted RCPT, for exactly the addresses
/// accepted, each a valid address with no bracket or control character (they go on the wire as
/// `MAIL FROM:<...>`), at most the recipient bound; QUIT ends the session.
pub fn smtp_server(data: &[u8]) {
    use postie::message::address::check_addr_spec;
    use postie::proto::smtp_server::{Command, Dialogue, MAX_RECIPIENTS, Next, parse};
    const HOST: &str = "rsend.fuzz";
    check_server_reply(&Dialogue::greeting(HOST));
    let check = |a: &str| check_addr_spec(a);
    let mut dialogue = Dialogue::new();
    let (mut greeted, mut from, mut rcpts) = (false, None::<String>, Vec::<String>::new());
    let mut rest = data;
    while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..newline];
        rest = &rest[newline + 1..];
        if line.len() > BS_MAX_COMMAND {
            continue;
        }
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let (cmd, next) = match parse(line) {
            Ok(cmd) => (Some(cmd.clone()), dialogue.command(cmd, HOST, &check)),
            Err(reply) => (None, Next::Reply(reply)),
        };
        match next {
            Next::Reply(reply) => {
                check_server_reply(&reply);
                match (cmd, reply.code) {
                    (Some(Command::Hello { .. }), 250) => {
                        greeted = true;
                        from = None;
                        rcpts.clear();
                    }
                    (Some(Command::Rset), 250) => {
                        from = None;
                        rcpts.clear();
                    }
                    (Some(Command::Mail { address, .. }), 250) => {
                        assert!(greeted && from.is_none(), "MAIL accepted out of order");
                        from = Some(address);
                    }
                    (Some(Command::Rcpt { address, .. }), 250) => {
                        assert!(from.is_some(), "RCPT accepted without MAIL");
                        assert!(rcpts.len() < MAX_RECIPIENTS, "recipient bound");
                        rcpts.push(address);
                    }
                    _ => {}
                }
            }
            Next::Close(reply) => {
                check_server_reply(&reply);
                assert!(matches!(cmd, Some(Command::Quit)), "closed by {cmd:?}");
                return;
            }
            Next::ReadMessage {
                reply,
                from: msg_from,
                rcpts: msg_rcpts,
            } => {
                check_server_reply(&reply);
                assert!(
                    matches!(cmd, Some(Command::Data)),
                    "message read after {cmd:?}"
                );
                assert!(greeted, "message without a greeting");
                assert_eq!(Some(&msg_from), from.as_ref(), "sender");
                assert_eq!(msg_rcpts, rcpts, "recipients");
                assert!(!msg_rcpts.is_empty() && msg_rcpts.len() <= MAX_RECIPIENTS);
                for (i, address) in std::iter::once(&msg_from).chain(&msg_rcpts).enumerate() {
                    assert!(
                        !address.contains(['<', '>']) && !address.chars().any(char::is_control),
                        "{address:?} would break the envelope line"
                    );
                    if i > 0 || !address.is_empty() {
                        assert_eq!(check_addr_spec(address), Ok(()), "{address:?}");
                    }
                }
                dialogue.message_done();
                from = None;
                rcpts.clear();
                let Some(end) = end_of_data(rest) else {
                    return;
                };
                rest = &rest[end..];
            }
        }
    }
}
