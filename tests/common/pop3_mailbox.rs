//! A plaintext POP3 server over a mailbox that changes as rfetch works on it, for the tests
//! whose oracle is the delivery contract across polls: hundreds of messages, several sessions,
//! deletions that take effect at QUIT, and a fault in the first session (a connection cut in
//! the middle of a message, or a message dribbled out slowly). Fixed dialogues are transcripts
//! (`super::transcript`); this server is the generator the rfetch fault tests need.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Message number -> text (CRLF lines, not dot-stuffed).
pub type Mailbox = Arc<Mutex<BTreeMap<usize, String>>>;

/// The command lines of each session, in order.
pub type Sessions = Arc<Mutex<Vec<Vec<String>>>>;

/// A mailbox holding `messages` as numbers 1, 2, ...
pub fn mailbox(messages: impl IntoIterator<Item = String>) -> Mailbox {
    Arc::new(Mutex::new((1..).zip(messages).collect()))
}

/// What goes wrong in the first session, and how the server presents itself.
#[derive(Default, Clone)]
pub struct Faults {
    /// Announce PIPELINING in CAPA.
    pub pipelining: bool,
    /// Send the first half of this message, then drop the connection.
    pub cut_at: Option<usize>,
    /// Send this message in 48 kB pieces 200 ms apart, setting `dribbling` when it starts.
    pub dribble: Option<usize>,
    pub dribbling: Arc<AtomicBool>,
    /// Answer DELE and QUIT with +OK in every session but keep the messages (a broken server:
    /// rfetch must not reconnect forever to delete them).
    pub keeps_deleted: bool,
}

/// The running server.
pub struct Pop3Mailbox {
    pub port: u16,
    pub sessions: Sessions,
}

/// Serves `mailbox` on a loopback port, one thread per connection.
pub fn serve(mailbox: Mailbox, faults: Faults) -> Pop3Mailbox {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sessions: Sessions = Arc::default();
    let log = Arc::clone(&sessions);
    std::thread::spawn(move || {
        for (index, conn) in listener.incoming().enumerate() {
            let Ok(sock) = conn else { return };
            log.lock().unwrap().push(Vec::new());
            let session = Session {
                mailbox: Arc::clone(&mailbox),
                faults: if index == 0 {
                    faults.clone()
                } else {
                    Faults {
                        pipelining: faults.pipelining,
                        keeps_deleted: faults.keeps_deleted,
                        ..Faults::default()
                    }
                },
                log: Arc::clone(&log),
                index,
            };
            std::thread::spawn(move || session.run(sock));
        }
    });
    Pop3Mailbox { port, sessions }
}

struct Session {
    mailbox: Mailbox,
    faults: Faults,
    log: Sessions,
    index: usize,
}

/// `text` dot-stuffed and terminated as a multi-line POP3 response.
fn multiline(text: &str) -> String {
    let stuffed = text.replace("\r\n.", "\r\n..");
    let stuffed = match stuffed.strip_prefix('.') {
        Some(rest) => format!("..{rest}"),
        None => stuffed,
    };
    format!("+OK\r\n{stuffed}.\r\n")
}

impl Session {
    fn run(self, mut sock: TcpStream) {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let mut deleted = Vec::new();
        if sock.write_all(b"+OK scripted POP3\r\n").is_err() {
            return;
        }
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let cmd = line.trim_end().to_string();
            self.log.lock().unwrap()[self.index].push(cmd.clone());
            let mut words = cmd.split_whitespace();
            let verb = words.next().unwrap_or("").to_ascii_uppercase();
            let arg: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let snapshot = self.mailbox.lock().unwrap().clone();
            let reply = match verb.as_str() {
                "CAPA" if self.faults.pipelining => {
                    "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n".into()
                }
                "CAPA" => "+OK\r\nUSER\r\nUIDL\r\n.\r\n".to_string(),
                "USER" | "PASS" | "NOOP" | "RSET" => "+OK\r\n".to_string(),
                "STAT" => format!(
                    "+OK {} {}\r\n",
                    snapshot.len(),
                    snapshot.values().map(String::len).sum::<usize>()
                ),
                "UIDL" | "LIST" => {
                    let mut r = String::from("+OK\r\n");
                    for (n, text) in &snapshot {
                        if verb == "UIDL" {
                            r.push_str(&format!("{n} uid-{n}\r\n"));
                        } else {
                            r.push_str(&format!("{n} {}\r\n", text.len()));
                        }
                    }
                    r + ".\r\n"
                }
                "RETR" if snapshot.contains_key(&arg) => {
                    let text = multiline(&snapshot[&arg]);
                    if self.faults.cut_at == Some(arg) {
                        let _ = sock.write_all(&text.as_bytes()[..text.len() / 2]);
                        let _ = sock.shutdown(Shutdown::Both);
                        return;
                    }
                    if self.faults.dribble == Some(arg) {
                        self.faults.dribbling.store(true, Ordering::SeqCst);
                        for piece in text.as_bytes().chunks(48 * 1024) {
                            if sock.write_all(piece).is_err() {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        continue;
                    }
                    text
                }
                "DELE" if snapshot.contains_key(&arg) => {
                    deleted.push(arg);
                    "+OK\r\n".to_string()
                }
                "QUIT" => {
                    let mut m = self.mailbox.lock().unwrap();
                    if !self.faults.keeps_deleted {
                        for n in &deleted {
                            m.remove(n);
                        }
                    }
                    let _ = sock.write_all(b"+OK bye\r\n");
                    return;
                }
                _ => "-ERR unknown\r\n".to_string(),
            };
            if sock.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }
}
