//! The scripted server of the hermetic tests: plays a transcript file from tests/transcripts/
//! on a loopback port, checking every line the client sends and failing with the transcript
//! line, what it expected and what came instead, never by hanging.
//!
//! A transcript reads as the protocol. One step a line; blank lines and `#` comments are skipped:
//!
//! | line | meaning |
//! |---|---|
//! | `S: text` | the server sends `text` and CRLF, in one write |
//! | `S= text` | the server sends exactly `text` (no line end added), in one write |
//! | `S! name` | the server sends what the test's function `name` makes of the client's lines so far (`Transcript::compute`: a SCRAM challenge built on the client's nonce) |
//! | `C: pattern` | the client must send one CRLF-ended line matching `pattern`; `*` stands for any run of bytes (tags, base64 blobs) |
//! | `C= text` | the client must send exactly these bytes (a literal that holds line ends) |
//! | `C* pattern` | the client sends any lines, the last of them matching `pattern` (a message body whose headers the test does not spell out, up to `C* .`) |
//! | `!repeat N S: text` | `S:` (or `S=`) N times, written in large chunks (floods) |
//! | `!tls` | TLS handshake as the server now (first line: implicit TLS; after a go-ahead: STARTTLS) |
//! | `!sleep 300ms` | say nothing for that long (`ms` or `s`) |
//! | `!timeout 10s` | how long each later `C:` waits for the client (5 s by default) |
//! | `!eof` | the client must close the connection now |
//! | `!drain` | read whatever the client still sends until it closes or falls silent |
//! | `!cut` | drop the TCP connection at once, without a TLS close_notify |
//! | `!accept` | end this connection and accept the next one |
//!
//! In `S:`, `S=`, `C:` and `C=` text, `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH` and (in `C:`) `\*`
//! stand for those bytes, so hostile servers can send lone CRs and LFs, NULs and any byte; any
//! other backslash is itself (IMAP's `\Seen` reads as sent).
//! `${NAME}` stands for a value the test passes (`Transcript::load_with`), for what only the
//! test knows or generates (a port, a 4 MiB body, a flood of words): in the text of a step it is
//! those bytes as they are (no escapes, line ends allowed, never a wildcard); in a directive it
//! is its text. Comments are not read, so they may name variables freely.
//!
//! At its end (or at `!accept`) the server closes its side and records what the client still
//! sends until it closes too. The test ends with `Player::finish` (or drops the player), which
//! panics with the first difference, naming the transcript line.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tls::TestCert;

/// How long the server waits for the client to send a line, unless the transcript says
/// otherwise (and, at least 10 s, for it to connect: a binary under test starts first).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A client line longer than this is a mismatch, not a reason to keep buffering.
const MAX_CLIENT_LINE: usize = 1024 * 1024;

/// Makes a server message from the client's lines so far.
type Compute = Arc<dyn Fn(&[String]) -> Vec<u8> + Send + Sync>;

/// A parsed transcript, ready to play.
#[derive(Clone)]
pub struct Transcript {
    name: String,
    steps: Vec<Step>,
    computed: Vec<(String, Compute)>,
}

#[derive(Debug, Clone)]
struct Step {
    /// 1-based line in the transcript file.
    line: usize,
    /// The line as written, for messages.
    source: String,
    action: Action,
}

#[derive(Debug, Clone)]
enum Action {
    Send(Vec<u8>),
    Computed(String),
    Repeat(u64, Vec<u8>),
    Expect(Vec<Piece>),
    SkipUntil(Vec<Piece>),
    ExpectRaw(Vec<u8>),
    Tls,
    Sleep(Duration),
    Timeout(Duration),
    Eof,
    Drain,
    Cut,
    Accept,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Bytes(Vec<u8>),
    Any,
}

impl Transcript {
    /// Reads `tests/transcripts/NAME.txt`.
    pub fn load(name: &str) -> Transcript {
        Transcript::load_with(name, &[])
    }

