//! The server side of the small SMTP subset `rsend -bs` speaks to a local program on stdin and
//! stdout (RFC 5321): command parsing and the order of a transaction (EHLO/HELO, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT, VRFY). Pure: a command line in, a reply or "read the message now"
//! out; the caller frames lines, reads DATA and relays the message.

use std::fmt;

/// Most recipients accepted in one transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 1000;

/// One reply: a code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// The reply as sent: `250-first\r\n250 last\r\n`. Control characters in the text (which
    /// could come from an error message) become spaces, so one reply is always its own lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let clean: String = line
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            out.extend_from_slice(format!("{}{sep}{clean}\r\n", self.code).as_bytes());
        }
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Hello {
        extended: bool,
        domain: String,
    },
    Mail {
        address: String,
        params: Vec<String>,
    },
    Rcpt {
        address: String,
        params: Vec<String>,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    /// A real SMTP command this subset does not offer (AUTH, STARTTLS, BDAT, ETRN, ...).
    NotImplemented(String),
}

/// Parses one command line (without its line end). A syntax error is the reply to send.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(Reply::new(500, "5.5.2 command is not valid UTF-8"));
    };
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r.trim_start()),
        None => (line, ""),
    };
    let no_argument = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(Reply::new(501, "5.5.4 this command takes no argument"))
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" | "HELO" => {
            if rest.is_empty() {
                return Err(Reply::new(501, "5.5.4 a domain name is required"));
            }
            Ok(Command::Hello {
                extended: verb.eq_ignore_ascii_case("EHLO"),
                domain: rest.to_owned(),
            })
        }
        "MAIL" => {
            let (address, params) = path_argument(rest, "FROM:", true)?;
            Ok(Command::Mail { address, params })
        }
        "RCPT" => {
            let (address, params) = path_argument(rest, "TO:", false)?;
            Ok(Command::Rcpt { address, params })
        }
        "DATA" => no_argument(Command::Data),
        "RSET" => no_argument(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_argument(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "AUTH" | "STARTTLS" | "BDAT" | "ETRN" | "EXPN" | "HELP" | "TURN" | "ATRN" | "XCLIENT"
        | "XFORWARD" => Ok(Command::NotImplemented(verb.to_ascii_uppercase())),
        _ => Err(Reply::new(500, "5.5.2 command not recognized")),
    }
}

/// `FROM:<address> PARAMS` / `TO:<address> PARAMS`: the address between the angle brackets
/// (a space after the colon is tolerated) and the parameters after it.
fn path_argument(rest: &str, keyword: &str, null_ok: bool) -> Result<(String, Vec<String>), Reply> {
    let syntax = || Reply::new(501, format!("5.5.4 syntax: {keyword}<address>"));
    let head = rest.get(..keyword.len()).ok_or_else(syntax)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(syntax());
    }
    let after = rest[keyword.len()..].trim_start();
    let inner = after.strip_prefix('<').ok_or_else(syntax)?;
    let (address, params) = inner.split_once('>').ok_or_else(syntax)?;
    if address.contains(['<', '>']) {
        return Err(syntax());
    }
    if address.is_empty() && !null_ok {
        return Err(Reply::new(501, "5.1.3 an empty recipient address"));
    }
    if address.starts_with('@') {
        return Err(Reply::new(553, "5.1.7 source routes are not accepted"));
    }
    let params = params.split_whitespace().map(str::to_owned).collect();
    Ok((address.to_owned(), params))
}

/// What the caller does after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this reply and read the next command.
    Reply(Reply),
    /// Send this reply (354), then read the message up to the "." line and relay it to
    /// `from` and `rcpts`; then call [`Dialogue::message_done`] with the result.
    ReadMessage {
        reply: Reply,
        from: String,
        rcpts: Vec<String>,
    },
    /// Send this reply and end the session.
    Close(Reply),
}

/// The state of one session: greeted or not, and the transaction being built.
#[derive(Debug, Default)]
pub struct Dialogue {
    greeted: bool,
    from: Option<String>,
    rcpts: Vec<String>,
}

impl Dialogue {
    pub fn new() -> Dialogue {
        Dialogue::default()
    }

