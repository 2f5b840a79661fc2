//! The protocol floor for bench/rfetch.sh: the least a client can do to fetch and delete every
//! message of a mailbox over POP3S or IMAPS, with nothing written anywhere. A client's time over
//! this one's, measured in the same run, is what the client itself costs.
//!
//! ```text
//! floor pop3|imap HOST PORT USER PASSWORD CA_FILE [--no-wait] [--write MAILDIR]
//! ```
//!
//! POP3: USER/PASS, UIDL (a client that must not fetch a message twice needs it), then RETR n
//! and DELE n for every message pipelined (64 commands in flight), QUIT. IMAP: LOGIN, SELECT,
//! one `UID FETCH 1:* (BODY.PEEK[])`, one `UID STORE 1:* +FLAGS.SILENT (\Seen \Deleted)`,
//! `UID EXPUNGE 1:*`, LOGOUT. Every reply is read, except with `--no-wait`: then the client
//! sends the command that commits the deletions (POP3 QUIT; IMAP UID EXPUNGE and LOGOUT) once
//! every earlier reply is read, and closes without waiting for its answer. Prints the number
//! of messages fetched on stdout. A benchmark helper, not part of postie: errors panic.
//!
//! `--write MAILDIR` adds the least a client must do to keep the messages: each one written,
//! once it has arrived, with one write(2) to a file in MAILDIR/tmp, and every 100 messages one syncfs(2), an fsync of each
//! file (its data is on disk already: a cheap call), the renames into new/ and an fsync of new/.
//! The bytes are written as received (CRLF, dot-stuffed): it is a cost bound, not a delivery.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

type Tls = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// Commands of the POP3 part in flight at once (as rfetch's default pipeline window).
const WINDOW: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        eprintln!("usage: floor pop3|imap HOST PORT USER PASSWORD CA_FILE [--no-wait]");
        std::process::exit(2);
    }
    let wait = !args.iter().any(|a| a == "--no-wait");
    let mut out = args
        .iter()
        .position(|a| a == "--write")
        .map(|i| Writer::new(PathBuf::from(&args[i + 1])));
    let mut s = connect(&args[2], args[3].parse().expect("port"), &args[6]);
    let n = match args[1].as_str() {
        "pop3" => pop3(&mut s, &args[4], &args[5], wait, &mut out),
        "imap" => imap(&mut s, &args[4], &args[5], wait, &mut out),
        other => panic!("unknown protocol {other}"),
    };
    if let Some(w) = out.as_mut() {
        w.publish();
    }
    let tls = s.get_mut();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    println!("{n}");
}

fn connect(host: &str, port: u16, ca: &str) -> Tls {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots
            .add(cert.expect("CA certificate"))
            .expect("CA certificate");
    }
    // The crate's one provider (ring; built where its deprecation is accepted, with the reason).
    let provider = postie::net::crypto_provider();
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).expect("server name");
    let conn = ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let sock = TcpStream::connect((host, port)).expect("connect");
    sock.set_nodelay(true).expect("TCP_NODELAY");
    BufReader::with_capacity(64 * 1024, StreamOwned::new(conn, sock))
}

/// Reads one line (CRLF included) into `line`, which it clears first.
fn line<'a>(s: &mut Tls, line: &'a mut Vec<u8>) -> &'a [u8] {
    line.clear();
    let n = s.read_until(b'\n', line).expect("read");
    assert!(n > 0, "the server closed the connection");
    line
}

fn send(s: &mut Tls, bytes: &[u8]) {
    let tls = s.get_mut();
    tls.write_all(bytes).expect("write");
    tls.flush().expect("flush");
}

fn ok(reply: &[u8], what: &str) {
    assert!(
        reply.starts_with(b"+OK"),
        "{what}: {}",
        String::from_utf8_lossy(reply)
    );
}

/// The minimal durable Maildir writer of `--write`.
struct Writer {
    root: PathBuf,
    next: usize,
    current: Vec<u8>,
    batch: Vec<(File, String)>,
}

impl Writer {
    fn new(root: PathBuf) -> Writer {
        for d in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(root.join(d)).expect("Maildir");
        }
        Writer {
            root,
            next: 0,
            current: Vec::with_capacity(64 * 1024),
            batch: Vec::new(),
        }
    }

    fn start(&mut self) {
        self.current.clear();
    }

    fn data(&mut self, bytes: &[u8]) {
        self.current.extend_from_slice(bytes);
    }

    fn end(&mut self) {
        self.next += 1;
        let name = format!("floor.{}.{}", std::process::id(), self.next);
        let mut f = File::create_new(self.root.join("tmp").join(&name)).expect("create");
        f.write_all(&self.current).expect("write");
        self.batch.push((f, name));
        if self.batch.len() >= 100 {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let Some((first, _)) = self.batch.first() else {
            return;
        };
        rustix::fs::syncfs(first).expect("syncfs");
        for (f, name) in self.batch.drain(..) {
            f.sync_all().expect("fsync");
            drop(f);
            std::fs::rename(
                self.root.join("tmp").join(&name),
                self.root.join("new").join(&name),
            )
            .expect("rename");
        }
        File::open(self.root.join("new"))
            .expect("new/")
            .sync_all()
            .expect("fsync new/");
    }
}