    /// Reads `tests/transcripts/NAME.txt`, replacing each `${KEY}` by its value first.
    pub fn load_with(name: &str, vars: &[(&str, &str)]) -> Transcript {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/transcripts")
            .join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("transcript {}: {e}", path.display()));
        Transcript::parse_with(name, &text, vars)
    }

    /// Parses transcript text (for transcripts a test builds itself).
    pub fn parse(name: &str, text: &str) -> Transcript {
        Transcript::parse_with(name, text, &[])
    }

    pub fn parse_with(name: &str, text: &str, vars: &[(&str, &str)]) -> Transcript {
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let action = parse_action(raw, vars)
                .unwrap_or_else(|e| panic!("transcript {name} line {line}: {e}: {raw:?}"));
            steps.push(Step {
                line,
                source: raw.to_string(),
                action,
            });
        }
        Transcript {
            name: name.to_string(),
            steps,
            computed: Vec::new(),
        }
    }

    /// Gives the `S! name` steps their function: it gets the client's lines so far and returns
    /// the bytes to send.
    pub fn compute(
        mut self,
        name: &str,
        make: impl Fn(&[String]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Transcript {
        self.computed.push((name.to_string(), Arc::new(make)));
        self
    }

    /// Starts serving on a fresh loopback port, one connection per `!accept` section.
    pub fn play(self) -> Player {
        for step in &self.steps {
            if let Action::Computed(name) = &step.action {
                assert!(
                    self.computed.iter().any(|(n, _)| n == name),
                    "transcript {} line {}: no function given for S! {name}",
                    self.name,
                    step.line
                );
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let heard2 = Arc::clone(&heard);
        let handle = std::thread::spawn(move || Server::new(self, heard2).run(listener));
        Player {
            port,
            heard,
            handle: Some(handle),
        }
    }
}

/// A transcript being played. Dropping it checks the outcome like `finish`.
pub struct Player {
    port: u16,
    heard: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl Player {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The lines the client sent so far (line ends removed; bytes that are not UTF-8 shown
    /// as U+FFFD).
    pub fn heard(&self) -> Vec<String> {
        self.heard.lock().expect("heard lock").clone()
    }

    /// Waits for the server to reach the end of the transcript (and the client to close):
    /// everything the client sent, or the first difference.
    pub fn outcome(mut self) -> Result<Vec<String>, String> {
        let handle = self.handle.take().expect("played once");
        let result = match handle.join() {
            Ok(result) => result,
            Err(_) => Err("the transcript server panicked".to_string()),
        };
        result.map(|()| self.heard())
    }

    /// Waits for the end of the transcript; panics with the first difference. Returns
    /// everything the client sent: checks of what the client sent belong after this, when the
    /// server has read it all.
    pub fn finish(self) -> Vec<String> {
        self.outcome().unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        if std::thread::panicking() {
            // The test failed first, often because the server stopped at a difference: show
            // it next to the test's own message (waiting only briefly for a server still
            // running: one that stopped at a difference is ending already).
            let deadline = Instant::now() + Duration::from_millis(500);
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished()
                && let Ok(Err(e)) = handle.join()
            {
                eprintln!("{e}");
            }
            return;
        }
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the transcript server panicked"),
        }
    }
}

/// `text` with each `${KEY}` replaced by its value.
fn substitute(text: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let (value, after) = variable(&rest[start + 2..], vars)?;
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of the variable whose name starts `text` (just after its `${`), and the text
/// after its closing brace.
fn variable<'a, 't>(text: &'t str, vars: &[(&str, &'a str)]) -> Result<(&'a str, &'t str), String> {
    let end = text.find('}').ok_or("a ${ without its }")?;
    let key = &text[..end];
    let value = vars
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("no value given for ${{{key}}}"))?;
    Ok((value, &text[end + 1..]))
}

fn parse_action(raw: &str, vars: &[(&str, &str)]) -> Result<Action, String> {
    let (head, text) = match raw.find(' ') {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, ""),
    };
    Ok(match head {
        "S:" => {
            let mut bytes = unescape(text, vars)?;
            bytes.extend_from_slice(b"\r\n");
            Action::Send(bytes)
        }
        "S=" => Action::Send(unescape(text, vars)?),
        "S!" => Action::Computed(text.trim().to_string()),
        "C:" => Action::Expect(pieces(text, true, vars)?),
        "C=" => Action::ExpectRaw(unescape(text, vars)?),
        "C*" => Action::SkipUntil(pieces(text, true, vars)?),
        "!repeat" => {
            let (count, send) = text.split_once(' ').ok_or("!repeat N S: text")?;
            let count: u64 = substitute(count, vars)?
                .parse()
                .map_err(|_| "!repeat needs a count")?;
            match parse_action(send, vars)? {
                Action::Send(bytes) => Action::Repeat(count, bytes),
                _ => return Err("!repeat repeats an S: or S= line".to_string()),
            }
        }
        "!tls" => Action::Tls,
        "!sleep" => Action::Sleep(duration(&substitute(text, vars)?)?),
        "!timeout" => Action::Timeout(duration(&substitute(text, vars)?)?),
        "!eof" => Action::Eof,
        "!drain" => Action::Drain,
        "!cut" => Action::Cut,
        "!accept" => Action::Accept,
        _ => return Err("not a transcript step".to_string()),
    })
}

fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse()
            .map(Duration::from_millis)
            .map_err(|e| e.to_string())
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string())
    } else {
        Err("a duration ends in ms or s".to_string())
    }
}

