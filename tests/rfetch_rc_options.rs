//! fetchmail's user options on the real stack, each shown by what it changes: `sslcertpath`
//! (a c_rehash directory as the trust anchors), `sslfingerprint` in fetchmail's MD5 and SHA-1
//! forms, `passwordfile`, `stripcr`/`forcecr`, `dropstatus`/`dropdelivered`, and an
//! `smtphost` list that falls back past a dead listener.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_rc(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("fetchmailrc");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// bob over POP3S with `tls` (the trust options) and the rest of the user options in `user`.
fn pop3s_poll(s: &common::Stack, dir: &Path, tls: &str, user: &str) -> PathBuf {
    write_rc(
        dir,
        &format!(
            "set idfile \"{}/ids\"\npoll 127.0.0.1 proto pop3 port {} user bob password bobpw ssl \
             sslcommonname localhost {tls}\n  {user}\n",
            dir.display(),
            s.port("POP3S_PORT"),
        ),
    )
}

/// An `mda` that writes each message into `out/` (one file per message).
fn capture_mda(out: &Path) -> String {
    std::fs::create_dir_all(out).unwrap();
    format!("mda \"cat > {}/$$\"", out.display())
}

fn captured(out: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect()
}

fn seed_one(s: &common::Stack, dir: &Path, tag: &str, body: &[u8]) {
    clear_bob(s);
    put_bob(s, dir, tag, body);
}

