//! Lenient SMTP servers that record what a client delivers, for the tests whose oracle is the
//! outcome rather than the dialogue: a recorder of one submission (the client's address, the
//! envelope, the DATA bytes) for the header and option tests that vary callers and messages (it
//! takes any number of recipients, and a test that expects rsend to refuse before connecting
//! just finds nothing recorded), and a relay for any number of connections with scripted RCPT
//! replies (the queue flushes, rfetch's SMTP target). Exact dialogues are transcripts
//! (`super::transcript`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
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

/// (connection number, message) for every message a relay accepted.
type Accepted = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// A relay: plaintext, no AUTH, any number of connections. RCPT replies come from
/// `rcpt_replies`, then `otherwise`; every message that got a 250 after its final dot is
/// recorded.
pub struct Relay {
    pub port: u16,
    rcpt_replies: Arc<Mutex<VecDeque<String>>>,
    otherwise: String,
    accepted: Accepted,
    connections: Arc<Mutex<usize>>,
}

impl Relay {
    /// RCPT replies `rcpt_replies` first, then 250.
    pub fn start(rcpt_replies: &[&str]) -> Relay {
        Relay::answering(rcpt_replies, "250 2.1.5 ok")
    }

    /// Every RCPT gets `reply`.
    pub fn always(reply: &str) -> Relay {
        Relay::answering(&[], reply)
    }

    fn answering(rcpt_replies: &[&str], otherwise: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let relay = Relay {
            port: listener.local_addr().expect("addr").port(),
            rcpt_replies: Arc::new(Mutex::new(
                rcpt_replies.iter().map(|s| s.to_string()).collect(),
            )),
            otherwise: otherwise.to_string(),
            accepted: Arc::default(),
            connections: Arc::default(),
        };
        let (replies, otherwise, accepted, connections) = (
            relay.rcpt_replies.clone(),
            relay.otherwise.clone(),
            relay.accepted.clone(),
            relay.connections.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let number = {
                    let mut n = connections.lock().unwrap();
                    *n += 1;
                    *n
                };
                let (replies, otherwise, accepted) =
                    (replies.clone(), otherwise.clone(), accepted.clone());
                std::thread::spawn(move || {
                    relay_session(stream, number, &replies, &otherwise, &accepted)
                });
            }
        });
        relay
    }

    /// The messages accepted so far, as sent (dot-stuffed, CRLF).
    pub fn accepted(&self) -> Vec<Vec<u8>> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The connections that delivered at least one message.
    pub fn delivering_connections(&self) -> std::collections::HashSet<usize> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| *c)
            .collect()
    }

    /// How many connections it took.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn relay_session(
    stream: TcpStream,
    number: usize,
    replies: &Mutex<VecDeque<String>>,
    otherwise: &str,
    accepted: &Mutex<Vec<(usize, Vec<u8>)>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    let _ = w.write_all(b"220 relay.test ESMTP\r\n");
    let mut line = String::new();
    let mut refused = false;
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let reply = if cmd.starts_with("EHLO") {
            "250-relay.test\r\n250 8BITMIME\r\n".to_string()
        } else if cmd.starts_with("MAIL") {
            refused = false;
            "250 2.1.0 ok\r\n".to_string()
        } else if cmd.starts_with("RCPT") {
            let reply = replies
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| otherwise.to_string());
            refused |= !reply.starts_with('2');
            format!("{reply}\r\n")
        } else if cmd == "DATA" && !refused {
            let _ = w.write_all(b"354 go ahead\r\n");
            let mut message = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == b".\r\n" {
                    break;
                }
                message.extend_from_slice(&l);
            }
            accepted.lock().unwrap().push((number, message));
            // A little latency, as a real relay has: flushers then overlap in time.
            std::thread::sleep(Duration::from_millis(2));
            "250 2.0.0 queued\r\n".to_string()
        } else if cmd == "DATA" {
            "554 5.5.1 no valid recipients\r\n".to_string()
        } else if cmd == "RSET" || cmd == "NOOP" {
            "250 2.0.0 ok\r\n".to_string()
        } else if cmd == "QUIT" {
            let _ = w.write_all(b"221 2.0.0 bye\r\n");
            return;
        } else {
            "500 5.5.2 what?\r\n".to_string()
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
