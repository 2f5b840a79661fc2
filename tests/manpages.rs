//! man/rsend.1, man/rfetch.1 and the section 5 pages (postie.toml.5, postie-msmtprc.5,
//! postie-fetchmailrc.5) are generated from the same source as --help; this test fails
//! when they drift. Regenerate with: POSTIE_BLESS=1 cargo test --test manpages

use std::path::Path;

fn check(name: &str, generated: Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    if std::env::var_os("POSTIE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write man page");
        return;
    }
    let on_disk = std::fs::read(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date; regenerate with: POSTIE_BLESS=1 cargo test --test manpages",
        path.display()
    );
}

#[test]
fn rsend_man_page_is_current() {
    let page = postie::cli::manpage::rsend_page();
    let text = String::from_utf8_lossy(&page);
    assert!(text.contains("EXIT STATUS") && text.contains("read\\-envelope\\-from"));
    check("rsend.1", page);
}

#[test]
fn rfetch_man_page_is_current() {
    let page = postie::cli::manpage::rfetch_page();
    let text = String::from_utf8_lossy(&page);
    assert!(text.contains("DELIVERY CONTRACT") && text.contains("fetchmailrc"));
    check("rfetch.1", page);
}

#[test]
fn section_5_pages_are_current() {
    for (name, page, must_have) in [
        (
            "postie.toml.5",
            postie::cli::manpage::postie_toml_page(),
            "accounts.NAME.fetch",
        ),
        (
            "postie-msmtprc.5",
            postie::cli::manpage::postie_msmtprc_page(),
            "DIRECTIVES ACCEPTED BUT IGNORED",
        ),
        (
            "postie-fetchmailrc.5",
            postie::cli::manpage::postie_fetchmailrc_page(),
            "KEYWORDS ACCEPTED BUT IGNORED",
        ),
    ] {
        let text = String::from_utf8_lossy(&page);
        assert!(text.contains(must_have), "{name}");
        assert!(
            text.contains(&format!(".TH {} 5", name.trim_end_matches(".5"))),
            "{name}"
        );
        check(name, page);
    }
}
