//! [`Grant`]: what one authenticated connection may do, for as long as its token lasts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Claims;
use crate::protocol::{GroupName, UserId};

/// Longest expiry herald tracks with a timer; a token valid for longer is treated as not
/// expiring during the connection (timers that far out would only risk overflow).
const MAX_TRACKED: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A connection's rights: its token's claims plus its personal group.
#[derive(Debug, Clone)]
pub struct Grant {
    claims: Claims,
    personal: Option<GroupName>,
    leeway: Duration,
}

/// A group the token does not let the connection join (or publish to).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token does not allow {action} {group:?} (claim `{claim}`)")]
pub struct Denied {
    action: &'static str,
    group: GroupName,
    claim: &'static str,
}

/// Why a `refresh` token was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the new token is for another user (sub); reconnect to change users")]
pub struct OtherUser;

impl Grant {
    /// The rights of a connection holding `claims`: `personal_prefix` names its personal
    /// group (see [`super::personal_group`]) and `leeway` extends its `exp`.
    pub fn new(claims: Claims, personal_prefix: &str, leeway: Duration) -> Self {
        let personal = super::personal_group(personal_prefix, &claims.sub);
        Self {
            claims,
            personal,
            leeway,
        }
    }

    /// The user (`sub`).
    pub fn user(&self) -> &UserId {
        &self.claims.sub
    }

    /// The user's personal group, if personal groups are on and the id fits a group name.
    pub fn personal_group(&self) -> Option<&GroupName> {
        self.personal.as_ref()
    }

    /// The token's `exp`, in seconds since the Unix epoch.
    pub fn exp(&self) -> u64 {
        self.claims.exp
    }

    /// Whether the connection may join `group`: its personal group always, others when
    /// the token's `groups` allow it.
    pub fn may_join(&self, group: &GroupName) -> bool {
        self.personal.as_ref() == Some(group) || self.claims.may_join(group)
    }

    /// Whether the connection may publish to `group` (only the token's `publish`).
    pub fn may_publish(&self, group: &GroupName) -> bool {
        self.claims.may_publish(group)
    }

    /// [`Grant::may_join`] as a result that explains a refusal.
    pub fn check_join(&self, group: &GroupName) -> Result<(), Denied> {
        self.may_join(group).then_some(()).ok_or_else(|| Denied {
            action: "joining",
            group: group.clone(),
            claim: "groups",
        })
    }

    /// [`Grant::may_publish`] as a result that explains a refusal.
    pub fn check_publish(&self, group: &GroupName) -> Result<(), Denied> {
        self.may_publish(group).then_some(()).ok_or_else(|| Denied {
            action: "publishing to",
            group: group.clone(),
            claim: "publish",
        })
    }

    /// How long after `now` the connection must close: `exp` + leeway. `None` when that
    /// is too far away to track.
    pub fn expires_in(&self, now: SystemTime) -> Option<Duration> {
        let until = Duration::from_secs(self.claims.exp).checked_add(self.leeway)?;
        let at = UNIX_EPOCH.checked_add(until)?;
        let left = at.duration_since(now).unwrap_or(Duration::ZERO);
        (left <= MAX_TRACKED).then_some(left)
    }

    /// Takes a refreshed token's claims, which must be for the same user. The rights
    /// become the new token's.
    pub fn refresh(&mut self, claims: Claims) -> Result<(), OtherUser> {
        if claims.sub != self.claims.sub {
            return Err(OtherUser);
        }
        self.claims = claims;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    fn g(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    #[test]
    fn the_personal_group_is_always_allowed_and_patterns_decide_the_rest() {
        let grant = Grant::new(
            claims(r#"{"sub":"42","exp":1,"groups":["room:*"],"publish":["room:1"]}"#),
            "user:",
            Duration::ZERO,
        );
        assert_eq!(grant.personal_group(), Some(&g("user:42")));
        assert!(grant.may_join(&g("user:42")) && grant.may_join(&g("room:9")));
        assert!(!grant.may_join(&g("user:43")) && !grant.may_join(&g("news")));
        assert!(grant.may_publish(&g("room:1")) && !grant.may_publish(&g("room:2")));
        assert!(!grant.may_publish(&g("user:42")));
        assert_eq!(
            grant.check_join(&g("news")).unwrap_err().to_string(),
            "the token does not allow joining \"news\" (claim `groups`)"
        );
    }

    #[test]
    fn expiry_is_exp_plus_leeway_and_never_negative() {
        let grant = Grant::new(
            claims(r#"{"sub":"1","exp":1000}"#),
            "",
            Duration::from_secs(5),
        );
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(grant.expires_in(at(990)), Some(Duration::from_secs(15)));
        assert_eq!(grant.expires_in(at(2000)), Some(Duration::ZERO));
        let forever = Grant::new(
            claims(&format!(r#"{{"sub":"1","exp":{}}}"#, u64::MAX)),
            "",
            Duration::from_secs(5),
        );
        assert_eq!(forever.expires_in(at(0)), None);
    }

    #[test]
    fn refresh_needs_the_same_user_and_replaces_the_rights() {
        let mut grant = Grant::new(
            claims(r#"{"sub":"1","exp":10,"groups":["a"]}"#),
            "",
            Duration::ZERO,
        );
        assert_eq!(
            grant.refresh(claims(r#"{"sub":"2","exp":20,"groups":["b"]}"#)),
            Err(OtherUser)
        );
        assert_eq!(grant.exp(), 10);
        grant
            .refresh(claims(r#"{"sub":"1","exp":20,"groups":["b"]}"#))
            .unwrap();
        assert_eq!(grant.exp(), 20);
        assert!(grant.may_join(&g("b")) && !grant.may_join(&g("a")));
    }
}
