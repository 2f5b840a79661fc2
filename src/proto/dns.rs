//! The one DNS exchange rsend needs, for `--configure` (RFC 6186 / RFC 8314 SRV records): a
//! query for the SRV records of a name (RFC 1035 §4, RFC 2782), and reading the answer. Pure and
//! bounded: every offset is checked, compression pointers may only point backwards and are
//! followed a bounded number of times, names are at most 255 bytes.

use std::fmt;

const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
/// More pointers than labels a name can have means a loop.
const MAX_POINTERS: usize = 128;

/// One SRV record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, without the final dot; empty for "." ("no such service").
    pub target: String,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name cannot be asked for (an empty label, a label over 63 bytes, over 255 in all).
    BadName,
    /// The answer does not belong to the query or is malformed.
    Malformed(&'static str),
    /// The server answered with an error code other than "no such name".
    ServerFailure(u8),
    /// The answer was truncated (TC): it did not fit into one UDP datagram.
    Truncated,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::BadName => f.write_str("not a valid domain name"),
            DnsError::Malformed(what) => write!(f, "malformed DNS answer: {what}"),
            DnsError::ServerFailure(code) => write!(f, "the DNS server failed (rcode {code})"),
            DnsError::Truncated => f.write_str("the DNS answer was truncated"),
        }
    }
}

impl std::error::Error for DnsError {}

/// A query with identifier `id` for the SRV records of `name` (recursion desired).
pub fn srv_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::BadName);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::BadName);
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// Reads the answer to the query with identifier `id`: the SRV records, best first (lowest
/// priority, then highest weight). "No such name" and no records are both an empty list.
pub fn parse_srv_answer(id: u16, msg: &[u8]) -> Result<Vec<Srv>, DnsError> {
    let u16_at = |at: usize| -> Result<u16, DnsError> {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(DnsError::Malformed("too short"))
    };
    if u16_at(0)? != id {
        return Err(DnsError::Malformed("wrong identifier"));
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Malformed("not a response"));
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match (flags & 0x000F) as u8 {
        0 => {}
        3 => return Ok(Vec::new()),
        code => return Err(DnsError::ServerFailure(code)),
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let rtype = u16_at(at)?;
        let class = u16_at(at + 2)?;
        let len = usize::from(u16_at(at + 8)?);
        let data = at + 10;
        let end = data + len;
        if end > msg.len() {
            return Err(DnsError::Malformed("record longer than the message"));
        }
        if rtype == TYPE_SRV && class == CLASS_IN {
            if len < 7 {
                return Err(DnsError::Malformed("short SRV record"));
            }
            let (target, _) = read_name(msg, data + 6)?;
            out.push(Srv {
                priority: u16_at(data)?,
                weight: u16_at(data + 2)?,
                port: u16_at(data + 4)?,
                target,
            });
        }
        at = end;
    }
    out.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
    Ok(out)
}

/// The offset just after the name at `at` (a pointer ends the name).
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg
            .get(at)
            .ok_or(DnsError::Malformed("name runs past the end"))?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => return Ok(at + 2),
            l if l & 0xC0 != 0 => return Err(DnsError::Malformed("unknown label type")),
            l => at += 1 + usize::from(l),
        }
    }
}

