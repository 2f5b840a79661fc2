//! The IMAP client protocol machine, sans-I/O (an RFC 9051 / RFC 3501 subset): tagged commands,
//! greeting (OK / PREAUTH / BYE), CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE (with SASL-IR,
//! RFC 4959), SELECT/EXAMINE, UID SEARCH, UID FETCH with the message literal streamed in chunks,
//! UID STORE, EXPUNGE / UID EXPUNGE (RFC 4315), IDLE (RFC 2177), NOOP and LOGOUT.
//!
//! Bytes go in through [`Client::receive`], events come out of [`Client::poll`]. Every response is
//! read as a sequence of line fragments separated by literals; literal contents are either
//! streamed to the caller (the body of a FETCH) or skipped without being stored, so untagged data
//! we do not understand never desynchronises the connection. Memory is bounded by [`Limits`].

mod client;
mod command;
mod response;

pub use client::Client;
pub use command::{Command, Search};
pub use response::MAX_CAPABILITIES;

use crate::proto::trace::Outbound;

/// Size bounds on what the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest response text (all fragments of one response, literals excluded).
    pub max_line: usize,
    /// Longest `* SEARCH` response (it lists every matching UID on one line).
    pub max_search_line: usize,
    /// Largest literal accepted, streamed or skipped.
    pub max_literal: u64,
    /// Most untagged responses between two tagged completions.
    pub max_untagged: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_search_line: 64 * 1024 * 1024,
            max_literal: 1 << 30,
            max_untagged: 50_000_000,
        }
    }
}

/// The server broke the protocol or a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImapError {
    #[error("server response longer than {0} bytes")]
    LineTooLong(usize),
    #[error("server literal of {0} bytes exceeds the limit of {1}")]
    LiteralTooLarge(u64, u64),
    #[error("more than {0} untagged responses to one command")]
    TooManyUntagged(u64),
    #[error("server announced more than {0} capabilities")]
    TooManyCapabilities(usize),
    #[error("malformed server response: {0}")]
    Malformed(String),
    #[error("unexpected server response: {0}")]
    Unexpected(String),
}

/// Response condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

/// Response codes we act on (RFC 9051 §7.1, RFC 5530).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Capability(Vec<String>),
    UidValidity(u32),
    UidNext(u32),
    /// `[UNAVAILABLE]`, `[INUSE]`, `[LIMIT]`, `[SERVERBUG]`-like temporary conditions.
    Temporary(String),
    /// `[AUTHENTICATIONFAILED]`, `[AUTHORIZATIONFAILED]`, `[EXPIRED]`, `[PRIVACYREQUIRED]`.
    AuthFailed(String),
    Other(String),
}

/// What a FETCH response said about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchAttrs {
    pub uid: Option<u32>,
    pub size: Option<u64>,
    pub flags: Option<Vec<String>>,
}

/// Which command a tagged completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login,
    Authenticate,
    Select,
    Search,
    Fetch,
    Store,
    Expunge,
    Idle,
}

/// One thing the server said (or, for [`Event::Send`], bytes the driver must write now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Greeting {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// Untagged OK/NO/BAD/BYE.
    Untagged {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Capabilities(Vec<String>),
    Exists(u32),
    /// `* n RECENT` (IMAP4rev1; an IDLE wake-up on servers that announce new mail this way).
    Recent(u32),
    Expunge(u32),
    Search(Vec<u32>),
    /// A FETCH response's message literal begins; `attrs` holds what preceded it.
    BodyStart {
        seq: u32,
        attrs: FetchAttrs,
        size: u64,
    },
    /// Literal bytes of the body that [`Event::BodyStart`] announced.
    BodyChunk(Vec<u8>),
    /// A complete FETCH response (after its body, if any).
    Fetch {
        seq: u32,
        attrs: FetchAttrs,
        had_body: bool,
    },
    /// A SASL challenge (base64-decoded): answer with [`Client::auth_response`].
    AuthChallenge(Vec<u8>),
    /// The server accepted IDLE; end it with [`Client::idle_done`].
    Idling,
    /// The server asked for the rest of a command (synchronising literal): write these bytes
    /// (their secret part, a password, is marked for the trace).
    Send(Outbound),
    /// A tagged completion. After STARTTLS with `Status::Ok` the machine waits for
    /// [`Client::tls_established`].
    Done {
        tag: String,
        kind: Kind,
        status: Status,
        code: Option<Code>,
        text: String,
    },
}