    /// The greeting line.
    pub fn greeting(host: &str) -> Reply {
        Reply::new(
            220,
            format!("{host} ESMTP rsend (postie): one message per transaction, relayed at once"),
        )
    }

    /// Handles a command. `check_address` says why an address cannot be used (the caller
    /// owns the address rules).
    pub fn command(
        &mut self,
        cmd: Command,
        host: &str,
        check_address: &dyn Fn(&str) -> Result<(), &'static str>,
    ) -> Next {
        let reply = |code, text: &str| Next::Reply(Reply::new(code, text));
        match cmd {
            Command::Hello { extended, domain } => {
                self.reset();
                self.greeted = true;
                if extended {
                    Next::Reply(Reply {
                        code: 250,
                        lines: vec![
                            format!("{host} greets {domain}"),
                            "8BITMIME".into(),
                            "PIPELINING".into(),
                            "ENHANCEDSTATUSCODES".into(),
                        ],
                    })
                } else {
                    Next::Reply(Reply::new(250, host.to_owned()))
                }
            }
            Command::Mail { address, params } => {
                if !self.greeted {
                    return reply(503, "5.5.1 send HELO or EHLO first");
                }
                if self.from.is_some() {
                    return reply(503, "5.5.1 nested MAIL command");
                }
                for p in &params {
                    let known = p
                        .split_once('=')
                        .map(|(k, _)| {
                            k.eq_ignore_ascii_case("SIZE") || k.eq_ignore_ascii_case("BODY")
                        })
                        .unwrap_or(false);
                    if !known {
                        return reply(555, "5.5.4 unsupported MAIL parameter");
                    }
                }
                if !address.is_empty()
                    && let Err(why) = check_address(&address)
                {
                    return Next::Reply(Reply::new(
                        553,
                        format!("5.1.7 bad sender address: {why}"),
                    ));
                }
                self.from = Some(address);
                reply(250, "2.1.0 sender ok")
            }
            Command::Rcpt { address, params } => {
                if self.from.is_none() {
                    return reply(503, "5.5.1 need MAIL before RCPT");
                }
                if !params.is_empty() {
                    return reply(555, "5.5.4 unsupported RCPT parameter");
                }
                if self.rcpts.len() >= MAX_RECIPIENTS {
                    return reply(452, "4.5.3 too many recipients");
                }
                if let Err(why) = check_address(&address) {
                    return Next::Reply(Reply::new(
                        553,
                        format!("5.1.3 bad recipient address: {why}"),
                    ));
                }
                self.rcpts.push(address);
                reply(250, "2.1.5 recipient ok")
            }
            Command::Data => match &self.from {
                None => reply(503, "5.5.1 need MAIL before DATA"),
                Some(_) if self.rcpts.is_empty() => reply(503, "5.5.1 need RCPT before DATA"),
                Some(from) => Next::ReadMessage {
                    reply: Reply::new(354, "end the message with a line holding only \".\""),
                    from: from.clone(),
                    rcpts: self.rcpts.clone(),
                },
            },
            Command::Rset => {
                self.reset();
                reply(250, "2.0.0 reset")
            }
            Command::Noop => reply(250, "2.0.0 ok"),
            Command::Vrfy => reply(252, "2.5.2 cannot verify addresses; send and see"),
            Command::Quit => Next::Close(Reply::new(221, "2.0.0 bye")),
            Command::NotImplemented(verb) => {
                Next::Reply(Reply::new(502, format!("5.5.1 {verb} is not implemented")))
            }
        }
    }

