//! [`OriginPattern`]: one `--allowed-origins` entry, parsed when the flag is read.
//! `auth::origin_allowed` checks a request's `Origin` against the list.

use std::fmt;

/// One entry of `--allowed-origins`: an origin such as `https://app.example.com`, where
/// each `*` stands for one or more characters of a host name or port
/// (`https://*.example.com`, `http://localhost:*`), or `*` alone for any origin.
#[derive(Clone, PartialEq, Eq)]
pub struct OriginPattern(Box<str>);

/// Why an `--allowed-origins` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed origin {0:?} is invalid: write scheme://host[:port], with `*` for any part of the host or port")]
pub struct InvalidOrigin(String);

impl OriginPattern {
    /// Parses one entry (surrounding spaces are ignored; comparison is case-insensitive).
    pub fn parse(raw: &str) -> Result<Self, InvalidOrigin> {
        let text = raw.trim().to_ascii_lowercase();
        let ok = text == "*"
            || text == "null"
            || (text.contains("://")
                && !text.ends_with('/')
                && text.bytes().all(|b| b.is_ascii_graphic() && b != b','));
        if ok {
            Ok(Self(text.into()))
        } else {
            Err(InvalidOrigin(raw.to_owned()))
        }
    }

    /// Whether the `Origin` header value `origin` is allowed by this entry.
    pub fn matches(&self, origin: &str) -> bool {
        &*self.0 == "*" || glob(self.0.as_bytes(), origin.to_ascii_lowercase().as_bytes())
    }
}

impl fmt::Debug for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::str::FromStr for OriginPattern {
    type Err = InvalidOrigin;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Matches `text` against `pattern`, where `*` is one or more host-name or port
/// characters (`A-Z a-z 0-9 . -`). Keeping `*` away from `/`, `:` and `@` means
/// `https://*.example.com` can never match `https://evil.com:1@x.example.com`-style text
/// or another scheme or port.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            let run = text
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                .count();
            // Try the longest run first; origins are short, so backtracking is cheap.
            (1..=run).rev().any(|n| glob(rest, &text[n..]))
        }
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_wildcards_stay_inside_the_host_or_port() {
        let p = |s: &str| OriginPattern::parse(s).unwrap();
        let sub = p("https://*.example.com");
        assert!(sub.matches("https://app.example.com"));
        assert!(sub.matches("https://a.b.Example.COM"));
        for bad in [
            "https://example.com",
            "http://app.example.com",
            "https://app.example.com.evil.io",
            "https://evil.io/x.example.com",
            "https://app.example.com:8443",
        ] {
            assert!(!sub.matches(bad), "{bad}");
        }
        let local = p("http://localhost:*");
        assert!(local.matches("http://localhost:5173") && !local.matches("http://localhost"));
        assert!(p("*").matches("https://anything.io"));
        assert!(p("null").matches("null") && !p("https://a.io").matches("null"));
        for bad in ["example.com", "https://a.io/", "", "https://a b.io"] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
