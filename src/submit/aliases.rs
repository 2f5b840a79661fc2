//! msmtp's aliases file (`aliases`): `local: a@x, b@y` lines with `#` comments, the `default`
//! catch-all, recursive expansion with a depth limit. Applies only to addresses without `@`.

use std::collections::HashMap;

/// A parsed aliases file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    map: HashMap<String, Vec<String>>,
}

/// Expansion deeper than this is a loop ("too many redirects").
const MAX_DEPTH: usize = 16;

impl Aliases {
    /// Parses the file text; malformed lines are reported with their line number.
    pub fn parse(text: &str) -> Result<Aliases, String> {
        let mut map = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, values) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected 'name: address, ...'", i + 1))?;
            let targets: Vec<String> = values
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            map.insert(key.trim().to_ascii_lowercase(), targets);
        }
        Ok(Aliases { map })
    }

    /// Expands one recipient.
    pub fn expand(&self, address: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        self.expand_into(address, 0, &mut out)?;
        Ok(out)
    }

    fn expand_into(&self, address: &str, depth: usize, out: &mut Vec<String>) -> Result<(), String> {
        if address.contains('@') {
            out.push(address.to_string());
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(format!("aliases: too many redirects expanding {address}"));
        }
        let key = address.to_ascii_lowercase();
        match self.map.get(&key).or_else(|| self.map.get("default")) {
            Some(targets) => {
                for t in targets {
                    if t.eq_ignore_ascii_case(address) {
                        out.push(t.clone());
                    } else {
                        self.expand_into(t, depth + 1, out)?;
                    }
                }
                Ok(())
            }
            None => {
                out.push(address.to_string());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let a = Aliases::parse("# c\nroot: admin, ops@x.org\nadmin: me@x.org\ndefault: catch@x.org\n")
            .unwrap();
        assert_eq!(a.expand("root").unwrap(), ["me@x.org", "ops@x.org"]);
        assert_eq!(a.expand("nobody").unwrap(), ["catch@x.org"]);
        assert_eq!(a.expand("root@host").unwrap(), ["root@host"]);
        let l = Aliases::parse("a: b\nb: a\n").unwrap();
        assert!(l.expand("a").unwrap_err().contains("too many redirects"));
        assert!(Aliases::parse("no colon here").is_err());
    }
}
