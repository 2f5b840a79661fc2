//! `rsend -bs` (SMTP on stdin/stdout) against the real stack: a pipelined session hands over
//! several messages; each is relayed at once and its DATA reply is the relay's outcome (250, or
//! 451 when the account's server refuses the connection) while the session goes on; recipients
//! that would split into two, AUTH and STARTTLS are refused; stdout carries only SMTP replies
//! even with `logfile -`.

mod common;

use std::net::TcpListener;

use common::rsend::*;

fn final_codes(stdout: &[u8]) -> Vec<String> {
    show(stdout)
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l[..3].to_string())
        .collect()
}

#[test]
fn a_pipelined_session_relays_each_message_and_reports_each_outcome() {
    let stack = common::Stack::get();
    let dir = TempDir::new("bs");
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "{}account refused\nhost 127.0.0.1\nport {refused}\ntls off\nauth off\nfrom bad@nowhere.test\n\
         logfile -\n",
        msmtprc_text(&stack, "alicepw", stack.port("SMTPS_PORT"))
    );
    let rc = write_rc(dir.path(), &text, 0o600);
    let first = unique("bs-first");
    let second = unique("bs-second");
    let session = format!(
        "EHLO client.test\r\n\
         MAIL FROM:<alice@localhost>\r\n\
         RCPT TO:<alice@localhost>\r\n\
         DATA\r\n\
         Subject: {first}\r\n\r\n..a stuffed dot line\r\nbody\r\n.\r\n\
         MAIL FROM:<bad@nowhere.test>\r\n\
         RCPT TO:<alice@localhost>\r\n\
         DATA\r\n\
         Subject: refused\r\n\r\nbody\r\n.\r\n\
         MAIL FROM:<alice@localhost> BODY=8BITMIME\r\n\
         RCPT TO:<x@localhost,alice@localhost>\r\n\
         RCPT TO:<alice@localhost>\r\n\
         DATA\r\n\
         Subject: {second}\r\n\r\nsecond body\r\n.\r\n\
         AUTH PLAIN AGFsaWNlAGFsaWNlcHc=\r\n\
         STARTTLS\r\n\
         QUIT\r\n"
    );
    let out = rsend(&["-C", rc.to_str().unwrap(), "-bs"], session.as_bytes());
    assert_exit(&out, 0);
    assert_eq!(
        final_codes(&out.stdout),
        [
            "220", "250", "250", "250", "354", "250", "250", "250", "354", "451", "250", "553",
            "250", "354", "250", "502", "502", "221"
        ],
        "{}",
        describe(&out)
    );
    let stdout = show(&out.stdout);
    assert!(
        stdout
            .split("\r\n")
            .all(|l| l.is_empty()
                || (l.len() >= 4 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit))),
        "stdout holds something besides SMTP replies: {stdout:?}"
    );
    assert!(stdout.contains(&format!("127.0.0.1:{refused}")), "{stdout}");
    // The log line of the refused relay went to stderr, not into the protocol.
    assert!(
        show(&out.stderr).contains("from=bad@nowhere.test"),
        "{}",
        describe(&out)
    );

    let alice = maildir(&stack, "alice");
    let (header, body) = split(&wait_for(&alice, &first));
    assert!(header.contains("From: alice@localhost"), "{header}");
    assert_eq!(body, b".a stuffed dot line\nbody\n");
    let (_, body) = split(&wait_for(&alice, &second));
    assert_eq!(body, b"second body\n");
}

#[test]
fn bs_refuses_recipients_on_the_command_line_and_a_cut_off_message() {
    let dir = TempDir::new("bs-usage");
    // Any connection to this server would be a relay of a cut-off message.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let rc = write_rc(
        dir.path(),
        &format!(
            "account default\nhost 127.0.0.1\nport {}\nfrom a@localhost\ntls off\ntimeout 2\n",
            server.local_addr().unwrap().port()
        ),
        0o600,
    );
    let rc = rc.to_str().unwrap();
    let out = rsend(&["-C", rc, "-bs", "a@x.test"], b"QUIT\r\n");
    assert_exit(&out, 64);
    // Input ends inside DATA: nothing is relayed half, and the exit says the input was cut.
    let out = rsend(
        &["-C", rc, "-bs"],
        b"HELO c\r\nMAIL FROM:<a@localhost>\r\nRCPT TO:<b@localhost>\r\nDATA\r\nSubject: x\r\n\r\nno end",
    );
    assert_exit(&out, 64);
    assert!(
        show(&out.stderr).contains("inside a message"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        server.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a cut-off message was relayed"
    );
    // A session that ends without QUIT is still a clean end.
    let out = rsend(&["-C", rc, "-bs"], b"HELO c\r\nNOOP\r\n");
    assert_exit(&out, 0);
    assert_eq!(final_codes(&out.stdout), ["220", "250", "250"]);
}
