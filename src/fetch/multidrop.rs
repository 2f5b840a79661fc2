//! Multidrop sorting (fetchmail's "multidrop" mode): for a message fetched
//! from a mailbox shared by several people, which local users it is for — from its envelope
//! header (`envelope [N] HEADER`, default `Received`'s `for <address>` clause), else from its
//! Resent-To/Cc/Bcc or To/Cc/Bcc/Apparently-To — matched against the poll's local names, with
//! the postmaster as the fallback. Pure: header bytes in, local names out.

use crate::message::address::{domain_of, parse_address_list};
use crate::message::header::Field;

/// How a multidrop poll sorts its messages: defined with the account model, where the
/// fetchmailrc lowering builds it.
pub use crate::account::MultidropRules as Rules;

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sorted {
    /// The local users, each once, in the order their addresses appeared.
    pub locals: Vec<String>,
    /// No address matched a local name: `locals` is the postmaster alone.
    pub by_default: bool,
}

impl Rules {
    /// Sorts the message with the header `fields` (see [`crate::message::header::fields_of`]).
    pub fn sort(&self, fields: &[Field]) -> Sorted {
        let mut locals: Vec<String> = Vec::new();
        for address in self.addresses(fields) {
            if let Some(local) = self.local_for(&address)
                && !locals.iter().any(|l| l.eq_ignore_ascii_case(&local))
            {
                locals.push(local);
            }
        }
        if locals.is_empty() {
            return Sorted {
                locals: vec![self.postmaster.clone()],
                by_default: true,
            };
        }
        Sorted {
            locals,
            by_default: false,
        }
    }

    /// The addresses the message is for: the envelope header's, else the header recipients.
    fn addresses(&self, fields: &[Field]) -> Vec<String> {
        if let Some((skip, name)) = &self.envelope {
            let found = fields
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case(name))
                .nth(usize::try_from(*skip).unwrap_or(usize::MAX));
            if let Some(field) = found {
                let value = field.value();
                let from_envelope = if name.eq_ignore_ascii_case("Received") {
                    received_for(&value).into_iter().collect()
                } else {
                    parse_address_list(&value)
                };
                if !from_envelope.is_empty() {
                    return match &self.qvirtual {
                        Some(prefix) if !prefix.is_empty() => from_envelope
                            .into_iter()
                            .map(|a| {
                                a.strip_prefix(prefix.as_str())
                                    .map_or(a.clone(), str::to_owned)
                            })
                            .collect(),
                        _ => from_envelope,
                    };
                }
            }
        }
        let named = |names: &[&str]| -> Vec<String> {
            fields
                .iter()
                .filter(|f| names.iter().any(|n| f.name.eq_ignore_ascii_case(n)))
                .flat_map(|f| parse_address_list(&f.value()))
                .collect()
        };
        let resent = named(&["Resent-To", "Resent-Cc", "Resent-Bcc"]);
        if !resent.is_empty() {
            return resent;
        }
        named(&["To", "Cc", "Bcc", "Apparently-To"])
    }

    /// The local user an address maps to, if it is in one of our domains and names one.
    fn local_for(&self, address: &str) -> Option<String> {
        let (local_part, domain) = match domain_of(address) {
            Some(d) => (&address[..address.len() - d.len() - 1], Some(d)),
            None => (address, None),
        };
        if let Some(d) = domain {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let ours = self
                .domains
                .iter()
                .any(|o| d == *o || d.ends_with(&format!(".{o}")));
            if !ours {
                return None;
            }
        }
        if local_part.is_empty() {
            return None;
        }
        if let Some((_, local)) = self
            .names
            .iter()
            .find(|(server, _)| server.eq_ignore_ascii_case(local_part))
        {
            return Some(local.clone());
        }
        // `*` passes names through, but never one that could act on the shell or the SMTP
        // command line of the local delivery, nor one an MDA would read as an option (%T is
        // an argument of its own: `procmail -d -oq`).
        let plain = local_part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && local_part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        (self.wildcard && plain).then(|| local_part.to_ascii_lowercase())
    }
}

