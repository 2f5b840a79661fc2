//! The envelope sender a message's header names, by fetchmail's rules (its transact.c): rfetch
//! uses it as the MAIL FROM of SMTP/LMTP forwarding, an MDA's `%F` and the mbox `From ` line.
//! Pure: header fields in, an address out.

use super::address::parse_address_list;
use super::header::Field;

/// The sender named by a message's header `fields`: the first of Return-Path,
/// Resent-Sender, Sender (these two only with an `@` or `!` in them), Resent-From, From,
/// Reply-To, Apparently-From. `Return-Path: <>` is the null sender (a bounce) and gives "".
/// No usable field gives "" too.
pub fn sender(fields: &[Field]) -> String {
    let first = |name: &str| {
        fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value())
    };
    if let Some(rp) = first("Return-Path") {
        let compact: String = rp.split_whitespace().collect();
        if compact == "<>" {
            return String::new();
        }
        if let Some(a) = usable(parse_address_list(&rp)) {
            return a;
        }
    }
    for name in ["Resent-Sender", "Sender"] {
        if let Some(a) = first(name)
            .and_then(|v| usable(parse_address_list(&v)))
            .filter(|a| a.contains('@') || a.contains('!'))
        {
            return a;
        }
    }
    ["Resent-From", "From", "Reply-To", "Apparently-From"]
        .into_iter()
        .find_map(|name| first(name).and_then(|v| usable(parse_address_list(&v))))
        .unwrap_or_default()
}

/// The first address, if it can go on an SMTP command line as it is.
fn usable(addresses: Vec<String>) -> Option<String> {
    addresses.into_iter().next().filter(|a| {
        !a.is_empty()
            && a.len() <= 254
            && a.bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::header::fields_of;

    #[test]
    fn precedence_follows_fetchmail() {
        let cases: &[(&str, &str)] = &[
            ("Return-Path: <a@x>\nFrom: b@y\n\n", "a@x"),
            ("Return-Path: <>\nFrom: b@y\n\n", ""),
            ("Return-Path: < >\nFrom: b@y\n\n", ""),
            (
                "Sender: list-owner@lists.x\nFrom: B <b@y>\n\n",
                "list-owner@lists.x",
            ),
            ("Sender: localname\nFrom: B <b@y>\n\n", "b@y"),
            ("Resent-From: r@z\nFrom: b@y\n\n", "r@z"),
            ("Reply-To: c@w\n\n", "c@w"),
            ("Subject: none\n\n", ""),
            ("", ""),
            ("From: x@y\r\nTo: z\r\n\r\nbody", "x@y"),
        ];
        let sender_of = |head: &str| sender(&fields_of(head.as_bytes()));
        for (head, want) in cases {
            assert_eq!(sender_of(head), *want, "{head:?}");
        }
        // Nothing that cannot go on a MAIL FROM line as it is.
        let long = format!("From: {}@x\n\n", "a".repeat(300));
        assert_eq!(sender_of(&long), "");
    }
}
