//! The pure checks behind authorisation: group patterns, scopes and allowed origins
//! (whose `--allowed-origins` entries, [`OriginPattern`], are configuration).

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::config::OriginPattern;
use crate::protocol::GroupName;

/// A group pattern from a token's `groups` or `publish` claim: an exact group name
/// (`news`) or a prefix followed by one `*` (`room:*`, or `*` for every group).
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The exact name, or the prefix before the `*`.
    text: Box<str>,
    wildcard: bool,
}

/// Why a group pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("group pattern {0:?} is invalid: use a group name, optionally ending in one `*`")]
pub struct InvalidPattern(String);

impl Pattern {
    /// Parses a pattern. The part before an ending `*` follows the group naming rule
    /// (and may be empty); a `*` anywhere else is refused rather than read literally,
    /// so a typo in a token never grants something unexpected.
    pub fn parse(raw: &str) -> Result<Self, InvalidPattern> {
        let (text, wildcard) = match raw.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (raw, false),
        };
        let valid_prefix = wildcard && text.is_empty();
        if !valid_prefix && GroupName::parse(text).is_err() {
            return Err(InvalidPattern(raw.chars().take(101).collect()));
        }
        Ok(Self {
            text: text.into(),
            wildcard,
        })
    }

    /// Whether `group` is allowed by this pattern. `room:*` allows `room:1` and `room:`,
    /// not `room`.
    pub fn matches(&self, group: &GroupName) -> bool {
        if self.wildcard {
            group.as_str().starts_with(&*self.text)
        } else {
            group.as_str() == &*self.text
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.wildcard { "*" } else { "" };
        write!(f, "{:?}", format_args!("{}{star}", self.text))
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Whether any of `patterns` allows `group`.
pub fn any_matches(patterns: &[Pattern], group: &GroupName) -> bool {
    patterns.iter().any(|p| p.matches(group))
}

/// Whether the space-separated OAuth `scope` claim contains `wanted` (RFC 8693 §4.2).
pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_ascii_whitespace().any(|s| s == wanted)
}

/// Whether `origin` (the `Origin` header, if any) may open a WebSocket. `None` for
/// `allowed` means `--allowed-origins` is unset: every origin is allowed. A request
/// without `Origin` is allowed too: browsers always send one on a WebSocket upgrade, so
/// only non-browser clients (backends, apps, CLIs) omit it, and the origin check exists
/// to stop other web pages, not them.
pub fn origin_allowed(allowed: Option<&[OriginPattern]>, origin: Option<&str>) -> bool {
    match (allowed, origin) {
        (None, _) | (_, None) => true,
        (Some(list), Some(origin)) => list.iter().any(|p| p.matches(origin)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    #[test]
    fn exact_and_suffix_wildcard_patterns() {
        let room = Pattern::parse("room:*").unwrap();
        assert!(room.matches(&g("room:1")) && room.matches(&g("room:")));
        assert!(!room.matches(&g("room")) && !room.matches(&g("xroom:1")));
        let news = Pattern::parse("news").unwrap();
        assert!(news.matches(&g("news")) && !news.matches(&g("news2")));
        let all = Pattern::parse("*").unwrap();
        assert!(all.matches(&g("anything")));
        let list = [room, news];
        assert!(any_matches(&list, &g("room:7")) && !any_matches(&list, &g("sport")));
        assert!(!any_matches(&[], &g("news")));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "a*b", "**", "*a", "room *", "é*", &"x".repeat(101)] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        let claims: Result<Vec<Pattern>, _> = serde_json::from_str(r#"["ok","no*pe"]"#);
        assert!(claims.is_err());
    }

    #[test]
    fn scope_is_a_space_separated_list() {
        assert!(has_scope("read notify", "notify"));
        assert!(has_scope("notify", "notify"));
        assert!(!has_scope("notify:read", "notify"));
        assert!(!has_scope("", "notify"));
    }

    #[test]
    fn no_origin_header_or_no_list_is_allowed() {
        let list = [OriginPattern::parse("https://app.io").unwrap()];
        assert!(origin_allowed(None, Some("https://evil.io")));
        assert!(origin_allowed(Some(&list), None));
        assert!(origin_allowed(Some(&list), Some("https://app.io")));
        assert!(!origin_allowed(Some(&list), Some("https://evil.io")));
    }
}