fn pop3(s: &mut Tls, user: &str, password: &str, wait: bool, out: &mut Option<Writer>) -> usize {
    let mut buf = Vec::with_capacity(8192);
    ok(line(s, &mut buf), "greeting");
    send(
        s,
        format!("USER {user}\r\nPASS {password}\r\nUIDL\r\n").as_bytes(),
    );
    ok(line(s, &mut buf), "USER");
    ok(line(s, &mut buf), "PASS");
    ok(line(s, &mut buf), "UIDL");
    let mut msgs = Vec::new();
    while line(s, &mut buf) != b".\r\n" {
        let n = buf.split(|&b| b == b' ').next().unwrap_or_default();
        msgs.push(String::from_utf8_lossy(n).into_owned());
    }
    // Every message is RETR then DELE: the commands go out 64 at a time, the next ones when
    // half of those are answered, so the server never waits for the client.
    let cmds: Vec<String> = msgs
        .iter()
        .flat_map(|n| [format!("RETR {n}\r\n"), format!("DELE {n}\r\n")])
        .collect();
    let (mut sent, mut answered) = (0, 0);
    while answered < cmds.len() {
        if sent - answered <= WINDOW / 2 && sent < cmds.len() {
            let upto = (sent + WINDOW).min(cmds.len());
            send(s, cmds[sent..upto].concat().as_bytes());
            sent = upto;
        }
        ok(line(s, &mut buf), &cmds[answered]);
        if cmds[answered].starts_with("RETR") {
            if let Some(w) = out.as_mut() {
                w.start();
            }
            while line(s, &mut buf) != b".\r\n" {
                if let Some(w) = out.as_mut() {
                    w.data(&buf);
                }
            }
            if let Some(w) = out.as_mut() {
                w.end();
            }
        }
        answered += 1;
    }
    if let Some(w) = out.as_mut() {
        // every message durable before QUIT commits the deletions
        w.publish();
    }
    send(s, b"QUIT\r\n");
    if wait {
        ok(line(s, &mut buf), "QUIT");
    }
    msgs.len()
}

fn imap(s: &mut Tls, user: &str, password: &str, wait: bool, out: &mut Option<Writer>) -> usize {
    let mut buf = Vec::with_capacity(8192);
    line(s, &mut buf);
    send(
        s,
        format!("a LOGIN {user} {password}\r\nb SELECT INBOX\r\n").as_bytes(),
    );
    until_tagged(s, "a", &mut buf, &mut None);
    until_tagged(s, "b", &mut buf, &mut None);
    send(s, b"c UID FETCH 1:* (BODY.PEEK[])\r\n");
    let n = until_tagged(s, "c", &mut buf, out);
    if let Some(w) = out.as_mut() {
        // every message durable before any is flagged \Deleted
        w.publish();
    }
    send(s, b"d UID STORE 1:* +FLAGS.SILENT (\\Seen \\Deleted)\r\n");
    until_tagged(s, "d", &mut buf, &mut None);
    send(s, b"e UID EXPUNGE 1:*\r\nf LOGOUT\r\n");
    if wait {
        until_tagged(s, "e", &mut buf, &mut None);
        until_tagged(s, "f", &mut buf, &mut None);
    }
    n
}

/// Reads responses up to the tagged completion of `tag` (which must be OK), skipping literals;
/// returns how many literals there were (the messages of a FETCH).
fn until_tagged(s: &mut Tls, tag: &str, buf: &mut Vec<u8>, out: &mut Option<Writer>) -> usize {
    let prefix = format!("{tag} ");
    let mut literals = 0;
    let mut sink = [0u8; 16 * 1024];
    loop {
        let l = line(s, buf);
        if let Some(size) = literal(l) {
            let mut left = size;
            if let Some(w) = out.as_mut() {
                w.start();
            }
            while left > 0 {
                let take = left.min(sink.len());
                s.read_exact(&mut sink[..take]).expect("literal");
                if let Some(w) = out.as_mut() {
                    w.data(&sink[..take]);
                }
                left -= take;
            }
            if let Some(w) = out.as_mut() {
                w.end();
            }
            literals += 1;
            continue;
        }
        if l.starts_with(prefix.as_bytes()) {
            assert!(
                l[prefix.len()..].starts_with(b"OK"),
                "{}",
                String::from_utf8_lossy(l)
            );
            return literals;
        }
    }
}

/// The size of the literal announced at the end of `line` (`{N}\r\n`).
fn literal(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&body[open + 1..]).ok()?.parse().ok()
}
