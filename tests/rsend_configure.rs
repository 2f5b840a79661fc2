//! `rsend --configure ADDRESS` with a scripted DNS server on loopback (named in a resolv.conf
//! given by `POSTIE_RESOLV_CONF`): implicit TLS from `_submissions._tcp`, STARTTLS from
//! `_submission._tcp`, the built-in table when DNS has no records or does not answer, exit 68
//! when neither knows the domain, exit 65 for what is not a plain address (it would be written
//! into a configuration file).

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::rsend::{TempDir, describe, run_command, show};

/// Answers SRV queries from `records` (name → (port, target)); every other name is NXDOMAIN.
fn dns_server(records: &'static [(&'static str, u16, &'static str)]) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let server = socket.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let query = &buf[..n];
            let mut name = Vec::new();
            let mut at = 12;
            while at < n && query[at] != 0 {
                let len = query[at] as usize;
                name.push(String::from_utf8_lossy(&query[at + 1..at + 1 + len]).into_owned());
                at += 1 + len;
            }
            let name = name.join(".");
            let question_end = at + 5;
            let mut answer = query[..question_end].to_vec();
            answer[2] = 0x81;
            match records.iter().find(|(n, ..)| n.eq_ignore_ascii_case(&name)) {
                Some((_, port, target)) => {
                    answer[3] = 0x80;
                    answer[7] = 1;
                    answer.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
                    let mut data = vec![0, 10, 0, 5];
                    data.extend_from_slice(&port.to_be_bytes());
                    for label in target.split('.') {
                        data.push(label.len() as u8);
                        data.extend_from_slice(label.as_bytes());
                    }
                    data.push(0);
                    answer.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    answer.extend_from_slice(&data);
                }
                None => answer[3] = 0x83,
            }
            let _ = server.send_to(&answer, from);
        }
    });
    socket
}

fn configure(resolv: &Path, address: &str) -> Output {
    let mut command = Command::new(common::rsend::RSEND);
    command
        .arg(format!("--configure={address}"))
        .env("HOME", "/home/someone")
        .env("POSTIE_RESOLV_CONF", resolv);
    run_command(command, b"")
}

fn resolv_conf(dir: &Path, server: &UdpSocket) -> std::path::PathBuf {
    let path = dir.join("resolv.conf");
    std::fs::write(
        &path,
        format!("nameserver {}\n", server.local_addr().unwrap()),
    )
    .unwrap();
    path
}

static RECORDS: &[(&str, u16, &str)] = &[
    ("_submissions._tcp.example.org", 465, "mail.example.org"),
    ("_submission._tcp.example.org", 587, "mail.example.org"),
    ("_submission._tcp.starttls.test", 587, "smtp.provider.test"),
];

#[test]
fn srv_records_then_the_table_then_an_error() {
    let dns = dns_server(RECORDS);
    let dir = TempDir::new("configure");
    let resolv = resolv_conf(dir.path(), &dns);

    let out = configure(&resolv, "jane@example.org");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        show(&out.stdout),
        "# - copy this to your configuration file /home/someone/.msmtprc\n\
         # - encrypt your password:\n#   gpg -e -o ~/.msmtp-password.gpg\n\
         account jane@example.org\nhost mail.example.org\nport 465\ntls on\ntls_starttls off\n\
         auth on\nuser jane\npasswordeval gpg --no-tty -q -d ~/.msmtp-password.gpg\n\
         from jane@example.org\n"
    );

    let out = configure(&resolv, "joe@starttls.test");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = show(&out.stdout);
    assert!(
        text.contains("host smtp.provider.test\nport 587\ntls on\ntls_starttls on\n"),
        "{text}"
    );
    assert!(
        text.contains("warning: the host does not match the mail domain"),
        "{text}"
    );

    let out = configure(&resolv, "someone@gmail.com");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = show(&out.stdout);
    assert!(text.contains("built-in table"), "{text}");
    assert!(
        text.contains("host smtp.gmail.com\nport 465\ntls on\ntls_starttls off\n"),
        "{text}"
    );

    let out = configure(&resolv, "x@nothing.test");
    assert_eq!(out.status.code(), Some(68), "{}", describe(&out));
    let err = show(&out.stderr);
    assert!(
        err.contains("_submissions._tcp.nothing.test")
            && err.contains("_submission._tcp.nothing.test"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_table_answers_when_dns_does_not() {
    // A server that never answers: the lookup times out, then the table applies.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let dir = TempDir::new("configure-silent");
    let resolv = resolv_conf(dir.path(), &silent);
    let out = configure(&resolv, "a@hotmail.com");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = show(&out.stdout);
    assert!(
        text.contains("host smtp-mail.outlook.com\nport 587\ntls on\ntls_starttls on\n"),
        "{text}"
    );
}

#[test]
fn what_is_not_a_plain_address_is_refused() {
    let dns = dns_server(RECORDS);
    let dir = TempDir::new("configure-bad");
    let resolv = resolv_conf(dir.path(), &dns);
    for bad in [
        "no-at-sign",
        "@example.org",
        "jane@",
        "jane\nhost evil.test@example.org",
        "\"jane doe\"@example.org",
        "jane@[127.0.0.1]",
    ] {
        let out = configure(&resolv, bad);
        assert_eq!(out.status.code(), Some(65), "{bad:?}: {}", describe(&out));
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
}