#[cfg(test)]
mod tests {
    use super::response::*;
    use super::*;

    /// Runs commands then feeds `input` in `step`-byte pieces, merging body chunks.
    fn run(cmds: &[Command], input: &[u8], step: usize) -> Result<Vec<Event>, ImapError> {
        let mut c = Client::new(Limits::default());
        run_with(&mut c, cmds, input, step)
    }

    fn run_with(
        c: &mut Client,
        cmds: &[Command],
        input: &[u8],
        step: usize,
    ) -> Result<Vec<Event>, ImapError> {
        for cmd in cmds {
            c.command(cmd);
        }
        let mut events: Vec<Event> = Vec::new();
        for piece in input.chunks(step.max(1)) {
            c.receive(piece);
            while let Some(ev) = c.poll()? {
                if let (Event::BodyChunk(d), Some(Event::BodyChunk(prev))) =
                    (&ev, events.last_mut())
                {
                    prev.extend_from_slice(d);
                    continue;
                }
                events.push(ev);
            }
        }
        Ok(events)
    }

    fn all_steps(cmds: &[Command], input: &[u8]) -> Vec<Event> {
        let whole = run(cmds, input, input.len().max(1)).expect("decodes");
        for step in [1, 2, 3, 5, 7] {
            assert_eq!(
                run(cmds, input, step).expect("decodes"),
                whole,
                "step {step}"
            );
        }
        whole
    }

    #[test]
    fn trace_shows_lines_withholds_challenges_and_summarises_literals() {
        let mut c = Client::new(Limits::default());
        c.set_trace(true);
        let input = b"* OK hi\x1b]0;x\x07\r\n+ PDEyMzQ+\r\nA0001 OK in\r\n* 1 FETCH (UID 5 BODY[] {6}\r\nsecret)\r\n* 2 FETCH (X {3}\r\nabc)\r\nA0002 OK done\r\n";
        run_with(
            &mut c,
            &[
                Command::Authenticate {
                    mechanism: "CRAM-MD5".into(),
                    initial: None,
                },
                Command::UidFetch {
                    set: "5".into(),
                    body: true,
                },
            ],
            input,
            4,
        )
        .expect("decodes");
        assert_eq!(
            c.take_trace(),
            vec![
                "* OK hi\\u{1b}]0;x\\u{7}",
                "+ <SASL challenge>",
                "A0001 OK in",
                "* 1 FETCH (UID 5 BODY[] {6}",
                "<6 octets of message data>",
                ")",
                "* 2 FETCH (X {3}",
                "<3 octets of literal data>",
                ")",
                "A0002 OK done",
            ]
        );
    }

    #[test]
    fn capability_flood_is_an_error() {
        let words = "X ".repeat(MAX_CAPABILITIES + 1);
        let input = format!("* OK hi\r\n* CAPABILITY {words}\r\n");
        assert_eq!(
            run(&[Command::Capability], input.as_bytes(), 64),
            Err(ImapError::TooManyCapabilities(MAX_CAPABILITIES))
        );
        let input = format!("* OK [CAPABILITY {words}] hi\r\n");
        assert_eq!(
            run(&[], input.as_bytes(), 64),
            Err(ImapError::TooManyCapabilities(MAX_CAPABILITIES))
        );
    }

    fn done(tag: &str, kind: Kind) -> Event {
        Event::Done {
            tag: tag.into(),
            kind,
            status: Status::Ok,
            code: None,
            text: "done".into(),
        }
    }

