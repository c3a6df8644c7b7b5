//! [`Verifier`]: the configured key and validation rules, built once at startup.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, Algorithm, AlgorithmFamily, DecodingKey, Validation};

use super::{AuthError, Claims};
use crate::config::Config;

/// Checks bearer tokens: signature with the one configured key and algorithm, then
/// `exp` (required), `nbf` (when present), `sub` (required) and, when configured, `iss`
/// and `aud`, all with `--jwt-leeway`.
///
/// Only the configured algorithm is accepted, which rules out `alg: none` (jsonwebtoken
/// has no such algorithm) and algorithm confusion (an HS256 token "signed" with the
/// bytes of an RSA public key is refused for its algorithm before any HMAC is computed).
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

/// Why the configured key cannot be used; herald refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The shared secret is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// The public key file holds a private key.
    #[error("{0} holds a private key; give herald the public key only")]
    PrivateKey(PathBuf),
    /// The public key file is not an RSA, EC or Ed25519 public key in PEM form.
    #[error("{0} is not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM form")]
    NotAPublicKey(PathBuf),
    /// `--jwt-algorithm` does not fit the kind of key.
    #[error("--jwt-algorithm {algorithm:?} does not fit a {key} key")]
    AlgorithmMismatch {
        /// The configured algorithm.
        algorithm: Algorithm,
        /// The kind of key configured.
        key: &'static str,
    },
}

impl Verifier {
    /// The verifier `config` asks for, or `None` when no key is configured (auth off).
    pub fn from_config(config: &Config) -> Result<Option<Self>, KeyError> {
        let key = if let Some(secret) = &config.jwt_secret {
            secret_key(secret.expose().as_bytes())?
        } else if let Some(path) = &config.jwt_secret_file {
            let text = read(path)?;
            // A file written with `echo` ends in a newline that is not part of the secret.
            let secret = text.strip_suffix(b"\n").unwrap_or(&text);
            let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
            secret_key(secret)?
        } else if let Some(path) = &config.jwt_public_key_file {
            public_key(path)?
        } else {
            return Ok(None);
        };
        let family = key.family();
        let algorithm = config.jwt_algorithm.unwrap_or(match family {
            AlgorithmFamily::Hmac => Algorithm::HS256,
            AlgorithmFamily::Rsa => Algorithm::RS256,
            AlgorithmFamily::Ec => Algorithm::ES256,
            AlgorithmFamily::Ed => Algorithm::EdDSA,
        });
        if algorithm.family() != family {
            return Err(KeyError::AlgorithmMismatch {
                algorithm,
                key: family_name(family),
            });
        }

        let mut validation = Validation::new(algorithm);
        validation.leeway = config.jwt_leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &config.jwt_audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(Self {
            key,
            validation,
            algorithm,
        }))
    }

    /// Verifies `token` and returns its claims.
    ///
    /// A token whose header lists critical extensions (`crit`) is refused: herald
    /// understands none, and RFC 7515 §4.1.11 says such a token must then be rejected.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(reason(e.kind())))?;
        if data.header.crit.is_some() {
            return Err(AuthError::Invalid(
                "the token lists critical header extensions (crit) this hub does not understand"
                    .to_owned(),
            ));
        }
        Ok(data.claims)
    }

    /// The one algorithm accepted.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The clock-skew allowance applied to `exp` and `nbf`.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.validation.leeway)
    }
}

// Not derived: the key must never reach a log line.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("leeway_s", &self.validation.leeway)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn secret_key(secret: &[u8]) -> Result<DecodingKey, KeyError> {
    if secret.is_empty() {
        return Err(KeyError::EmptySecret);
    }
    Ok(DecodingKey::from_secret(secret))
}

/// Loads a PEM public key, letting jsonwebtoken tell which kind it is.
fn public_key(path: &Path) -> Result<DecodingKey, KeyError> {
    let pem = read(path)?;
    // The PEM label is enough to catch the mistake of deploying the signing key.
    if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err(KeyError::PrivateKey(path.to_owned()));
    }
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map_err(|_| KeyError::NotAPublicKey(path.to_owned()))
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "shared-secret (HMAC)",
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
    }
}