/// The bytes `text` stands for (a `*` is itself here).
fn unescape(text: &str, vars: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    Ok(pieces(text, false, vars)?
        .into_iter()
        .flat_map(|p| match p {
            Piece::Bytes(b) => b,
            Piece::Any => Vec::new(),
        })
        .collect())
}

/// The text of a step as literal bytes and (with `wild`) wildcards.
fn pieces(text: &str, wild: bool, vars: &[(&str, &str)]) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.as_str().starts_with('{') => {
                let (value, after) = variable(&chars.as_str()[1..], vars)?;
                current.extend_from_slice(value.as_bytes());
                chars = after.chars();
            }
            '\\' => match chars.next() {
                Some('r') => current.push(b'\r'),
                Some('n') => current.push(b'\n'),
                Some('t') => current.push(b'\t'),
                Some('0') => current.push(0),
                Some('\\') => current.push(b'\\'),
                Some('*') => current.push(b'*'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    let byte = u8::from_str_radix(&hex, 16)
                        .map_err(|_| format!("\\x{hex} is not a byte"))?;
                    current.push(byte);
                }
                // Any other backslash is itself, so IMAP flags read as they are sent.
                Some(other) => {
                    current.push(b'\\');
                    let mut buf = [0u8; 4];
                    current.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
                None => current.push(b'\\'),
            },
            '*' if wild => {
                if !current.is_empty() {
                    out.push(Piece::Bytes(std::mem::take(&mut current)));
                }
                out.push(Piece::Any);
            }
            c => {
                let mut buf = [0u8; 4];
                current.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !current.is_empty() {
        out.push(Piece::Bytes(current));
    }
    Ok(out)
}

/// Whether `input` matches the whole pattern (`Any` matches any run, also empty).
fn matches(pattern: &[Piece], input: &[u8]) -> bool {
    match pattern.split_first() {
        None => input.is_empty(),
        Some((Piece::Bytes(b), rest)) => input.starts_with(b) && matches(rest, &input[b.len()..]),
        Some((Piece::Any, rest)) => (0..=input.len()).any(|i| matches(rest, &input[i..])),
    }
}

/// Bytes as a transcript would write them.
fn shown(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if out.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}... ({} bytes)", &out[..cut], bytes.len())
    } else {
        out
    }
}

type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    /// Between a failed TLS switch and the end of the connection.
    Broken,
}

/// What one read of the client gave.
enum Got {
    Bytes(Vec<u8>),
    /// The client closed; what it sent before that (an unfinished line).
    Closed(Vec<u8>),
    Silent(Vec<u8>),
    Failed(String),
}

struct Connection {
    io: Io,
    tcp: TcpStream,
    /// Bytes read but not yet consumed by a step.
    pending: Vec<u8>,
    /// Why the client can no longer be written to (it closed or reset the connection).
    gone: Option<String>,
}

impl Connection {
    fn read_more(&mut self) -> Result<usize, std::io::Error> {
        let mut buf = [0u8; 16 * 1024];
        let n = match &mut self.io {
            Io::Plain(s) => s.read(&mut buf)?,
            Io::Tls(s) => s.read(&mut buf)?,
            Io::Broken => 0,
        };
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn read_until(&mut self, done: impl Fn(&[u8]) -> Option<usize>) -> Got {
        loop {
            if let Some(n) = done(&self.pending) {
                return Got::Bytes(self.pending.drain(..n).collect());
            }
            if self.pending.len() > MAX_CLIENT_LINE {
                return Got::Failed(format!(
                    "the client sent {} bytes without a line end",
                    self.pending.len()
                ));
            }
            match self.read_more() {
                Ok(0) => return Got::Closed(std::mem::take(&mut self.pending)),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Got::Silent(self.pending.clone());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Got::Closed(std::mem::take(&mut self.pending));
                }
                Err(e) => return Got::Failed(e.to_string()),
            }
        }
    }

