//! A lenient SMTP server that records what rsend puts on the wire (the client's address, the
//! envelope, the DATA bytes), for the header and option tests that vary callers and messages:
//! it takes any number of recipients, and a test that expects rsend to refuse before connecting
//! just finds nothing recorded. Exact dialogues are transcripts (`super::transcript`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// What the recording server heard.
#[derive(Debug, Default)]
pub struct Heard {
    /// The client's address (TCP only).
    pub client: Option<String>,
    pub mail_from: Option<String>,
    /// The addresses of every RCPT TO, in order.
    pub rcpts: Vec<String>,
    /// The DATA bytes as sent (dot-stuffed, CRLF), without the final ".\r\n"; `None` when no
    /// message was sent.
    pub data: Option<Vec<u8>>,
}

impl Heard {
    /// The header block of the message on the wire, up to the first empty line.
    pub fn header(&self) -> String {
        let data = self.data.as_deref().unwrap_or_default();
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 2)
            .unwrap_or(data.len());
        String::from_utf8_lossy(&data[..end]).into_owned()
    }

    /// The header's field names, one per line that does not start with white space.
    pub fn field_names(&self) -> Vec<String> {
        self.header()
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
            .map(|l| l.split(':').next().unwrap_or("").to_ascii_lowercase())
            .collect()
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.field_names()
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The address between `<` and `>` in a MAIL or RCPT command.
fn address(command: &str) -> Option<String> {
    command
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(a, _)| a.to_string())
}

/// Speaks just enough SMTP (with PIPELINING) to take one message.
fn serve(reader: impl std::io::Read, mut writer: impl Write, heard: &mut Heard) {
    let mut reader = BufReader::new(reader);
    let mut say = |text: &str| writer.write_all(text.as_bytes()).is_ok();
    if !say("220 fake.test ESMTP recorder\r\n") {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let ok = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say("250-fake.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
        } else if upper.starts_with("MAIL") {
            heard.mail_from = address(&command);
            say("250 2.1.0 ok\r\n")
        } else if upper.starts_with("RCPT") {
            heard.rcpts.push(address(&command).unwrap_or_default());
            say("250 2.1.5 ok\r\n")
        } else if upper == "DATA" {
            if !say("354 go ahead\r\n") {
                return;
            }
            let mut data = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&line);
            }
            heard.data = Some(data);
            say("250 2.0.0 queued as RECORDED\r\n")
        } else if upper == "QUIT" {
            let _ = say("221 2.0.0 bye\r\n");
            return;
        } else {
            say("250 2.0.0 ok\r\n")
        };
        if !ok {
            return;
        }
    }
}

/// A TCP recording server for one submission on a loopback port.
pub fn tcp_server() -> (u16, mpsc::Receiver<Heard>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut heard = Heard::default();
        if let Ok((stream, peer)) = listener.accept() {
            heard.client = Some(peer.ip().to_string());
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            if let Ok(w) = stream.try_clone() {
                serve(stream, w, &mut heard);
            }
        }
        let _ = tx.send(heard);
    });
    (port, rx)
}

/// A recording server on a Unix-domain socket at `path`.
pub fn unix_server(path: &Path) -> mpsc::Receiver<Heard> {
    let listener = UnixListener::bind(path).expect("bind unix socket");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut heard = Heard::default();
        if let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            if let Ok(w) = stream.try_clone() {
                serve(stream, w, &mut heard);
            }
        }
        let _ = tx.send(heard);
    });
    rx
}

/// What the TCP server on `port` heard, once rsend is done: whether or not rsend connected, the
/// server's accept is unblocked and its thread ends.
pub fn wait(port: u16, heard: mpsc::Receiver<Heard>) -> Heard {
    let _ = TcpStream::connect(("127.0.0.1", port));
    heard
        .recv_timeout(Duration::from_secs(20))
        .expect("the recording server did not finish")
}
