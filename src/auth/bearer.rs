//! Where a bearer token travels: the `Authorization` header, the `Sec-WebSocket-Protocol`
//! offer `herald.bearer.<token>`, or the `token` query parameter. These only find the
//! token's text; checking it is [`super::Verifier`]'s job.

use super::AuthError;

/// The subprotocol prefix a browser uses to carry its token (browsers cannot set
/// `Authorization` on a WebSocket).
pub const PROTOCOL_PREFIX: &str = "herald.bearer.";

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn from_authorization(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// In a `Sec-WebSocket-Protocol` offer (comma-separated), the protocol of the form
/// `herald.bearer.<token>`: returns that protocol as offered, which the 101 must echo
/// exactly (RFC 6455 §4.2.2), and the token in it. Offering two is
/// [`AuthError::Ambiguous`]: herald will not pick one of two credentials.
pub fn from_protocols(offer: &str) -> Result<Option<(&str, &str)>, AuthError> {
    let mut bearers = offer.split(',').map(str::trim).filter_map(|protocol| {
        let token = protocol.strip_prefix(PROTOCOL_PREFIX)?;
        (!token.is_empty()).then_some((protocol, token))
    });
    let first = bearers.next();
    if bearers.next().is_some() {
        return Err(AuthError::Ambiguous);
    }
    Ok(first)
}

/// The `token` parameter of a raw query string, percent-decoded. Given more than once,
/// it is [`AuthError::Ambiguous`].
pub fn from_query(query: &str) -> Result<Option<String>, AuthError> {
    let mut found = None;
    for pair in query.split('&') {
        let Some(value) = pair.strip_prefix("token=") else {
            continue;
        };
        if found.is_some() {
            return Err(AuthError::Ambiguous);
        }
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        found = Some(value.into_owned());
    }
    Ok(found.filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_needs_the_bearer_scheme() {
        assert_eq!(from_authorization("Bearer abc.def"), Some("abc.def"));
        assert_eq!(from_authorization("bearer  abc "), Some("abc"));
        assert_eq!(from_authorization("Basic dXNlcjpwdw=="), None);
        assert_eq!(from_authorization("Bearer "), None);
        assert_eq!(from_authorization("Bearer"), None);
    }

    #[test]
    fn the_bearer_subprotocol_is_found_among_others() {
        assert_eq!(
            from_protocols("herald.v1, herald.bearer.a.b.c ,chat"),
            Ok(Some(("herald.bearer.a.b.c", "a.b.c")))
        );
        assert_eq!(from_protocols("herald.bearer."), Ok(None));
        assert_eq!(from_protocols("chat, superchat"), Ok(None));
        assert_eq!(
            from_protocols("herald.bearer.a, herald.bearer.b"),
            Err(AuthError::Ambiguous)
        );
    }

    #[test]
    fn query_token_is_decoded_and_must_be_single() {
        assert_eq!(from_query("a=1&token=x%2Ey"), Ok(Some("x.y".into())));
        assert_eq!(from_query("mytoken=x"), Ok(None));
        assert_eq!(from_query(""), Ok(None));
        assert_eq!(from_query("token="), Ok(None));
        assert_eq!(from_query("token=a&token=b"), Err(AuthError::Ambiguous));
    }
}