#[test]
fn sslcertpath_trusts_the_certificates_of_a_hashed_directory() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("certpath");
    // A directory as c_rehash leaves it: the certificate, its HASH.0 link, and a file that
    // is no certificate.
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(s.ca(), certs.join("stack-ca.pem")).unwrap();
    std::os::unix::fs::symlink("stack-ca.pem", certs.join("0a1b2c3d.0")).unwrap();
    std::fs::write(certs.join("README"), "not a certificate\n").unwrap();
    let out = dir.join("out");
    seed_one(&s, &dir, "m", b"From: a@x\nSubject: certpath\n\nbody\n");
    let rc = pop3s_poll(
        &s,
        &dir,
        &format!("sslcertpath \"{}\"", certs.display()),
        &capture_mda(&out),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(captured(&out).len(), 1);

    // The same from the command line, over a poll that names no trust at all.
    seed_one(&s, &dir, "m2", b"From: a@x\nSubject: certpath 2\n\nbody\n");
    let out2 = dir.join("out2");
    let rc = pop3s_poll(&s, &dir, "", &capture_mda(&out2));
    let o = rfetch(
        &dir,
        &[
            "-f",
            rc.to_str().unwrap(),
            "--sslcertpath",
            certs.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(captured(&out2).len(), 1);

    // A directory without the stack's CA: the certificate is refused (never the system
    // roots, never accepted).
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("README"), "nothing\n").unwrap();
    seed_one(&s, &dir, "m3", b"From: a@x\nSubject: certpath 3\n\nbody\n");
    let rc = pop3s_poll(
        &s,
        &dir,
        &format!("sslcertpath \"{}\"", other.display()),
        &capture_mda(&dir.join("out3")),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains(&other.display().to_string()) && stderr(&o).contains("no usable"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server_count(&s), 1, "nothing fetched");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stack server certificate's fingerprint with `openssl x509 -fingerprint -DIGEST`
/// ("AB:CD:...").
fn openssl_fingerprint(s: &common::Stack, digest: &str) -> String {
    let cert = PathBuf::from(s.var("STACK_DIR")).join("tls/server.crt");
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", digest, "-in"])
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    text.trim().rsplit('=').next().unwrap().to_owned()
}

#[test]
fn md5_and_sha1_fingerprints_are_checked_and_the_sha256_is_recommended() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("legacyfp");
    let sha256 = s.var("STACK_SERVER_SHA256").to_owned();
    for digest in ["-md5", "-sha1"] {
        let fp = openssl_fingerprint(&s, digest);
        let out = dir.join(format!("out{digest}"));
        seed_one(&s, &dir, "m", b"From: a@x\nSubject: legacy fp\n\nbody\n");
        let rc = pop3s_poll(
            &s,
            &dir,
            &format!("sslfingerprint \"{fp}\""),
            &capture_mda(&out),
        );
        let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(code(&o), 0, "{digest}: {err}");
        assert_eq!(captured(&out).len(), 1, "{digest}");
        let algorithm = if digest == "-md5" { "MD5" } else { "SHA-1" };
        assert!(
            err.contains(&format!(
                "sslfingerprint is {algorithm}, a digest that can be forged"
            )),
            "warned when read: {err}"
        );
        assert!(
            err.contains(&format!("pin its SHA-256 instead: \"{sha256}\"")),
            "the SHA-256 to use, once the server is reached: {err}"
        );
        // A wrong fingerprint of the same form: refused, nothing fetched.
        let mut wrong = fp.clone();
        wrong.replace_range(0..2, if fp.starts_with("00") { "11" } else { "00" });
        seed_one(&s, &dir, "m", b"From: a@x\nSubject: legacy fp 2\n\nbody\n");
        let rc = pop3s_poll(
            &s,
            &dir,
            &format!("sslfingerprint \"{wrong}\""),
            &capture_mda(&dir.join("wrong")),
        );
        let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
        assert_ne!(code(&o), 0, "{digest}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("fingerprint mismatch"),
            "{}",
            stderr(&o)
        );
        assert_eq!(server_count(&s), 1, "{digest}: nothing fetched");
    }
    // From the command line too, over an rc that trusts nothing of the sort.
    let fp = openssl_fingerprint(&s, "-sha1");
    seed_one(
        &s,
        &dir,
        "m",
        b"From: a@x\nSubject: legacy fp cli\n\nbody\n",
    );
    let out = dir.join("cli");
    let rc = pop3s_poll(&s, &dir, "", &capture_mda(&out));
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap(), "--sslfingerprint", &fp]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(captured(&out).len(), 1);
    assert!(stderr(&o).contains(&sha256), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A daemon polls the same server again and again: the weak-fingerprint advice comes once per
/// server and pin, not once per connection.
#[test]
fn a_daemon_gives_the_weak_fingerprint_advice_once() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("legacyfp-daemon");
    let fp = openssl_fingerprint(&s, "-sha1");
    let rc = pop3s_poll(
        &s,
        &dir,
        &format!("sslfingerprint \"{fp}\""),
        "mda \"cat > /dev/null\"",
    );
    let log = dir.join("rfetch.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
        // -N: stays in the foreground, supervised here.
        .args(["-N", "-v", "-d", "1", "-f", rc.to_str().unwrap()])
        .env("HOME", &dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rfetch");
    let polls = |text: &str| text.matches("No mail for bob").count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if polls(&text) >= 3 || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(polls(&text) >= 3, "three polls: {text}");
    assert_eq!(
        text.matches("the certificate matches the SHA-1 fingerprint")
            .count(),
        1,
        "one warning for {} connections: {text}",
        polls(&text)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn passwordfile_gives_the_password_and_must_be_private() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("pwfile");
    let pw = dir.join("bob.pw");
    std::fs::write(&pw, "bobpw\nnot the password\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = dir.join("out");
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{}/ids\"\npoll 127.0.0.1 proto imap port {} user bob ssl sslcertfile \
             \"{}\" sslcommonname localhost\n  passwordfile \"{}\" {}\n",
            dir.display(),
            s.port("IMAPS_PORT"),
            s.ca().display(),
            pw.display(),
            capture_mda(&out)
        ),
    );
    seed_one(&s, &dir, "m", b"From: a@x\nSubject: pwfile\n\nbody\n");
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(captured(&out).len(), 1);

    // Readable by the group: refused before connecting, with the fix.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    seed_one(&s, &dir, "m2", b"From: a@x\nSubject: pwfile 2\n\nbody\n");
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains(&format!("chmod 600 {}", pw.display())),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("bobpw"));
    assert_eq!(server_count(&s), 1, "nothing fetched");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The header block of a delivered message (up to its empty line).
fn header_of(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg).replace("\r\n", "\n");
    text.split("\n\n").next().unwrap().to_owned()
}

#[test]
fn dropstatus_and_dropdelivered_leave_those_fields_out_of_the_header_only() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("drop");
    let msg = b"Delivered-To: bob@old.example\nStatus: RO\nX-Mozilla-Status: 0001\nFrom: a@x\n\
Subject: drop\nX-Mozilla-Status2: 00000000\nDelivered-To: second@old.example\n\tcontinued\n\n\
Status: this line is body\nDelivered-To: so is this\n";
    let cases = [
        ("dropstatus dropdelivered", false, false),
        ("dropstatus", false, true),
        ("dropdelivered", true, false),
        ("", true, true),
    ];
    for (i, (opts, status_kept, delivered_kept)) in cases.into_iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        seed_one(&s, &dir, "m", msg);
        let rc = pop3s_poll(
            &s,
            &dir,
            &format!("sslcertfile \"{}\"", s.ca().display()),
            &format!("{} {opts}", capture_mda(&out)),
        );
        let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{opts}: {}", stderr(&o));
        let got = captured(&out);
        assert_eq!(got.len(), 1, "{opts}");
        let header = header_of(&got[0]);
        let text = String::from_utf8_lossy(&got[0]).into_owned();
        assert_eq!(
            header.contains("\nStatus: RO"),
            status_kept,
            "{opts}: {header}"
        );
        assert_eq!(
            header.contains("X-Mozilla-Status: 0001"),
            status_kept,
            "{opts}: {header}"
        );
        assert_eq!(
            header.contains("Delivered-To: bob@old.example"),
            delivered_kept,
            "{opts}: {header}"
        );
        assert_eq!(
            header.contains("\tcontinued"),
            delivered_kept,
            "{opts}: {header}"
        );
        // Neighbours stay, and the body is never touched.
        assert!(header.contains("X-Mozilla-Status2: 00000000") && header.contains("Subject: drop"));
        assert!(header.starts_with("Received: from 127.0.0.1"), "{header}");
        assert!(
            text.ends_with("\n\nStatus: this line is body\nDelivered-To: so is this\n"),
            "{opts}: {text:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stripcr_and_forcecr_decide_the_line_ends_an_mda_gets() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("crlf");
    for (i, (opts, crlf)) in [
        ("", false),
        ("stripcr", false),
        ("forcecr", false),
        ("no stripcr", true),
        ("no stripcr forcecr", true),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.join(format!("out{i}"));
        seed_one(
            &s,
            &dir,
            "m",
            b"From: a@x\nSubject: crlf\n\nline 1\nline 2\n",
        );
        let rc = pop3s_poll(
            &s,
            &dir,
            &format!("sslcertfile \"{}\"", s.ca().display()),
            &format!("{} {opts}", capture_mda(&out)),
        );
        let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{opts}: {}", stderr(&o));
        let got = captured(&out);
        assert_eq!(got.len(), 1);
        let m = &got[0];
        let lf = m.iter().filter(|&&b| b == b'\n').count();
        let crlf_count = m.windows(2).filter(|w| w == b"\r\n").count();
        if crlf {
            assert_eq!(crlf_count, lf, "{opts}: every line ends in CRLF: {m:?}");
        } else {
            assert_eq!(crlf_count, 0, "{opts}: LF only: {m:?}");
        }
        assert!(String::from_utf8_lossy(m).contains("line 2"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_smtphost_list_falls_back_past_dead_and_refusing_listeners() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("hunt");
    // A port nobody listens on, and a listener that refuses every session with 421.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in busy.incoming() {
            let Ok(mut c) = c else { return };
            use std::io::Write;
            let _ = c.write_all(b"421 4.3.2 too busy, try another\r\n");
        }
    });
    let tag = format!("hunt{}", std::process::id());
    seed_one(
        &s,
        &dir,
        "m",
        format!("From: a@x\nSubject: hunt\nMessage-ID: <{tag}@t>\n\nbody\n").as_bytes(),
    );
    let rc = pop3s_poll(
        &s,
        &dir,
        &format!("sslcertfile \"{}\"", s.ca().display()),
        &format!(
            "is alice here lmtp smtphost 127.0.0.1/{dead} 127.0.0.1/{busy_port} 127.0.0.1/{}",
            s.port("LMTP_PORT")
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(server_count(&s), 0, "delivered and deleted");
    let alice = PathBuf::from(s.var("STACK_MAILDIR1"));
    let found = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(alice.join(d)).into_iter().flatten())
        .any(|e| {
            std::fs::read(e.unwrap().path())
                .map(|b| String::from_utf8_lossy(&b).contains(&tag))
                .unwrap_or(false)
        });
    assert!(
        found,
        "message {tag} in alice's Maildir through the third host"
    );
    let err = stderr(&o);
    assert!(err.contains(&format!("127.0.0.1:{dead}")), "{err}");
    assert!(
        err.contains(&format!(
            "delivered to lmtp://127.0.0.1:{}",
            s.port("LMTP_PORT")
        )),
        "the host that took the message is named: {err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{busy_port}")), "{err}");

    // Every host down: the message stays on the server.
    seed_one(&s, &dir, "m2", b"From: a@x\nSubject: hunt 2\n\nbody\n");
    let rc = pop3s_poll(
        &s,
        &dir,
        &format!("sslcertfile \"{}\"", s.ca().display()),
        &format!("is alice here lmtp smtphost 127.0.0.1/{dead} 127.0.0.1/{busy_port}"),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(server_count(&s), 1, "kept on the server");

    // -S takes a list too.
    let rc = pop3s_poll(
        &s,
        &dir,
        &format!("sslcertfile \"{}\"", s.ca().display()),
        "is alice here",
    );
    let list = format!("127.0.0.1/{dead},127.0.0.1/{}", s.port("LMTP_PORT"));
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap(), "--lmtp", "-S", &list]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(server_count(&s), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scripted SMTP listener: answers MAIL FROM with `mail` and RCPT TO with `rcpt` (full reply
/// lines), accepts the data otherwise, and records every command it was sent.
fn scripted_smtp(
    mail: &'static str,
    rcpt: &'static str,
) -> (u16, std::sync::Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let _ = conn.write_all(b"220 scripted ESMTP\r\n");
            let mut in_data = false;
            // Whether MAIL and RCPT of the transaction were accepted (DATA gets 503 otherwise,
            // as a real server answers a pipelined DATA).
            let mut envelope_ok = true;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        log.lock().unwrap().push("<end of data>".to_owned());
                        let _ = conn.write_all(b"250 2.0.0 queued\r\n");
                    }
                    continue;
                }
                log.lock().unwrap().push(line.trim_end().to_owned());
                let upper = line.to_ascii_uppercase();
                let reply: &str = if upper.starts_with("EHLO") {
                    "250-scripted\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
                } else if upper.starts_with("MAIL") {
                    envelope_ok = mail.starts_with('2');
                    mail
                } else if upper.starts_with("RCPT") {
                    envelope_ok &= rcpt.starts_with('2');
                    rcpt
                } else if upper.starts_with("DATA") {
                    if envelope_ok {
                        in_data = true;
                        "354 go on\r\n"
                    } else {
                        "503 5.5.1 no valid recipients\r\n"
                    }
                } else if upper.starts_with("QUIT") {
                    let _ = conn.write_all(b"221 bye\r\n");
                    break;
                } else {
                    "250 ok\r\n"
                };
                let _ = conn.write_all(reply.as_bytes());
            }
        }
    });
    (port, seen)
}

