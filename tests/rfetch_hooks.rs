//! fetchmail's connection commands on the real stack: `plugin` (the server reached through a
//! command's stdin/stdout: socat with rfetch's TLS through it, Dovecot's imap answering PREAUTH
//! with `auth ssh`), the cleartext-password rule over a plugin (never "loopback"), `%h`/`%p`
//! reaching the command as values and never as shell text, `plugout` (the SMTP listener through
//! a command), and `preconnect`/`postconnect` (order, and a failing preconnect aborts the poll
//! with exit 5 before anything connects).

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn write_rc(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("fetchmailrc");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn seed(s: &common::Stack, dir: &Path, n: usize, tag: &str) {
    clear_bob(s);
    for i in 0..n {
        put_bob(
            s,
            dir,
            &format!("m{i}"),
            format!("From: a@x\nSubject: {tag} {i}\nMessage-ID: <{tag}{i}@t>\n\nbody {i}\n")
                .as_bytes(),
        );
    }
}

fn delivered(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .map(|r| {
            r.map(|e| {
                String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()).into_owned()
            })
            .collect()
        })
        .unwrap_or_default()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `plugin "socat - TCP:%h:%p"` with `ssl`: the TLS handshake runs through the command and the
/// certificate is verified, then the login and the poll work as over a socket. The port in the
/// poll is the IMAPS port, reached only through the command's `%p`; a second poll whose own
/// port is closed (1) but whose command names the port itself proves the command is the
/// connection.
#[test]
fn plugin_carries_the_session_and_rfetch_tls_runs_through_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    for (proto, port_var) in [("imap", "IMAPS_PORT"), ("pop3", "POP3S_PORT")] {
        let dir = tempdir("plugin-socat");
        seed(&s, &dir, 2, "plug");
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let rc = write_rc(
            &dir,
            &format!(
                "set idfile \"{d}/ids\"\n\
                 poll 127.0.0.1 proto {proto} port {port} plugin \"socat - TCP:%h:%p\"\n\
                 user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost\n\
                 mda \"cat > {o}/$$\"\n",
                d = dir.display(),
                port = s.port(port_var),
                ca = s.ca().display(),
                o = out.display()
            ),
        );
        let o = rfetch(&dir, &["-v", "-f", rc.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{proto}: {}", stderr(&o));
        let got = delivered(&out);
        assert_eq!(got.len(), 2, "{proto}: {got:?}");
        assert!(got.iter().any(|m| m.contains("<plug1@t>")));
        assert_eq!(server_count(&s), 0, "{proto}: delivered mail is deleted");
    }
    // The poll's own port is closed; only the command knows where the server is.
    let dir = tempdir("plugin-fixed");
    seed(&s, &dir, 1, "fixed");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids\"\n\
             poll 127.0.0.1 proto imap port 1 plugin \"socat - TCP:%h:{imaps}\"\n\
             user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost\n\
             mda \"cat > {o}/$$\"\n",
            d = dir.display(),
            imaps = s.port("IMAPS_PORT"),
            ca = s.ca().display(),
            o = out.display()
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(delivered(&out).len(), 1);
    // The same through --plugin on the command line, on a poll without plugin.
    seed(&s, &dir, 1, "cli");
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids2\"\n\
             poll 127.0.0.1 proto imap port 1\n\
             user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost\n\
             mda \"cat > {o}/$$\"\n",
            d = dir.display(),
            ca = s.ca().display(),
            o = out.display()
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(
        code(&o),
        2,
        "without the plugin port 1 is closed: {}",
        stderr(&o)
    );
    let plugin = format!("socat - TCP:%h:{}", s.port("IMAPS_PORT"));
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap(), "--plugin", &plugin]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(delivered(&out).len(), 2);
}

/// A command that does TLS itself (openssl s_client) hands rfetch a cleartext stream: rfetch
/// cannot know it is encrypted, so its own rules stand (STARTTLS is required and the IMAPS
/// server does not offer it), and nothing is fetched. With TLS switched off (TOML `tls =
/// false`), the password goes to a loopback server directly, but never through a plugin: the
/// far end of a plugin's stream is a process, not a loopback address.
#[test]
fn a_plugin_stream_is_never_loopback_for_the_password_rule() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("plugin-openssl");
    seed(&s, &dir, 1, "ossl");
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids\"\n\
             poll 127.0.0.1 proto imap port {port} plugin \"openssl s_client -quiet -verify_quiet -connect %h:%p\"\n\
             user bob password bobpw mda \"cat > /dev/null\"\n",
            d = dir.display(),
            port = s.port("IMAPS_PORT"),
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("STARTTLS"), "{}", stderr(&o));
    assert_eq!(server_count(&s), 1, "nothing was fetched");

    // Plain POP3 without TLS and with PLAIN (the automatic choice would take SCRAM, which
    // reveals no password): loopback lets the password through, a plugin does not.
    let text = format!(
        "[accounts.bob]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"bobpw\"\ntls = false\n\
         [accounts.bob.fetch]\nprotocol = \"pop3\"\nauth = \"plain\"\nport = {}\nkeep = true\nmaildir = \"{}/md\"\n",
        s.port("POP3_PORT"),
        dir.display()
    );
    let cfg = write_config(&dir, &text);
    let o = rfetch(&dir, &["-c", "-v", "-C", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "direct to loopback: {}", stderr(&o));
    assert!(
        stderr(&o).contains("is a loopback address"),
        "{}",
        stderr(&o)
    );
    let o = rfetch(
        &dir,
        &[
            "-c",
            "-C",
            cfg.to_str().unwrap(),
            "--plugin",
            "socat - TCP:%h:%p",
        ],
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refusing to send the password"),
        "{}",
        stderr(&o)
    );
    // With the danger switch it is the user's call, and says so.
    let o = rfetch(
        &dir,
        &[
            "-c",
            "-v",
            "-C",
            cfg.to_str().unwrap(),
            "--plugin",
            "socat - TCP:%h:%p",
            "--danger-plaintext-auth",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("allowed explicitly"), "{}", stderr(&o));
}

/// fetchmail's tutorial use: `plugin "ssh host imapd" auth ssh`, here Dovecot's imap binary run
/// directly, which answers PREAUTH (between pipes, as sshd gives it: on a socket, as fetchmail
/// and rfetch give a plugin, it takes itself for an inetd service and refuses). No password is configured or sent, and the STARTTLS rule
/// (impossible after PREAUTH, and protecting only a password) is lifted for it.
#[test]
fn plugin_with_auth_ssh_polls_a_preauthenticated_imap() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("plugin-preauth");
    seed(&s, &dir, 2, "pre");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids\"\n\
             poll mailhost proto imap plugin \"cat | /usr/lib/dovecot/imap -c {conf} -u bob | cat\" auth ssh\n\
             user bob mda \"cat > {o}/$$\"\n",
            d = dir.display(),
            conf = s.var("STACK_DOVECONF"),
            o = out.display()
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(delivered(&out).len(), 2);
    assert_eq!(server_count(&s), 0);
    // Without `auth ssh` the same command is an unencrypted session: refused.
    seed(&s, &dir, 1, "pre2");
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids\"\n\
             poll mailhost proto imap plugin \"cat | /usr/lib/dovecot/imap -c {conf} -u bob | cat\"\n\
             user bob password x mda \"cat > {o}/$$\"\n",
            d = dir.display(),
            conf = s.var("STACK_DOVECONF"),
            o = out.display()
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("PREAUTH"), "{}", stderr(&o));
    assert_eq!(server_count(&s), 1);
}

