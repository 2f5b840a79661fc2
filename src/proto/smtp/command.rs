//! SMTP command encoding (RFC 5321 §4.1) with the ESMTP parameters we send: SIZE (RFC 1870),
//! BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), RET/ENVID/NOTIFY (RFC 3461). Arguments that
//! could smuggle a second command (CR, LF, other controls, angle brackets) are refused.

use super::SmtpError;

/// DSN RET parameter: what a bounce should contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnRet {
    Full,
    Headers,
}

/// DSN NOTIFY parameter; all `false` means NEVER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    fn param(self) -> String {
        let mut events = Vec::new();
        if self.success {
            events.push("SUCCESS");
        }
        if self.failure {
            events.push("FAILURE");
        }
        if self.delay {
            events.push("DELAY");
        }
        if events.is_empty() {
            "NOTIFY=NEVER".to_string()
        } else {
            format!("NOTIFY={}", events.join(","))
        }
    }
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body_8bit: bool,
    pub smtputf8: bool,
    pub ret: Option<DsnRet>,
    pub envid: Option<String>,
}

/// An SMTP/LMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(&'a str),
    Lhlo(&'a str),
    Helo(&'a str),
    StartTls,
    /// AUTH with the mechanism name and an already base64-encoded initial response.
    Auth(&'a str, Option<&'a str>),
    Mail(&'a str, &'a MailParams),
    Rcpt(&'a str, Option<Notify>),
    Data,
    Rset,
    Noop,
    Quit,
}

impl Command<'_> {
    /// The wire bytes, CRLF included.
    pub fn encode(&self) -> Result<Vec<u8>, SmtpError> {
        let line = match self {
            Command::Ehlo(d) => format!("EHLO {}", check_domain(d)?),
            Command::Lhlo(d) => format!("LHLO {}", check_domain(d)?),
            Command::Helo(d) => format!("HELO {}", check_domain(d)?),
            Command::StartTls => "STARTTLS".to_string(),
            Command::Auth(mech, initial) => {
                let mech = check_word(mech, "authentication mechanism")?;
                match initial {
                    // RFC 4954 §4: an empty initial response is sent as "=".
                    Some("") => format!("AUTH {mech} ="),
                    Some(ir) => format!("AUTH {mech} {}", check_word(ir, "initial response")?),
                    None => format!("AUTH {mech}"),
                }
            }
            Command::Mail(from, params) => {
                let mut line = format!("MAIL FROM:<{}>", check_address(from, true)?);
                if let Some(size) = params.size {
                    line.push_str(&format!(" SIZE={size}"));
                }
                if params.body_8bit {
                    line.push_str(" BODY=8BITMIME");
                }
                if params.smtputf8 {
                    line.push_str(" SMTPUTF8");
                }
                match params.ret {
                    Some(DsnRet::Full) => line.push_str(" RET=FULL"),
                    Some(DsnRet::Headers) => line.push_str(" RET=HDRS"),
                    None => {}
                }
                if let Some(envid) = &params.envid {
                    line.push_str(" ENVID=");
                    line.push_str(&xtext(envid));
                }
                line
            }
            Command::Rcpt(to, notify) => {
                let mut line = format!("RCPT TO:<{}>", check_address(to, false)?);
                if let Some(n) = notify {
                    line.push(' ');
                    line.push_str(&n.param());
                }
                line
            }
            Command::Data => "DATA".to_string(),
            Command::Rset => "RSET".to_string(),
            Command::Noop => "NOOP".to_string(),
            Command::Quit => "QUIT".to_string(),
        };
        let mut bytes = line.into_bytes();
        bytes.extend_from_slice(b"\r\n");
        Ok(bytes)
    }
}

fn is_control(c: char) -> bool {
    c.is_control()
}

/// An envelope address: no controls (CR/LF would start a new command), no angle brackets or
/// spaces outside what a mailbox may hold.
fn check_address(address: &str, may_be_empty: bool) -> Result<&str, SmtpError> {
    if (address.is_empty() && !may_be_empty)
        || address
            .chars()
            .any(|c| is_control(c) || c == '<' || c == '>')
    {
        return Err(SmtpError::InvalidArgument {
            what: "envelope address",
        });
    }
    Ok(address)
}

fn check_domain(domain: &str) -> Result<&str, SmtpError> {
    check_word(domain, "EHLO domain")
}

fn check_word<'a>(word: &'a str, what: &'static str) -> Result<&'a str, SmtpError> {
    if word.is_empty() || word.chars().any(|c| is_control(c) || c == ' ') {
        return Err(SmtpError::InvalidArgument { what });
    }
    Ok(word)
}

/// RFC 3461 §4 xtext: printable ASCII except "+" and "=", everything else as "+XX".
fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(c: Command) -> String {
        match c.encode() {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn table() {
        let full = MailParams {
            size: Some(1234),
            body_8bit: true,
            smtputf8: true,
            ret: Some(DsnRet::Headers),
            envid: Some("id+1=x y".into()),
        };
        let none = MailParams::default();
        let all = Notify {
            success: true,
            failure: true,
            delay: true,
        };
        let cases: Vec<(Command, &str)> = vec![
            (Command::Ehlo("client.example"), "EHLO client.example\r\n"),
            (Command::Lhlo("client.example"), "LHLO client.example\r\n"),
            (Command::Helo("client.example"), "HELO client.example\r\n"),
            (Command::StartTls, "STARTTLS\r\n"),
            (
                Command::Auth("PLAIN", Some("AGEAYg==")),
                "AUTH PLAIN AGEAYg==\r\n",
            ),
            (Command::Auth("PLAIN", Some("")), "AUTH PLAIN =\r\n"),
            (Command::Auth("LOGIN", None), "AUTH LOGIN\r\n"),
            (Command::Mail("", &none), "MAIL FROM:<>\r\n"),
            (Command::Mail("a@b.c", &none), "MAIL FROM:<a@b.c>\r\n"),
            (
                Command::Mail("a@b.c", &full),
                "MAIL FROM:<a@b.c> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+3Dx+20y\r\n",
            ),
            (Command::Rcpt("root", None), "RCPT TO:<root>\r\n"),
            (
                Command::Rcpt("x@y", Some(Notify::default())),
                "RCPT TO:<x@y> NOTIFY=NEVER\r\n",
            ),
            (
                Command::Rcpt("x@y", Some(all)),
                "RCPT TO:<x@y> NOTIFY=SUCCESS,FAILURE,DELAY\r\n",
            ),
            (Command::Data, "DATA\r\n"),
            (Command::Rset, "RSET\r\n"),
            (Command::Noop, "NOOP\r\n"),
            (Command::Quit, "QUIT\r\n"),
        ];
        for (cmd, wire) in cases {
            assert_eq!(text(cmd.clone()), wire, "{cmd:?}");
        }
    }

    #[test]
    fn injection_is_refused() {
        let none = MailParams::default();
        let bad: Vec<Command> = vec![
            Command::Mail("a@b\r\nRCPT TO:<evil@x>", &none),
            Command::Mail("a@b\n", &none),
            Command::Mail("a@b> SIZE=1", &none),
            Command::Rcpt("x\ry", None),
            Command::Rcpt("", None),
            Command::Rcpt("x\0y", None),
            Command::Ehlo("host\r\nMAIL FROM:<x>"),
            Command::Ehlo(""),
            Command::Ehlo("two words"),
            Command::Auth("PLAIN", Some("abc\r\nQUIT")),
            Command::Auth("PLAIN\r\n", None),
        ];
        for cmd in bad {
            assert!(
                matches!(cmd.encode(), Err(SmtpError::InvalidArgument { .. })),
                "{cmd:?}"
            );
        }
    }
}
