//! The `--configdump` rendering: what was understood, written back in rc syntax.

use std::path::PathBuf;

use super::ast::{AuthType, BadHeader, Envelope, FetchmailRc, Protocol, RcSecret, RcValue};

impl RcValue for bool {
    const NEGATABLE: bool = true;
    fn render(&self, kw: &str) -> String {
        match (*self, kw.strip_prefix("set ")) {
            (true, _) => kw.to_owned(),
            (false, Some(name)) => format!("set no {name}"),
            (false, None) => format!("no {kw}"),
        }
    }
}
impl RcValue for u64 {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {self}")
    }
}
impl RcValue for String {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", quote(self))
    }
}
impl RcValue for PathBuf {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", quote(&self.to_string_lossy()))
    }
}
impl RcValue for Vec<String> {
    fn render(&self, kw: &str) -> String {
        let items: Vec<String> = self.iter().map(|s| quote(s)).collect();
        format!("{kw} {}", items.join(" "))
    }
}
impl RcValue for Vec<i64> {
    fn render(&self, kw: &str) -> String {
        let items: Vec<String> = self.iter().map(i64::to_string).collect();
        format!("{kw} {}", items.join(" "))
    }
}
impl RcValue for RcSecret {
    fn render(&self, kw: &str) -> String {
        format!("{kw} \"<redacted>\"")
    }
}
impl RcValue for Protocol {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", self.name())
    }
}
impl RcValue for AuthType {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", self.name())
    }
}
impl RcValue for Envelope {
    const NEGATABLE: bool = true;
    fn render(&self, kw: &str) -> String {
        match self {
            Envelope::Disabled => format!("no {kw}"),
            Envelope::Header { skip: 0, name } => format!("{kw} {}", quote(name)),
            Envelope::Header { skip, name } => format!("{kw} {skip} {}", quote(name)),
        }
    }
}
impl RcValue for BadHeader {
    fn render(&self, kw: &str) -> String {
        match self {
            BadHeader::Accept => format!("{kw} accept"),
            BadHeader::Reject => format!("{kw} reject"),
        }
    }
}

/// Double-quotes a string for rc syntax, escaping what the lexer would otherwise interpret.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\x22"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What was understood, in rc syntax (re-parsable), with `defaults` applied to every poll,
/// passwords shown as `<redacted>`, and the source line of each record as a comment.
pub fn configdump(rc: &FetchmailRc) -> String {
    let mut out = format!("# rfetch configdump of {}\n", rc.source.display());
    rc.globals.dump(&mut out, "");
    for poll in rc.effective_polls() {
        out.push_str(&format!(
            "\n{} {}    # line {}\n",
            if poll.skip { "skip" } else { "poll" },
            quote(&poll.label),
            poll.line
        ));
        poll.server.dump(&mut out, "    ");
        for user in &poll.users {
            out.push_str("    user ");
            match &user.remote {
                Some(r) => out.push_str(&format!("{} there", quote(&r.value))),
                None if user.locals.is_empty() => {
                    out.push_str("\"<invoking user>\" there");
                }
                None => {
                    if let Some(first) = user.locals.first() {
                        out.push_str(&format!("{} there", quote(&first.local)));
                    }
                }
            }
            if !user.locals.is_empty() || user.wildcard {
                out.push_str(" is");
                for l in &user.locals {
                    match &l.server_name {
                        Some(s) => out.push_str(&format!(" {}={}", quote(s), quote(&l.local))),
                        None => out.push_str(&format!(" {}", quote(&l.local))),
                    }
                }
                if user.wildcard {
                    out.push_str(" *");
                }
                out.push_str(" here");
            }
            out.push_str(&format!(
                "    # line {}{}\n",
                user.line,
                if user.is_multidrop() {
                    ", multidrop"
                } else {
                    ""
                }
            ));
            user.options.dump(&mut out, "        ");
        }
    }
    if !rc.warnings.is_empty() || !rc.refusals.is_empty() {
        out.push('\n');
        for w in &rc.warnings {
            out.push_str(&format!("# warning: {w}\n"));
        }
        for r in &rc.refusals {
            out.push_str(&format!("# error: {r}\n"));
        }
    }
    out
}
