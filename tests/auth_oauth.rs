//! The OAuth2 form of the token endpoint (`POST /auth/token`, Docker's "oauth.md"), scripted
//! as Docker's clients send it, against the real `kura serve`: a password grant's token pushes
//! and pulls, `access_type=offline` adds a refresh token, the refresh grant gives new tokens,
//! a refresh token is refused as a bearer token, after a password change and once its user is
//! removed (live reload);
//! bad grants get `400` with an OAuth2 error body.

mod auth_support;
mod common;

use auth_support::{basic, http, push_image, write_users};
use serde_json::Value;

const SERVICE: &str = "kura-test";

async fn form(base: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let body: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let r = http()
        .post(format!("{base}/auth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn pull_status(base: &str, auth: &str) -> u16 {
    http()
        .get(format!("{base}/v2/team/app/manifests/v1"))
        .header("Authorization", auth)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn bearer(answer: &Value) -> String {
    format!(
        "Bearer {}",
        answer["access_token"].as_str().expect("access_token")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_refresh_grants_issue_working_tokens_and_removed_users_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    write_users(&htpasswd, &[("admin", "admin-pw"), ("bob", "bob-pw")]);
    let auth_file = tmp.path().join("auth.toml");
    std::fs::write(
        &auth_file,
        format!(
            "htpasswd = {:?}\nmax_failed_logins = 1000\n\n[token]\nservice = {SERVICE:?}\n\n\
             [[rules]]\nusers = [\"admin\"]\nrepositories = [\"*\"]\nactions = [\"*\", \"admin\"]\n\n\
             [[rules]]\nusers = [\"bob\"]\nrepositories = [\"team/*\"]\nactions = [\"pull\", \"push\"]\n",
            htpasswd.display().to_string()
        ),
    )
    .unwrap();
    let (_kura, base) = common::spawn_kura_guarded(
        &tmp.path().join("root"),
        &["--auth-config", auth_file.to_str().unwrap()],
    );

    // Password grant, offline: an access token (which pushes and pulls) and a refresh token.
    let (status, answer) = form(
        &base,
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-pw"),
            ("service", SERVICE),
            ("client_id", "docker"),
            ("access_type", "offline"),
            ("scope", "repository:team/app:pull,push"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["scope"], "repository:team/app:pull,push", "{answer}");
    assert_eq!(answer["token"], answer["access_token"]);
    assert!(answer["expires_in"].as_u64().unwrap() > 0, "{answer}");
    assert!(answer["issued_at"].is_string(), "{answer}");
    let refresh = answer["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    push_image(&base, "team/app", "v1", &bearer(&answer)).await;
    assert_eq!(pull_status(&base, &bearer(&answer)).await, 200);

    // Without access_type=offline there is no refresh token.
    let (status, online) = form(
        &base,
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-pw"),
            ("service", SERVICE),
            ("client_id", "docker"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{online}");
    assert!(online.get("refresh_token").is_none(), "{online}");

    // The refresh grant: a new token for the scope asked now.
    let (status, renewed) = form(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", SERVICE),
            ("client_id", "docker"),
            ("scope", "repository:team/app:pull"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["scope"], "repository:team/app:pull", "{renewed}");
    assert_ne!(renewed["access_token"], answer["access_token"]);
    assert_eq!(pull_status(&base, &bearer(&renewed)).await, 200);

    // A refresh token is no bearer token; another client may use it (a shared keychain).
    assert_eq!(pull_status(&base, &format!("Bearer {refresh}")).await, 401);
    let (status, answer) = form(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", SERVICE),
            ("client_id", "another-client"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // The GET form gives a refresh token too, with `offline_token=true` (Docker's token spec).
    let got: Value = http()
        .get(format!(
            "{base}/auth/token?service={SERVICE}&client_id=docker&offline_token=true"
        ))
        .header("Authorization", basic("bob", "bob-pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let from_get = got["refresh_token"].as_str().expect("refresh_token of GET");
    let (status, answer) = form(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", from_get),
            ("service", SERVICE),
            ("client_id", "docker"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // Bad grants: OAuth2 errors.
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "wrong"),
                ("service", SERVICE),
                ("client_id", "docker"),
            ],
            "invalid_grant",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "not-a-token"),
                ("service", SERVICE),
                ("client_id", "docker"),
            ],
            "invalid_grant",
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("service", SERVICE),
                ("client_id", "docker"),
            ],
            "unsupported_grant_type",
        ),
        (
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "bob-pw"),
                ("service", SERVICE),
            ],
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "bob-pw"),
                ("service", SERVICE),
                ("client_id", "docker"),
                ("scope", "repository:team/app"),
            ],
            "invalid_scope",
        ),
    ];
    for (fields, want) in cases {
        let (status, err) = form(&base, fields).await;
        assert_eq!(status, 400, "{fields:?}: {err}");
        assert_eq!(err["error"], *want, "{fields:?}: {err}");
        assert!(err["error_description"].is_string(), "{err}");
    }

    // A new password revokes the refresh tokens issued before (checked against the htpasswd
    // in force, reloaded live).
    let reload = || async {
        let r = http()
            .post(format!("{base}/admin/reload"))
            .header("Authorization", basic("admin", "admin-pw"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    write_users(&htpasswd, &[("admin", "admin-pw"), ("bob", "bob-new-pw")]);
    reload().await;
    let refresh_grant = |token: String| {
        let base = base.clone();
        async move {
            form(
                &base,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("service", SERVICE),
                    ("client_id", "docker"),
                ],
            )
            .await
        }
    };
    let (status, err) = refresh_grant(refresh.clone()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );
    assert!(
        err["error_description"]
            .as_str()
            .unwrap()
            .contains("password changed"),
        "{err}"
    );
    let (status, answer) = form(
        &base,
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-new-pw"),
            ("service", SERVICE),
            ("client_id", "docker"),
            ("access_type", "offline"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let refresh = answer["refresh_token"].as_str().unwrap().to_string();
    let (status, answer) = refresh_grant(refresh.clone()).await;
    assert_eq!(status, 200, "{answer}");

    // Removing the user revokes the refresh token at once.
    write_users(&htpasswd, &[("admin", "admin-pw")]);
    reload().await;
    let (status, err) = refresh_grant(refresh).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "invalid_grant", "{err}");
    assert!(
        err["error_description"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{err}"
    );
}
