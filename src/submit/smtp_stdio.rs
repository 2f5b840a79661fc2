//! `rsend -bs`: SMTP on stdin and stdout, as sendmail and dma offer it (Symfony Mailer uses it by
//! default). Each message a local program hands over is relayed at once through the normal
//! rsend path (account choice by sender, header pass, the configured server); the reply to the
//! end of its DATA is that relay's outcome, so nothing is acknowledged before the server took it.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::account::Env;
use crate::error::{Error, ErrorKind, Result};
use crate::exit::{rsend_code, sysexits};
use crate::proto::dotstuff::DotUnstuffer;
use crate::proto::smtp_server::{self, Dialogue, Next, Reply};

use super::request::Request;
use super::run;
use crate::message::address::check_addr_spec;

/// Longest command line accepted (RFC 5321 §4.5.3.1.4 says 512 octets; parameters and long
/// addresses get some room).
const MAX_COMMAND: usize = 4096;

/// Serves one SMTP session on `input`/`output` until QUIT or the end of input.
pub fn serve(req: &Request, env: &Env, input: &mut dyn Read, output: &mut dyn Write) -> Result<()> {
    if !req.recipients.is_empty() || req.read_recipients {
        return Err(Error::new(
            ErrorKind::Usage,
            "-bs takes the recipients from RCPT commands: no recipients or -t on the command line",
        ));
    }
    // stdout carries the protocol: a log line there would be read as a reply.
    run::log_stdout_to_stderr();
    let host = env
        .hostname
        .clone()
        .unwrap_or_else(|| "localhost".to_owned());
    let mut input = BufReader::new(input);
    let mut dialogue = Dialogue::new();
    let check = |a: &str| check_addr_spec(a);
    send(output, &Dialogue::greeting(&host))?;
    loop {
        let line = match read_command(&mut input)? {
            Command::Eof => return Ok(()),
            Command::TooLong => {
                send(output, &Reply::new(500, "5.5.2 line too long"))?;
                continue;
            }
            Command::Line(l) => l,
        };
        let next = match smtp_server::parse(&line) {
            Ok(cmd) => dialogue.command(cmd, &host, &check),
            Err(reply) => Next::Reply(reply),
        };
        match next {
            Next::Reply(r) => send(output, &r)?,
            Next::Close(r) => {
                send(output, &r)?;
                return Ok(());
            }
            Next::ReadMessage { reply, from, rcpts } => {
                send(output, &reply)?;
                let outcome = relay(req, env, &mut input, &from, rcpts)?;
                dialogue.message_done();
                send(output, &outcome)?;
            }
        }
    }
}

enum Command {
    Line(Vec<u8>),
    TooLong,
    Eof,
}

/// Reads one command line without its CRLF (or bare LF), bounded by [`MAX_COMMAND`]: a longer
/// line is skipped to its end.
fn read_command(input: &mut dyn BufRead) -> Result<Command> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        if buf.is_empty() {
            // A last line without its line end is not a command.
            return Ok(Command::Eof);
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long && line.len() + chunk.len() <= MAX_COMMAND {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        let used = found.unwrap_or(buf.len());
        input.consume(used);
        if found.is_some() {
            if too_long {
                return Ok(Command::TooLong);
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Command::Line(line));
        }
    }
}

/// Relays the message that follows DATA and says how it went. The message is read to its "."
/// line whatever happens, so the next command is read where the client sent it.
fn relay(
    req: &Request,
    env: &Env,
    input: &mut dyn BufRead,
    from: &str,
    rcpts: Vec<String>,
) -> Result<Reply> {
    let mut one = req.clone();
    one.from = Some(if from.is_empty() {
        "<>".to_owned()
    } else {
        from.to_owned()
    });
    one.read_envelope_from = false;
    one.read_recipients = false;
    one.recipients = rcpts;
    let mut message = DataReader {
        input,
        unstuffer: DotUnstuffer::new(),
        pending: Vec::new(),
        offset: 0,
        eof: false,
    };
    let result = run::send(&one, env, &mut message);
    // Whatever send left unread (it stops early on a configuration error) is still the message.
    if let Err(e) = io::copy(&mut message, &mut io::sink())
        && !message.eof
    {
        return Err(read_error(e));
    }
    if message.eof {
        return Err(Error::new(
            ErrorKind::Usage,
            "standard input ended inside a message (no \".\" line)",
        ));
    }
    Ok(match result {
        Ok(run::Outcome::Queued { id, .. }) => Reply::new(250, format!("2.0.0 queued as {id}")),
        Ok(run::Outcome::Sent(sent)) => {
            log::info!(
                "message accepted for {}: {}",
                sent.recipients.join(", "),
                sent.final_reply
            );
            let first = sent.final_reply.lines().next().unwrap_or("");
            Reply::new(250, format!("2.0.0 relayed ({} {first})", sent.final_code))
        }
        Err(e) => {
            crate::hint::show("rsend", &e, crate::hint::Vocabulary::Submit);
            let text: String = e.chain().chars().take(400).collect();
            if rsend_code(e.kind()) == sysexits::TEMPFAIL {
                Reply::new(451, format!("4.3.0 not relayed, try again later: {text}"))
            } else {
                Reply::new(554, format!("5.0.0 not relayed: {text}"))
            }
        }
    })
}

/// The message after DATA, unstuffed, ending at the "." line. A premature end of input is a
/// read error (with `eof` set), never the end of the message: send reads the whole message
/// before it connects, so a cut-off message is never relayed.
struct DataReader<'a> {
    input: &'a mut dyn BufRead,
    unstuffer: DotUnstuffer,
    pending: Vec<u8>,
    offset: usize,
    eof: bool,
}

impl Read for DataReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.pending.len() {
            if self.unstuffer.is_done() {
                return Ok(0);
            }
            if self.eof {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            self.pending.clear();
            self.offset = 0;
            let chunk = loop {
                match self.input.fill_buf() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            if chunk.is_empty() {
                self.eof = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "standard input ended inside a message",
                ));
            }
            let progress = self.unstuffer.decode(chunk, &mut self.pending);
            self.input.consume(progress.consumed);
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

fn send(output: &mut dyn Write, reply: &Reply) -> Result<()> {
    output
        .write_all(&reply.to_bytes())
        .and_then(|()| output.flush())
        .map_err(|e| Error::with_source(ErrorKind::LocalIo, "cannot write to standard output", e))
}

fn read_error(e: io::Error) -> Error {
    Error::with_source(ErrorKind::LocalIo, "cannot read standard input", e)
}
