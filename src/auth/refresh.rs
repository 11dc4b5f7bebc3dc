//! Refresh tokens (the OAuth2 `refresh_token` grant, and `offline_token=true` of the token
//! flow): JWTs signed with kura's token key, for the audience `<service>#refresh` (so they are
//! never accepted as bearer tokens), naming the user, the client it was issued to and a fingerprint of the
//! user's htpasswd entry. They do not expire (Docker's token spec); one is honoured only while
//! the user is in the htpasswd file in force with the same password, so removing the user or
//! changing the password revokes it.

use std::time::SystemTime;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use super::Auth;
use super::token::TokenService;

#[derive(Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    jti: String,
    client_id: String,
    /// `Htpasswd::entry_fingerprint` of `sub` when issued.
    pwf: String,
}

fn audience(tokens: &TokenService) -> String {
    format!("{}#refresh", tokens.service)
}

/// Signs a refresh token for `user` (who must be in the htpasswd file) and `client_id`.
pub fn issue(auth: &Auth, user: &str, client_id: &str) -> Result<String, String> {
    let tokens = auth.tokens().ok_or("bearer tokens are not configured")?;
    let pwf = auth
        .user_fingerprint(user)
        .ok_or_else(|| format!("no user {user:?}"))?;
    let claims = RefreshClaims {
        iss: tokens.issuer.clone(),
        sub: user.to_string(),
        aud: audience(tokens),
        iat: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: client_id.to_string(),
        pwf,
    };
    let mut header = Header::new(tokens.signer.alg);
    header.kid = Some(tokens.signer.kid.clone());
    jsonwebtoken::encode(&header, &claims, &tokens.signer.key)
        .map_err(|e| format!("cannot sign refresh token: {e}"))
}

/// The user a refresh token was issued to, if it is kura's and its user still exists with the
/// same password. Any client may use it (`client_id` is only logged): clients share a
/// credential helper's keychain, so an identity token `docker login` got serves `kura` too.
pub fn verify(auth: &Auth, token: &str, client_id: &str) -> Result<String, &'static str> {
    let tokens = auth.tokens().ok_or("bearer tokens are not configured")?;
    let mut val = Validation::new(tokens.signer.alg);
    val.set_audience(&[audience(tokens)]);
    val.set_issuer(&[&tokens.issuer]);
    val.set_required_spec_claims(&["iss", "aud", "sub"]);
    val.validate_exp = false;
    let data = jsonwebtoken::decode::<RefreshClaims>(token, tokens.own_key(), &val)
        .map_err(|_| "the refresh token is not one this server issued")?;
    let c = data.claims;
    if c.client_id != client_id {
        tracing::debug!(issued_to = %c.client_id, used_by = %client_id, user = %c.sub, "refresh token used by another client");
    }
    match auth.user_fingerprint(&c.sub) {
        Some(f) if f == c.pwf => Ok(c.sub),
        Some(_) => Err("the password changed since the refresh token was issued"),
        None => Err("the refresh token's user no longer exists"),
    }
}