/// `%h` is the poll's host, from the configuration, but a value all the same: a host name full
/// of shell syntax reaches the command as one argument, byte for byte, and runs nothing.
#[test]
fn plugin_host_and_port_reach_the_command_as_values() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("plugin-inject");
    let host = format!(
        "x;touch {d}/pwned1;$(touch {d}/pwned2)`touch {d}/pwned3`'\\\"",
        d = dir.display()
    );
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids\"\n\
             poll q via \"{h}\" proto imap port 4711 plugin \"printf '%s|%s' %h '%p' > {d}/args; socat - TCP:127.0.0.1:{imaps}\"\n\
             user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost\n\
             mda \"cat > /dev/null\"\n",
            d = dir.display(),
            h = host.replace('\\', "\\\\").replace('"', "\\\""),
            imaps = s.port("IMAPS_PORT"),
            ca = s.ca().display(),
        ),
    );
    let o = rfetch(&dir, &["-c", "-f", rc.to_str().unwrap()]);
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    assert_eq!(args, format!("{host}|4711"), "{}", stderr(&o));
    for i in 1..=3 {
        assert!(!dir.join(format!("pwned{i}")).exists(), "pwned{i}");
    }
    // A command that would hand %h to a second shell parser is refused, naming the line.
    let rc = write_rc(
        &dir,
        "poll q proto imap plugin \"sh -c 'ssh %h imapd'\"\nuser bob password x\n",
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fetchmailrc:1: plugin"),
        "{}",
        stderr(&o)
    );
}