/// The address of a `Received:` value's "for" clause (`... for <a@b>; date` or `for a@b;`).
fn received_for(value: &str) -> Option<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let at = words.iter().position(|w| w.eq_ignore_ascii_case("for"))?;
    let raw = words.get(at + 1)?;
    let address = raw
        .trim_end_matches(';')
        .trim_start_matches('<')
        .trim_end_matches('>');
    (!address.is_empty()).then(|| address.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            names: vec![
                ("alice".into(), "alice".into()),
                ("bob".into(), "bob".into()),
                ("info".into(), "carol".into()),
            ],
            wildcard: false,
            envelope: Some((0, "X-Original-To".into())),
            qvirtual: None,
            domains: vec!["example.org".into(), "localhost".into()],
            postmaster: "root".into(),
        }
    }

    fn sort(r: &Rules, head: &str) -> Sorted {
        r.sort(&crate::message::header::fields_of(head.as_bytes()))
    }

    #[test]
    fn the_envelope_header_decides() {
        let s = sort(
            &rules(),
            "X-Original-To: bob@example.org\r\nTo: alice@example.org\r\n\r\nbody",
        );
        assert_eq!(s.locals, ["bob"]);
        assert!(!s.by_default);
        // A mapped server name.
        let s = sort(&rules(), "X-Original-To: Info@EXAMPLE.org\n\n");
        assert_eq!(s.locals, ["carol"]);
    }

    #[test]
    fn without_an_envelope_the_header_recipients_count_each_once() {
        let s = sort(
            &rules(),
            "To: Alice <alice@example.org>, stranger@elsewhere.net\nCc: bob, ALICE@mail.example.org\n\n",
        );
        assert_eq!(s.locals, ["alice", "bob"]);
        // Resent-* wins over To/Cc.
        let s = sort(
            &rules(),
            "To: alice@example.org\nResent-To: bob@example.org\n\n",
        );
        assert_eq!(s.locals, ["bob"]);
    }

    #[test]
    fn received_for_with_a_skip_count() {
        let mut r = rules();
        r.envelope = Some((1, "Received".into()));
        let head = "Received: from a by b for <alice@example.org>; Mon, 1 Jan 2026\r\n\
                    Received: from c\r\n by d\r\n for bob@localhost; Mon, 1 Jan 2026\r\n\r\n";
        assert_eq!(sort(&r, head).locals, ["bob"]);
        r.envelope = Some((0, "Received".into()));
        assert_eq!(sort(&r, head).locals, ["alice"]);
        // No "for": the header recipients are used.
        let head = "Received: from a by b; Mon, 1 Jan 2026\nTo: bob@example.org\n\n";
        assert_eq!(sort(&r, head).locals, ["bob"]);
    }

    #[test]
    fn qvirtual_strips_its_prefix_from_envelope_addresses_only() {
        let mut r = rules();
        r.envelope = Some((0, "Delivered-To".into()));
        r.qvirtual = Some("vdom-".into());
        assert_eq!(
            sort(&r, "Delivered-To: vdom-bob@example.org\n\n").locals,
            ["bob"]
        );
        // Header recipients keep their names.
        assert!(sort(&r, "To: vdom-bob@example.org\n\n").by_default);
    }

    #[test]
    fn unmatched_mail_goes_to_the_postmaster() {
        for head in [
            "To: stranger@example.org\n\n",
            "To: alice@elsewhere.net\n\n",
            "Subject: no recipients at all\n\n",
            "",
            "\u{0}\u{1}garbage without a colon",
        ] {
            let s = sort(&rules(), head);
            assert_eq!(s.locals, ["root"], "{head:?}");
            assert!(s.by_default);
        }
    }

    #[test]
    fn the_wildcard_passes_plain_names_only() {
        let mut r = rules();
        r.wildcard = true;
        let s = sort(
            &r,
            "To: Dave@example.org, \"x;rm -rf\"@example.org, `id`@example.org, info@example.org\n\n",
        );
        assert_eq!(s.locals, ["dave", "carol"]);
        // A name that starts with '-' would reach an MDA's argv (%T) as an option; one that
        // starts with '.' is no user name either.
        let s = sort(
            &r,
            "To: -oQ@example.org, .hidden@example.org, Dave@example.org\n\n",
        );
        assert_eq!(s.locals, ["dave"]);
        // Still only in our domains.
        assert!(sort(&r, "To: dave@elsewhere.net\n\n").by_default);
    }
}