    fn line(&mut self) -> Got {
        self.read_until(|b| b.iter().position(|&c| c == b'\n').map(|i| i + 1))
    }

    fn send(&mut self, bytes: &[u8]) {
        if self.gone.is_some() {
            return;
        }
        let result = match &mut self.io {
            Io::Plain(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Io::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Io::Broken => Ok(()),
        };
        if let Err(e) = result {
            self.gone = Some(e.to_string());
        }
    }

    fn start_tls(&mut self) -> Result<(), String> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Broken) else {
            return Err("TLS is already on".to_string());
        };
        let mut conn = rustls::ServerConnection::new(TestCert::get().server_config())
            .map_err(|e| e.to_string())?;
        // Bytes the client sent right after its STARTTLS line belong to the handshake.
        let mut early: &[u8] = &std::mem::take(&mut self.pending);
        while !early.is_empty() {
            conn.read_tls(&mut early).map_err(|e| e.to_string())?;
            conn.process_new_packets().map_err(|e| e.to_string())?;
        }
        let mut stream = TlsStream::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
        }
        self.io = Io::Tls(Box::new(stream));
        Ok(())
    }

    /// Closes our side, then records what the client still sends until it closes (so that
    /// closing never resets the connection under the client's last reads).
    fn close(mut self, heard: &Mutex<Vec<String>>, timeout: Duration) {
        if let Io::Tls(s) = &mut self.io {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
        self.drain(heard, timeout);
    }

    fn drain(&mut self, heard: &Mutex<Vec<String>>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.line() {
                Got::Bytes(line) => record(heard, &line),
                Got::Closed(rest) | Got::Silent(rest) => {
                    if !rest.is_empty() {
                        record(heard, &rest);
                    }
                    self.pending.clear();
                    return;
                }
                Got::Failed(_) => return,
            }
        }
    }
}

fn record(heard: &Mutex<Vec<String>>, line: &[u8]) {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    heard
        .lock()
        .expect("heard lock")
        .push(String::from_utf8_lossy(line).into_owned());
}

struct Server {
    transcript: Transcript,
    heard: Arc<Mutex<Vec<String>>>,
    timeout: Duration,
}