/// Reads the (possibly compressed) name at `at`; returns it without the final dot and the
/// offset after it in place.
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut at = start;
    let mut after = None;
    let mut pointers = 0;
    loop {
        let len = *msg
            .get(at)
            .ok_or(DnsError::Malformed("name runs past the end"))?;
        if len & 0xC0 == 0xC0 {
            let low = *msg.get(at + 1).ok_or(DnsError::Malformed("cut pointer"))?;
            let target = (usize::from(len & 0x3F) << 8) | usize::from(low);
            // Only backwards: a forward or self pointer could loop.
            if target >= at || pointers >= MAX_POINTERS {
                return Err(DnsError::Malformed("compression pointer loop"));
            }
            pointers += 1;
            after.get_or_insert(at + 2);
            at = target;
            continue;
        }
        if len & 0xC0 != 0 {
            return Err(DnsError::Malformed("unknown label type"));
        }
        if len == 0 {
            return Ok((name, after.unwrap_or(at + 1)));
        }
        let label = msg
            .get(at + 1..at + 1 + usize::from(len))
            .ok_or(DnsError::Malformed("label runs past the end"))?;
        if !name.is_empty() {
            name.push('.');
        }
        // Host names are LDH; anything else is kept visible but harmless.
        name.extend(label.iter().map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                b as char
            } else {
                '?'
            }
        }));
        if name.len() > 255 {
            return Err(DnsError::Malformed("name longer than 255 bytes"));
        }
        at += 1 + usize::from(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` with SRV records (priority, weight, port, target), the target names
    /// written in full or compressed against the question.
    fn answer(query: &[u8], rcode: u8, records: &[(u16, u16, u16, &str)]) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (prio, weight, port, target) in records {
            m.extend_from_slice(&[0xC0, 12]); // the question's name
            m.extend_from_slice(&TYPE_SRV.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&300u32.to_be_bytes());
            let mut data = Vec::new();
            data.extend_from_slice(&prio.to_be_bytes());
            data.extend_from_slice(&weight.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            for label in target.split('.').filter(|l| !l.is_empty()) {
                data.push(label.len() as u8);
                data.extend_from_slice(label.as_bytes());
            }
            data.push(0);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(&data);
        }
        m
    }

    #[test]
    fn query_bytes() {
        let q = srv_query(0xABCD, "_submissions._tcp.example.org.").unwrap();
        let mut want = vec![0xAB, 0xCD, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 12];
        want.extend_from_slice(b"_submissions\x04_tcp\x07example\x03org\x00\x00\x21\x00\x01");
        assert_eq!(q, want);
        assert_eq!(srv_query(1, "a..b"), Err(DnsError::BadName));
        assert_eq!(srv_query(1, &"x".repeat(64)), Err(DnsError::BadName));
        assert_eq!(srv_query(1, ""), Err(DnsError::BadName));
    }

    #[test]
    fn answers_are_sorted_by_priority_then_weight() {
        let q = srv_query(7, "_submission._tcp.example.org").unwrap();
        let a = answer(
            &q,
            0,
            &[
                (20, 0, 587, "backup.example.org"),
                (10, 5, 587, "b.example.org"),
                (10, 50, 465, "a.example.org"),
            ],
        );
        let got = parse_srv_answer(7, &a).unwrap();
        let targets: Vec<&str> = got.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(
            targets,
            ["a.example.org", "b.example.org", "backup.example.org"]
        );
        assert_eq!(got[0].port, 465);
    }

    #[test]
    fn compressed_targets_and_no_service() {
        let q = srv_query(7, "_submission._tcp.example.org").unwrap();
        // A target compressed against the question name: "mail" + pointer to "example.org".
        let mut a = answer(&q, 0, &[]);
        a[6..8].copy_from_slice(&1u16.to_be_bytes());
        a.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 1, 44]);
        let rdata = [0, 0, 0, 0, 2, 75, 4, b'm', b'a', b'i', b'l', 0xC0, 29];
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(&rdata);
        let got = parse_srv_answer(7, &a).unwrap();
        assert_eq!(got[0].target, "mail.example.org");
        assert_eq!(got[0].port, 587);
        let dot = answer(&q, 0, &[(0, 0, 0, ".")]);
        assert_eq!(parse_srv_answer(7, &dot).unwrap()[0].target, "");
    }

    #[test]
    fn random_answers_never_panic() {
        // A fixed xorshift sequence: the same hostile inputs on every run.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 96) as usize;
            let mut msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if msg.len() >= 12 {
                msg[0..2].copy_from_slice(&7u16.to_be_bytes());
                msg[2] |= 0x80;
                msg[2] &= !0x02;
                msg[3] &= 0xF0;
            }
            let _ = parse_srv_answer(7, &msg);
        }
    }

    #[test]
    fn errors_and_hostile_answers() {
        let q = srv_query(7, "_submission._tcp.example.org").unwrap();
        assert_eq!(parse_srv_answer(7, &answer(&q, 3, &[])), Ok(vec![]));
        assert_eq!(
            parse_srv_answer(7, &answer(&q, 2, &[])),
            Err(DnsError::ServerFailure(2))
        );
        assert!(
            parse_srv_answer(8, &answer(&q, 0, &[])).is_err(),
            "wrong id"
        );
        let mut tc = answer(&q, 0, &[]);
        tc[2] |= 0x02;
        assert_eq!(parse_srv_answer(7, &tc), Err(DnsError::Truncated));
        assert!(parse_srv_answer(7, &q).is_err(), "a query is not an answer");
        // Every truncation of a valid answer is an error, never a panic.
        let full = answer(&q, 0, &[(1, 1, 587, "smtp.example.org")]);
        for cut in 0..full.len() {
            let _ = parse_srv_answer(7, &full[..cut]);
        }
        // A pointer to itself, and a forward pointer.
        for ptr in [[0xC0u8, 0x00], [0xC0, 0xFF]] {
            let mut a = answer(&q, 0, &[]);
            a[6..8].copy_from_slice(&1u16.to_be_bytes());
            let at = a.len();
            a.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 1, 44, 0, 8, 0, 0, 0, 0, 0, 25]);
            a.extend_from_slice(&ptr);
            if ptr[1] == 0 {
                let here = at + 18;
                a[here] = 0xC0 | (here >> 8) as u8;
                a[here + 1] = (here & 0xFF) as u8;
            }
            assert!(parse_srv_answer(7, &a).is_err(), "{ptr:?}");
        }
    }
}