/// A short explanation for the caller; detailed enough to fix a client, never the token
/// (serde's messages may quote a claim value, which the caller sent itself).
fn reason(kind: &ErrorKind) -> String {
    let text = match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "the token's algorithm is not the one this hub accepts"
        }
        ErrorKind::InvalidIssuer => "wrong issuer (iss)",
        ErrorKind::InvalidAudience => "wrong audience (aud)",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "missing claim `exp`",
            "sub" => "missing claim `sub`",
            "iss" => "missing claim `iss`",
            "aud" => "missing claim `aud`",
            _ => "a required claim is missing",
        },
        ErrorKind::Json(e) => return format!("malformed header or claims: {e}"),
        ErrorKind::InvalidClaimFormat(claim) => return format!("malformed claim `{claim}`"),
        _ => "malformed token",
    };
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["herald"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs256(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn no_key_means_no_verifier() {
        assert!(Verifier::from_config(&config(&[])).unwrap().is_none());
    }

    #[test]
    fn hs256_tokens_are_checked_for_signature_exp_sub_and_claims() {
        let v = Verifier::from_config(&config(&["--jwt-secret", "s3cret"]))
            .unwrap()
            .unwrap();
        let exp = now() + 60;
        let ok = v
            .verify(&hs256(
                "s3cret",
                json!({"sub": "7", "exp": exp, "groups": ["a*"]}),
            ))
            .unwrap();
        assert_eq!((ok.sub.as_str(), ok.exp), ("7", exp));

        let refused = |claims, secret| v.verify(&hs256(secret, claims)).unwrap_err();
        let invalid = |m: &str| AuthError::Invalid(m.to_owned());
        assert_eq!(
            refused(json!({"sub": "7", "exp": exp}), "other"),
            invalid("bad signature")
        );
        assert_eq!(
            refused(json!({"sub": "7", "exp": now() - 60}), "s3cret"),
            invalid("the token has expired")
        );
        for (claims, why) in [
            (json!({"sub": "7"}), "missing field `exp`"),
            (json!({"exp": exp}), "missing field `sub`"),
            (json!({"sub": "", "exp": exp}), "user id is invalid"),
            (
                json!({"sub": "7", "exp": exp, "groups": ["a*b"]}),
                "group pattern",
            ),
            (
                json!({"sub": "7", "exp": exp, "scope": ["notify"]}),
                "invalid type",
            ),
        ] {
            let AuthError::Invalid(m) = refused(claims.clone(), "s3cret") else {
                panic!("{claims}")
            };
            assert!(
                m.starts_with("malformed") && m.contains(why),
                "{claims}: {m}"
            );
        }
        assert!(v.verify("not.a.token").is_err() && v.verify("").is_err());
    }

    #[test]
    fn leeway_is_configurable_and_defaults_to_five_seconds() {
        let v = Verifier::from_config(&config(&["--jwt-secret", "k"]))
            .unwrap()
            .unwrap();
        assert_eq!(v.leeway(), Duration::from_secs(5));
        let just_expired = hs256("k", json!({"sub": "1", "exp": now() - 2}));
        assert!(v.verify(&just_expired).is_ok(), "within the 5 s leeway");
        let strict = Verifier::from_config(&config(&["--jwt-secret", "k", "--jwt-leeway", "0s"]))
            .unwrap()
            .unwrap();
        assert!(strict.verify(&just_expired).is_err());
    }

    #[test]
    fn a_token_with_critical_extensions_is_refused() {
        let v = Verifier::from_config(&config(&["--jwt-secret", "k"]))
            .unwrap()
            .unwrap();
        let claims = json!({"sub": "1", "exp": now() + 60});
        let header = Header {
            crit: Some(vec!["exp-ext".into()]),
            ..Header::default()
        };
        let token = encode(&header, &claims, &EncodingKey::from_secret(b"k")).unwrap();
        let AuthError::Invalid(why) = v.verify(&token).unwrap_err() else {
            panic!("refused for the wrong reason")
        };
        assert!(why.contains("crit"), "{why}");
        assert!(v.verify(&hs256("k", claims)).is_ok());
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        let err =
            Verifier::from_config(&config(&["--jwt-secret", "k", "--jwt-algorithm", "RS256"]))
                .unwrap_err();
        assert!(matches!(err, KeyError::AlgorithmMismatch { .. }), "{err}");
    }
}
