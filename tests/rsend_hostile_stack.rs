//! Header injection attempts submitted through the real Postfix and read back from Dovecot's
//! Maildirs: a Bcc hidden behind a lone CR reaches its blind recipient with -t and appears in
//! nobody's copy; a `-F` with a line break is refused and nothing is delivered. Run with
//! POSTIE_STACK_DIR=<stack dir>.

mod common;

use std::time::Duration;

use common::rsend::*;

/// The header lines of a delivered message that start a field named `name`.
fn fields_named<'a>(header: &'a str, name: &str) -> Vec<&'a str> {
    header_lines(header)
        .into_iter()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

/// Postfix's cleanup drops Bcc lines itself, so the Bcc line rsend used to put on the wire for
/// `x\rBcc: y` is shown by the recording server in rsend_headers.rs; here the -t half fails
/// without the shared line rule: the blind recipient never got the message.
#[test]
fn lone_cr_bcc_reaches_its_recipient_and_no_copy_shows_it() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    let marker = unique("lonecr");
    let input =
        format!("Subject: {marker}\rBcc: alice@localhost\r\nTo: bob@localhost\n\nbody\rline two\n");
    send(&rc, Via::Smtps, &["-t"], &[], input.as_bytes());
    let to_bob = wait_for(&maildir(&stack, "bob"), &marker);
    let to_alice = wait_for(&maildir(&stack, "alice"), &marker);
    for (who, message) in [("bob", &to_bob), ("alice", &to_alice)] {
        let (header, body) = split(message);
        assert!(
            fields_named(&header, "Bcc").is_empty(),
            "{who}'s copy shows the Bcc:\n{header}"
        );
        assert!(
            has_header_line(&header, &format!("Subject: {marker}")),
            "{who}: {header}"
        );
        assert!(
            !contains(message, b"\r"),
            "{who}'s copy holds a CR: {}",
            show(message)
        );
        assert_eq!(body, b"body\nline two\n", "{who}");
    }
}

#[test]
fn full_name_with_a_line_break_is_refused_and_nothing_arrives() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    let marker = unique("fullname");
    let rc = rc.to_str().expect("utf-8 path");
    let out = rsend(
        &[
            "-C",
            rc,
            "-F",
            "Eve\r\nBcc: alice@localhost",
            "bob@localhost",
        ],
        format!("Subject: {marker}\n\nbody\n").as_bytes(),
    );
    assert_exit(&out, 64);
    // Give a wrongly accepted message the time to arrive before looking.
    std::thread::sleep(Duration::from_secs(2));
    for user in ["bob", "alice"] {
        assert!(
            find_messages(&maildir(&stack, user), &marker).is_empty(),
            "delivered to {user}"
        );
    }
}