impl Server {
    fn new(transcript: Transcript, heard: Arc<Mutex<Vec<String>>>) -> Server {
        Server {
            transcript,
            heard,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The report of a difference: `what` is its first line, a `got:` line (if any) goes
    /// below the transcript's `expected:` line.
    fn fail(&self, step: &Step, what: &str) -> String {
        let heard = self.heard.lock().expect("heard lock");
        let (what, got) = what.split_once('\n').unwrap_or((what, ""));
        let mut out = format!(
            "transcript {} line {}: {what}\n  expected: {}\n",
            self.transcript.name, step.line, step.source
        );
        if !got.is_empty() {
            out.push_str(got);
            out.push('\n');
        }
        out.push_str("  the client's lines so far (last 12):\n");
        for line in heard.iter().rev().take(12).rev() {
            out.push_str(&format!("    C: {}\n", shown(line.as_bytes())));
        }
        out
    }

    fn accept(&self, listener: &TcpListener, step: Option<&Step>) -> Result<Connection, String> {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(10));
        loop {
            match listener.accept() {
                Ok((tcp, _)) => {
                    tcp.set_nonblocking(false).expect("blocking socket");
                    tcp.set_read_timeout(Some(self.timeout)).expect("timeout");
                    tcp.set_write_timeout(Some(Duration::from_secs(30)))
                        .expect("timeout");
                    let io = Io::Plain(tcp.try_clone().expect("clone socket"));
                    return Ok(Connection {
                        io,
                        tcp,
                        pending: Vec::new(),
                        gone: None,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let at =
                            step.map_or("the start".to_string(), |s| format!("line {}", s.line));
                        return Err(format!(
                            "transcript {} at {at}: no client connected",
                            self.transcript.name
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        }
    }

    fn run(mut self, listener: TcpListener) -> Result<(), String> {
        let steps = std::mem::take(&mut self.transcript.steps);
        let mut conn = self.accept(&listener, None)?;
        for step in &steps {
            match &step.action {
                Action::Send(bytes) => conn.send(bytes),
                Action::Computed(name) => {
                    let heard = self.heard.lock().expect("heard lock").clone();
                    let bytes = self
                        .transcript
                        .computed
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, make)| make(&heard))
                        .unwrap_or_default();
                    conn.send(&bytes);
                }
                Action::Repeat(count, bytes) => {
                    let per_chunk = (64 * 1024 / bytes.len().max(1)).max(1) as u64;
                    let chunk = bytes.repeat(per_chunk.min(*count) as usize);
                    let mut left = *count;
                    while left > 0 && conn.gone.is_none() {
                        let n = per_chunk.min(left);
                        conn.send(&chunk[..n as usize * bytes.len()]);
                        left -= n;
                    }
                }
                Action::Expect(pattern) => match conn.line() {
                    Got::Bytes(line) => {
                        record(&self.heard, &line);
                        let Some(text) = line.strip_suffix(b"\r\n") else {
                            return Err(self.fail(
                                step,
                                &format!(
                                    "the client ended a line with a lone LF\n  got:      {}",
                                    shown(&line)
                                ),
                            ));
                        };
                        if !matches(pattern, text) {
                            return Err(self.fail(
                                step,
                                &format!(
                                    "the client sent another line\n  got:      C: {}",
                                    shown(text)
                                ),
                            ));
                        }
                    }
                    got => return Err(self.fail(step, &self.missing(got))),
                },
                Action::SkipUntil(pattern) => loop {
                    match conn.line() {
                        Got::Bytes(line) => {
                            record(&self.heard, &line);
                            let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
                            if matches(pattern, text) {
                                break;
                            }
                        }
                        got => return Err(self.fail(step, &self.missing(got))),
                    }
                },
                Action::ExpectRaw(want) => {
                    let n = want.len();
                    match conn.read_until(|b| (b.len() >= n).then_some(n)) {
                        Got::Bytes(got) => {
                            record(&self.heard, &got);
                            if &got != want {
                                return Err(self.fail(
                                    step,
                                    &format!(
                                        "the client sent other bytes\n  got:      C= {}",
                                        shown(&got)
                                    ),
                                ));
                            }
                        }
                        got => return Err(self.fail(step, &self.missing(got))),
                    }
                }
                Action::Tls => {
                    if let Err(e) = conn.start_tls() {
                        return Err(self.fail(step, &e));
                    }
                }
                Action::Sleep(d) => std::thread::sleep(*d),
                Action::Timeout(d) => {
                    self.timeout = *d;
                    conn.tcp.set_read_timeout(Some(*d)).expect("timeout");
                }
                Action::Eof => match conn.line() {
                    Got::Closed(rest) if rest.is_empty() => {}
                    Got::Bytes(line) | Got::Closed(line) | Got::Silent(line)
                        if !line.is_empty() =>
                    {
                        record(&self.heard, &line);
                        return Err(self.fail(
                            step,
                            &format!(
                                "the client sent more instead of closing\n  got:      C: {}",
                                shown(&line)
                            ),
                        ));
                    }
                    Got::Silent(_) => {
                        return Err(self.fail(
                            step,
                            &format!("the client kept the connection open for {:?}", self.timeout),
                        ));
                    }
                    Got::Failed(e) => return Err(self.fail(step, &e)),
                    Got::Bytes(_) | Got::Closed(_) => {}
                },
                Action::Drain => conn.drain(&self.heard, self.timeout),
                Action::Cut => {
                    let _ = conn.tcp.shutdown(Shutdown::Both);
                    conn.gone = Some("the transcript cut the connection".to_string());
                    conn.io = Io::Broken;
                }
                Action::Accept => {
                    conn.close(&self.heard, self.timeout);
                    conn = self.accept(&listener, Some(step))?;
                }
            }
        }
        conn.close(&self.heard, self.timeout);
        Ok(())
    }

    fn missing(&self, got: Got) -> String {
        match got {
            Got::Bytes(b) => format!("unexpected bytes {}", shown(&b)),
            Got::Closed(rest) if rest.is_empty() => "the client closed the connection".to_string(),
            Got::Closed(rest) => format!(
                "the client closed the connection after an unfinished line\n  got:      {}",
                shown(&rest)
            ),
            Got::Silent(rest) => format!(
                "the client sent nothing more for {:?}{}",
                self.timeout,
                if rest.is_empty() {
                    String::new()
                } else {
                    format!("\n  got:      {} (no line end)", shown(&rest))
                }
            ),
            Got::Failed(e) => format!("reading from the client failed: {e}"),
        }
    }
}