    /// Ends the transaction after its message was relayed (or not).
    pub fn message_done(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.from = None;
        self.rcpts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &str) -> Result<(), &'static str> {
        Ok(())
    }

    fn run(d: &mut Dialogue, line: &str) -> Next {
        match parse(line.as_bytes()) {
            Ok(cmd) => d.command(cmd, "h.test", &ok),
            Err(r) => Next::Reply(r),
        }
    }

    fn code(n: &Next) -> u16 {
        match n {
            Next::Reply(r) | Next::Close(r) => r.code,
            Next::ReadMessage { reply, .. } => reply.code,
        }
    }

    #[test]
    fn a_transaction() {
        let mut d = Dialogue::new();
        assert_eq!(code(&run(&mut d, "MAIL FROM:<a@x>")), 503);
        let ehlo = run(&mut d, "EHLO client");
        match &ehlo {
            Next::Reply(r) => {
                assert_eq!(r.code, 250);
                assert_eq!(
                    String::from_utf8(r.to_bytes()).unwrap(),
                    "250-h.test greets client\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(code(&run(&mut d, "RCPT TO:<b@y>")), 503);
        assert_eq!(code(&run(&mut d, "DATA")), 503);
        assert_eq!(
            code(&run(&mut d, "mail from: <a@x> BODY=8BITMIME SIZE=10")),
            250
        );
        assert_eq!(code(&run(&mut d, "MAIL FROM:<a@x>")), 503);
        assert_eq!(code(&run(&mut d, "DATA")), 503);
        assert_eq!(code(&run(&mut d, "RCPT TO:<b@y>")), 250);
        assert_eq!(code(&run(&mut d, "rcpt to:<c@y>")), 250);
        match run(&mut d, "DATA") {
            Next::ReadMessage { reply, from, rcpts } => {
                assert_eq!(reply.code, 354);
                assert_eq!(from, "a@x");
                assert_eq!(rcpts, ["b@y", "c@y"]);
            }
            other => panic!("{other:?}"),
        }
        d.message_done();
        assert_eq!(
            code(&run(&mut d, "RCPT TO:<b@y>")),
            503,
            "a new transaction"
        );
        assert_eq!(code(&run(&mut d, "MAIL FROM:<>")), 250, "null sender");
        assert_eq!(code(&run(&mut d, "RSET")), 250);
        assert_eq!(code(&run(&mut d, "RCPT TO:<b@y>")), 503);
        assert_eq!(code(&run(&mut d, "NOOP")), 250);
        assert_eq!(code(&run(&mut d, "VRFY x")), 252);
        assert_eq!(code(&run(&mut d, "QUIT")), 221);
        assert!(matches!(run(&mut d, "QUIT"), Next::Close(_)));
    }

    #[test]
    fn refusals() {
        let mut d = Dialogue::new();
        run(&mut d, "HELO c");
        for (line, want) in [
            ("AUTH PLAIN AGFhAGI=", 502),
            ("STARTTLS", 502),
            ("BDAT 10 LAST", 502),
            ("FOO", 500),
            ("EHLO", 501),
            ("MAIL FROM:a@x", 501),
            ("MAIL TO:<a@x>", 501),
            ("MAIL FROM:<a@x", 501),
            ("MAIL FROM:<<a@x>>", 501),
            ("MAIL FROM:<@relay:a@x>", 553),
            ("MAIL FROM:<a@x> RET=FULL", 555),
            ("DATA now", 501),
        ] {
            assert_eq!(code(&run(&mut d, line)), want, "{line}");
        }
        assert_eq!(code(&run(&mut d, "MAIL FROM:<a@x>")), 250);
        assert_eq!(code(&run(&mut d, "RCPT TO:<>")), 501);
        assert_eq!(code(&run(&mut d, "RCPT TO:<b@y> NOTIFY=NEVER")), 555);
        assert_eq!(parse(b"\xff\xfe").unwrap_err().code, 500);
        let bad = |_: &str| Err("nope");
        assert_eq!(
            code(&d.command(
                Command::Rcpt {
                    address: "x".into(),
                    params: vec![]
                },
                "h",
                &bad
            )),
            553
        );
    }

    #[test]
    fn recipients_are_bounded() {
        let mut d = Dialogue::new();
        run(&mut d, "HELO c");
        run(&mut d, "MAIL FROM:<a@x>");
        for i in 0..MAX_RECIPIENTS {
            assert_eq!(code(&run(&mut d, &format!("RCPT TO:<r{i}@y>"))), 250);
        }
        assert_eq!(code(&run(&mut d, "RCPT TO:<one-more@y>")), 452);
    }

    #[test]
    fn replies_cannot_carry_line_breaks() {
        let r = Reply::new(451, "4.3.0 server said: 550 x\r\n250 injected");
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "451 4.3.0 server said: 550 x  250 injected\r\n"
        );
    }
}