/// `plugout "socat - TCP:%h:%p"`: mail is forwarded over SMTP through the command (the
/// smtphost's port is closed; the command names the sink's).
#[test]
fn plugout_carries_the_smtp_forwarding() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("plugout");
    seed(&s, &dir, 2, "out");
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids\"\n\
             poll 127.0.0.1 proto pop3 port {pop3s} plugout \"socat - TCP:%h:{sink}\"\n\
             user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost\n\
             smtphost 127.0.0.1/1\n",
            d = dir.display(),
            pop3s = s.port("POP3S_PORT"),
            sink = s.port("SINK_PORT"),
            ca = s.ca().display(),
        ),
    );
    let o = rfetch(&dir, &["-v", "-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("plugout"), "{}", stderr(&o));
    assert_eq!(server_count(&s), 0);
}

/// `preconnect` runs before the poll connects and `postconnect` after it; a failing preconnect
/// aborts that poll before any connection, with fetchmail's exit 5, and the other polls go on.
#[test]
fn preconnect_and_postconnect_frame_the_poll() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("prepost");
    seed(&s, &dir, 1, "pp");
    let log = dir.join("log");
    let plugin_log = dir.join("connected");
    let poll = |pre: &str| {
        format!(
            "poll 127.0.0.1 proto pop3 port {pop3s} plugin \"echo connect >> {log}; exec socat - TCP:%h:%p\"\n\
             user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost keep\n\
             mda \"cat > /dev/null\" preconnect \"{pre}\" postconnect \"echo post >> {log}\"\n",
            pop3s = s.port("POP3S_PORT"),
            ca = s.ca().display(),
            log = log.display(),
        )
    };
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{}/ids\"\n{}",
            dir.display(),
            poll(&format!("echo pre >> {}", log.display()))
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pre\nconnect\npost\n"
    );
    std::fs::remove_file(&log).unwrap();
    let _ = std::fs::remove_file(&plugin_log);
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{}/ids\"\n{}",
            dir.display(),
            poll("echo pre >> $HOME/log; exit 3")
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("preconnect command"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pre\n",
        "no connection, no postconnect"
    );
    // A failing postconnect after a good poll is that poll's error (exit 5).
    std::fs::remove_file(&log).unwrap();
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{}/ids\"\n{}",
            dir.display(),
            poll("true").replace("echo post >>", "false >>")
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("postconnect command"), "{}", stderr(&o));
}

/// An IMAP IDLE connection is a server connection too: `preconnect` runs before it is opened and
/// `postconnect` after it ended (here at SIGTERM).
#[test]
fn preconnect_and_postconnect_frame_an_idle_connection() {
    use rustix::process::{Pid, Signal, kill_process};
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("prepost-idle");
    seed(&s, &dir, 1, "idle");
    let log = dir.join("log");
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{d}/ids\"\n\
             poll 127.0.0.1 proto imap port {imaps}\n\
             user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost keep idle\n\
             mda \"cat > /dev/null\" preconnect \"echo pre >> {log}\" postconnect \"echo post >> {log}\"\n",
            d = dir.display(),
            imaps = s.port("IMAPS_PORT"),
            ca = s.ca().display(),
            log = log.display(),
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(["-v", "-f", rc.to_str().unwrap()])
        .env("HOME", &dir)
        .env_remove("FETCHMAILHOME")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(dir.join("err"))
        .unwrap_or_default()
        .contains("waiting for new mail")
    {
        assert!(std::time::Instant::now() < deadline, "no IDLE");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre\n");
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre\npost\n");
}