    #[test]
    fn select_search_fetch_stream() {
        let body = b"From: a\r\n\r\n.\r\n{5}\r\nA0002 OK fake\r\n\xff\r\n";
        let mut input = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] hi\r\n".to_vec();
        input.extend_from_slice(
            b"* FLAGS (\\Seen \\Deleted)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 77] v\r\n* OK [UIDNEXT 9] n\r\nA0001 OK [READ-WRITE] done\r\n",
        );
        input.extend_from_slice(b"* SEARCH 4 7 8\r\nA0002 OK done\r\n");
        input.extend_from_slice(
            format!(
                "* 1 FETCH (UID 4 RFC822.SIZE {} FLAGS (\\Seen $X) BODY[] {{{}}}\r\n",
                body.len(),
                body.len()
            )
            .as_bytes(),
        );
        input.extend_from_slice(body);
        input.extend_from_slice(b")\r\n* 2 FETCH (UID 7 BODY[] {0}\r\n FLAGS ())\r\n* 5 FETCH (FLAGS (\\Seen))\r\nA0003 OK done\r\n");
        let ev = all_steps(
            &[
                Command::Select("INBOX".into()),
                Command::UidSearch(Search::All),
                Command::UidFetch {
                    set: "4,7".into(),
                    body: true,
                },
            ],
            &input,
        );
        let want = vec![
            Event::Greeting {
                status: Status::Ok,
                code: Some(Code::Capability(vec![
                    "IMAP4REV1".into(),
                    "LITERAL+".into(),
                    "IDLE".into(),
                ])),
                text: "hi".into(),
            },
            Event::Exists(3),
            Event::Recent(0),
            Event::Untagged {
                status: Status::Ok,
                code: Some(Code::UidValidity(77)),
                text: "v".into(),
            },
            Event::Untagged {
                status: Status::Ok,
                code: Some(Code::UidNext(9)),
                text: "n".into(),
            },
            Event::Done {
                tag: "A0001".into(),
                kind: Kind::Select,
                status: Status::Ok,
                code: Some(Code::Other("READ-WRITE".into())),
                text: "done".into(),
            },
            Event::Search(vec![4, 7, 8]),
            done("A0002", Kind::Search),
            Event::BodyStart {
                seq: 1,
                attrs: FetchAttrs {
                    uid: Some(4),
                    size: Some(body.len() as u64),
                    flags: Some(vec!["\\Seen".into(), "$X".into()]),
                },
                size: body.len() as u64,
            },
            Event::BodyChunk(body.to_vec()),
            Event::Fetch {
                seq: 1,
                attrs: FetchAttrs {
                    uid: Some(4),
                    size: Some(body.len() as u64),
                    flags: Some(vec!["\\Seen".into(), "$X".into()]),
                },
                had_body: true,
            },
            Event::BodyStart {
                seq: 2,
                attrs: FetchAttrs {
                    uid: Some(7),
                    ..FetchAttrs::default()
                },
                size: 0,
            },
            Event::Fetch {
                seq: 2,
                attrs: FetchAttrs {
                    uid: Some(7),
                    size: None,
                    flags: Some(vec![]),
                },
                had_body: true,
            },
            Event::Fetch {
                seq: 5,
                attrs: FetchAttrs {
                    flags: Some(vec!["\\Seen".into()]),
                    ..FetchAttrs::default()
                },
                had_body: false,
            },
            done("A0003", Kind::Fetch),
        ];
        assert_eq!(ev, want);
    }

    #[test]
    fn unknown_untagged_with_literals_is_skipped() {
        let input = b"* OK hi\r\n* LIST () \"/\" {5}\r\nA0001\r\n* XFOO {3}\r\n)(\"{2}\r\nab and more\r\n* 1 FETCH (ENVELOPE (\"x\" {4}\r\nBODY) UID 9)\r\nA0001 OK done\r\n";
        let ev = all_steps(&[Command::Noop], input);
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(
            matches!(&ev[1], Event::Fetch { seq: 1, attrs, had_body: false } if attrs.uid == Some(9))
        );
        assert_eq!(ev[2], done("A0001", Kind::Noop));
    }

    #[test]
    fn greetings_and_byes() {
        let ev = all_steps(&[], b"* PREAUTH [CAPABILITY IMAP4rev1] ready\r\n");
        assert!(matches!(
            &ev[0],
            Event::Greeting {
                status: Status::Preauth,
                ..
            }
        ));
        let ev = all_steps(&[], b"* BYE go away\r\n");
        assert!(matches!(
            &ev[0],
            Event::Greeting {
                status: Status::Bye,
                ..
            }
        ));
        assert!(run(&[], b"* NO nope\r\n", 1).is_err());
        assert!(run(&[], b"A0001 OK early\r\n", 2).is_err());
        let ev = all_steps(&[Command::Logout], b"* OK\r\n* BYE bye\r\nA0001 OK out\r\n");
        assert!(matches!(
            &ev[1],
            Event::Untagged {
                status: Status::Bye,
                ..
            }
        ));
    }

    #[test]
    fn starttls_drops_injected_bytes_and_caps() {
        let mut c = Client::new(Limits::default());
        c.command(&Command::StartTls);
        c.receive(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nA0001 OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n");
        assert!(matches!(c.poll(), Ok(Some(Event::Greeting { .. }))));
        assert!(matches!(
            c.poll(),
            Ok(Some(Event::Done {
                kind: Kind::StartTls,
                ..
            }))
        ));
        assert_eq!(c.poll(), Ok(None));
        assert!(c.awaiting_tls());
        c.tls_established();
        assert!(c.capabilities().is_empty());
        c.command(&Command::Capability);
        c.receive(b"* CAPABILITY IMAP4rev1 SASL-IR\r\nA0002 OK\r\n");
        assert_eq!(
            c.poll(),
            Ok(Some(Event::Capabilities(vec![
                "IMAP4REV1".into(),
                "SASL-IR".into()
            ])))
        );
        assert!(c.has_capability("sasl-ir"));
    }

    #[test]
    fn login_quoting_and_literals() {
        let mut c = Client::new(Limits::default());
        let (_, bytes) = c.command(&Command::Login {
            user: "bob".into(),
            password: "p\"w\\x".into(),
        });
        assert_eq!(bytes.bytes, b"A0001 LOGIN \"bob\" \"p\\\"w\\\\x\"\r\n");
        assert_eq!(bytes.trace(), "A0001 LOGIN \"bob\" *");
        let (tag, bytes) = c.command(&Command::Login {
            user: "bob".into(),
            password: "p\u{e9}w".into(),
        });
        assert_eq!(tag, "A0002");
        assert_eq!(bytes.bytes, b"A0002 LOGIN \"bob\" {4}\r\n");
        c.receive(b"* OK hi\r\n+ go ahead\r\n");
        assert!(matches!(c.poll(), Ok(Some(Event::Greeting { .. }))));
        match c.poll() {
            Ok(Some(Event::Send(part))) => {
                assert_eq!(part.bytes, "p\u{e9}w\r\n".as_bytes());
                assert_eq!(part.trace_lines(), vec!["*"]);
                assert!(!format!("{part:?}").contains("112"), "{part:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!(
                "{:?}",
                Command::Login {
                    user: "u".into(),
                    password: "secret".into()
                }
            )
            .contains("secret")
        );
        // With LITERAL+ the literal goes in one write.
        let mut c = Client::new(Limits::default());
        c.receive(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n");
        assert!(c.poll().is_ok());
        let (_, bytes) = c.command(&Command::Login {
            user: "a\nb".into(),
            password: "x".into(),
        });
        assert_eq!(bytes.bytes, b"A0001 LOGIN {3+}\r\na\nb \"x\"\r\n");
        assert_eq!(bytes.trace_lines(), vec!["A0001 LOGIN {3+}", "a", "b *"]);
        let (_, bytes) = c.command(&Command::Login {
            user: "bob".into(),
            password: "p\u{e9}w".into(),
        });
        assert_eq!(
            bytes.bytes,
            "A0002 LOGIN \"bob\" {4+}\r\np\u{e9}w\r\n".as_bytes()
        );
        assert_eq!(bytes.trace_lines(), vec!["A0002 LOGIN \"bob\" {4+}", "*"]);
    }

    #[test]
    fn authenticate_and_idle() {
        let input = b"* OK hi\r\n+ \r\n+ PDEyMzQ+\r\nA0001 NO [AUTHENTICATIONFAILED] bad\r\n+ idling\r\n* 4 EXISTS\r\n* 2 EXPUNGE\r\nA0002 OK idle done\r\n";
        let ev = all_steps(
            &[
                Command::Authenticate {
                    mechanism: "CRAM-MD5".into(),
                    initial: None,
                },
                Command::Idle,
            ],
            input,
        );
        assert_eq!(ev[1], Event::AuthChallenge(vec![]));
        assert_eq!(ev[2], Event::AuthChallenge(b"<1234>".to_vec()));
        assert!(matches!(
            &ev[3],
            Event::Done {
                status: Status::No,
                code: Some(Code::AuthFailed(_)),
                ..
            }
        ));
        assert_eq!(ev[4], Event::Idling);
        assert_eq!(ev[5], Event::Exists(4));
        assert_eq!(ev[6], Event::Expunge(2));
        let mut c = Client::new(Limits::default());
        let (_, b) = c.command(&Command::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"\0u\0p".to_vec()),
        });
        assert_eq!(b.bytes, b"A0001 AUTHENTICATE PLAIN AHUAcA==\r\n");
        assert_eq!(b.trace(), "A0001 AUTHENTICATE PLAIN *");
        assert_eq!(c.auth_response(Some(b"pw")).trace(), "*");
    }

    /// IDLE as RFC 2177 and real servers say it: the continuation, wake-ups (EXISTS, RECENT,
    /// EXPUNGE), keep-alives, a BYE, and the completion after DONE; every chunking.
    #[test]
    fn idle_table() {
        let ok_done = |tag: &str| Event::Done {
            tag: tag.into(),
            kind: Kind::Idle,
            status: Status::Ok,
            code: None,
            text: "Idle completed".into(),
        };
        let cases: Vec<(&[u8], Vec<Event>)> = vec![
            (
                b"* OK hi\r\n+ idling\r\n* 7 EXISTS\r\n* 1 RECENT\r\nA0001 OK Idle completed\r\n",
                vec![Event::Idling, Event::Exists(7), Event::Recent(1), ok_done("A0001")],
            ),
            (
                b"* OK hi\r\n+ idling\r\n* OK Still here\r\n* 3 recent\r\nA0001 OK Idle completed\r\n",
                vec![
                    Event::Idling,
                    Event::Untagged {
                        status: Status::Ok,
                        code: None,
                        text: "Still here".into(),
                    },
                    Event::Recent(3),
                    ok_done("A0001"),
                ],
            ),
            (
                b"* OK hi\r\n+\r\n* 2 EXPUNGE\r\n* 4 FETCH (FLAGS (\\Seen))\r\nA0001 OK Idle completed\r\n",
                vec![
                    Event::Idling,
                    Event::Expunge(2),
                    Event::Fetch {
                        seq: 4,
                        attrs: FetchAttrs {
                            flags: Some(vec!["\\Seen".into()]),
                            ..FetchAttrs::default()
                        },
                        had_body: false,
                    },
                    ok_done("A0001"),
                ],
            ),
            (
                b"* OK hi\r\n+ idling\r\n* BYE Server shutting down\r\n",
                vec![
                    Event::Idling,
                    Event::Untagged {
                        status: Status::Bye,
                        code: None,
                        text: "Server shutting down".into(),
                    },
                ],
            ),
            (
                b"* OK hi\r\nA0001 BAD IDLE not supported\r\n",
                vec![Event::Done {
                    tag: "A0001".into(),
                    kind: Kind::Idle,
                    status: Status::Bad,
                    code: None,
                    text: "IDLE not supported".into(),
                }],
            ),
        ];
        for (input, want) in cases {
            let ev = all_steps(&[Command::Idle], input);
            assert_eq!(
                ev.get(1..).unwrap_or_default(),
                want.as_slice(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let mut c = Client::new(Limits::default());
        let (_, bytes) = c.command(&Command::Idle);
        assert_eq!(bytes.bytes, b"A0001 IDLE\r\n");
        assert_eq!(c.idle_done().bytes, b"DONE\r\n");
    }

    #[test]
    fn hostile_sizes() {
        let ev = all_steps(
            &[Command::Select("INBOX".into())],
            b"* OK\r\n* 4294967295 EXISTS\r\nA0001 OK\r\n",
        );
        assert_eq!(ev[1], Event::Exists(u32::MAX));
        assert!(matches!(
            run(
                &[Command::Noop],
                b"* OK\r\n* 1 FETCH (BODY[] {99999999999}\r\n",
                3
            ),
            Err(ImapError::LiteralTooLarge(99_999_999_999, _))
        ));
        assert!(
            run(&[Command::Noop], b"* OK\r\n* 4294967296 EXISTS\r\n", 3).is_ok(),
            "unknown forms are skipped"
        );
        assert!(
            run(
                &[Command::Noop],
                b"* OK\r\n* 1 FETCH (BODY[] {999999999999999999999}\r\n",
                4
            )
            .is_err()
        );
        assert!(run(&[Command::Noop], b"* OK\r\n* SEARCH 1 x\r\n", 4).is_err());
        let mut long = b"* OK\r\n* ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 70_000));
        assert_eq!(
            run(&[], &long, 1000),
            Err(ImapError::LineTooLong(64 * 1024))
        );
        let mut c = Client::new(Limits {
            max_untagged: 3,
            ..Limits::default()
        });
        let r = run_with(
            &mut c,
            &[Command::Noop],
            b"* OK\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n",
            5,
        );
        assert_eq!(r, Err(ImapError::TooManyUntagged(3)));
        assert!(run(&[Command::Noop], b"* OK\r\nZZZ OK what\r\n", 2).is_err());
        assert!(run(&[], b"* OK\r\n+ unexpected\r\n", 2).is_err());
    }

    #[test]
    fn large_search_line_allowed() {
        let mut input = b"* OK\r\n* SEARCH".to_vec();
        for i in 1..=20_000u32 {
            input.extend_from_slice(format!(" {i}").as_bytes());
        }
        input.extend_from_slice(b"\r\nA0001 OK\r\n");
        let ev = run(&[Command::UidSearch(Search::UidFrom(1))], &input, 4096).expect("decodes");
        assert!(matches!(&ev[1], Event::Search(v) if v.len() == 20_000));
    }

    #[test]
    fn command_encoding() {
        let mut c = Client::new(Limits::default());
        let (_, b) = c.command(&Command::UidStoreAdd {
            set: "1:3,5\r\nX".into(),
            flags: vec!["\\Seen".into(), "\\Deleted".into()],
        });
        assert_eq!(
            b.bytes,
            b"A0001 UID STORE 1:3,5 +FLAGS.SILENT (\\Seen \\Deleted)\r\n"
        );
        let (_, b) = c.command(&Command::UidSearch(Search::UidFrom(42)));
        assert_eq!(b.bytes, b"A0002 UID SEARCH UID 42:*\r\n");
        let (_, b) = c.command(&Command::UidFetch {
            set: "1:*".into(),
            body: true,
        });
        assert_eq!(
            b.bytes,
            b"A0003 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[])\r\n"
        );
        let (_, b) = c.command(&Command::UidExpunge("7".into()));
        assert_eq!(b.bytes, b"A0004 UID EXPUNGE 7\r\n");
    }
}