#[test]
fn antispam_codes_discard_the_message_and_others_keep_it() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("antispam");
    let trust = format!("sslcertfile \"{}\"", s.ca().display());
    let ok = "250 ok\r\n";
    // (MAIL reply, RCPT reply, antispam option, discarded?)
    let cases: [(&'static str, &'static str, &str, bool); 6] = [
        ("550 5.7.1 spam\r\n", ok, "antispam 571 550", true),
        (ok, "571 5.7.1 spam recipient\r\n", "antispam 571", true),
        // Not a listed code: a permanent refusal, kept on the server (softbounce).
        ("550 5.7.1 spam\r\n", ok, "antispam 571", false),
        ("550 5.7.1 spam\r\n", ok, "", false),
        ("550 5.7.1 spam\r\n", ok, "antispam -1", false),
        // A temporary refusal stays one even when listed codes are 5xx.
        ("451 4.3.0 later\r\n", ok, "antispam 550", false),
    ];
    for (mail, rcpt, opt, discarded) in cases {
        let (port, seen) = scripted_smtp(mail, rcpt);
        seed_one(
            &s,
            &dir,
            "m",
            b"From: a@x\nSubject: spam?\n\nbody \xc3\xa9\n",
        );
        let rc = pop3s_poll(
            &s,
            &dir,
            &trust,
            &format!("smtphost 127.0.0.1/{port} {opt}"),
        );
        let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
        let err = stderr(&o);
        if discarded {
            assert_eq!(code(&o), 0, "{mail}{rcpt}{opt}: {err}");
            assert_eq!(server_count(&s), 0, "{opt}: deleted on the server");
            assert!(err.contains("discarded"), "{opt}: {err}");
            assert!(
                err.contains("(discarded as spam: "),
                "the message line says so: {err}"
            );
            let cmds = seen.lock().unwrap().clone();
            assert!(
                !cmds.iter().any(|c| c == "<end of data>"),
                "never delivered: {cmds:?}"
            );
        } else {
            assert_eq!(
                server_count(&s),
                1,
                "{mail}{opt}: kept on the server: {err}"
            );
            assert!(!err.contains("discarded"), "{opt}: {err}");
        }
        // pass8bits: BODY=8BITMIME is declared to a listener that offers it.
        let cmds = seen.lock().unwrap().clone();
        let from = cmds.iter().find(|c| c.starts_with("MAIL FROM")).unwrap();
        assert!(from.contains("BODY=8BITMIME"), "{from}");
    }
    // -Z on the command line.
    let (port, _) = scripted_smtp("554 5.7.1 no\r\n", ok);
    seed_one(&s, &dir, "m", b"From: a@x\nSubject: spam cli\n\nbody\n");
    let rc = pop3s_poll(&s, &dir, &trust, &format!("smtphost 127.0.0.1/{port}"));
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap(), "-Z", "571,554"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(server_count(&s), 0);
    // A code that is no reply code is an error naming it.
    let rc = pop3s_poll(&s, &dir, &trust, "antispam 5500");
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("antispam 5500"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
