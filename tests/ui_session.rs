//! Signing in to the web interface over HTTP and HTTPS, without a browser: the session cookie
//! is `HttpOnly`, `SameSite=Strict`, and `Secure` exactly under TLS; sign-in needs the form's
//! CSRF token, starts a new session id, and a wrong password gets no session; a signed-in user
//! sees only the repositories the rules let them pull.

mod auth_support;

use std::time::Duration;

use auth_support::{AuthServer, TestCa, auth_config, basic_of, push_image, pw};

fn client(ca: Option<&TestCa>) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none());
    let b = match ca {
        Some(ca) => {
            b.tls_certs_only([reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap()])
        }
        None => b,
    };
    b.build().unwrap()
}

fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_string()
}

/// `kura_ui=<id>` of a `Set-Cookie` value.
fn cookie_pair(set: &str) -> String {
    set.split(';').next().unwrap().to_string()
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn post_login(
    c: &reqwest::Client,
    base: &str,
    cookie: &str,
    csrf: Option<&str>,
    user: &str,
    pass: &str,
) -> reqwest::Response {
    let mut body = format!("user={}&password={}", enc(user), enc(pass));
    if let Some(t) = csrf {
        body.push_str(&format!("&csrf={t}"));
    }
    c.post(format!("{base}/ui/login"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The CSRF token in a page's form.
fn csrf_of(html: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).unwrap();
    re.captures(html).expect("a CSRF field")[1].to_string()
}

/// Signs `user` in; returns the session's `Cookie` value.
async fn sign_in(c: &reqwest::Client, base: &str, user: &str) -> String {
    let r = c.get(format!("{base}/ui/login")).send().await.unwrap();
    let anon = cookie_pair(&set_cookie(&r));
    let csrf = csrf_of(&r.text().await.unwrap());
    let r = post_login(c, base, &anon, Some(&csrf), user, pw(user)).await;
    assert_eq!(r.status(), 303);
    cookie_pair(&set_cookie(&r))
}

async fn sign_in_flow(base: &str, c: &reqwest::Client, tls: bool) {
    let r = c.get(format!("{base}/ui/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let set = set_cookie(&r);
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert_eq!(
        set.contains("; Secure"),
        tls,
        "Secure exactly under TLS: {set}"
    );
    let anon = cookie_pair(&set);
    let csrf = csrf_of(&r.text().await.unwrap());

    // Without the token, and with a wrong password: no session.
    let r = post_login(c, base, &anon, None, "alice", pw("alice")).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = post_login(c, base, &anon, Some(&csrf), "alice", "wrong").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    let r = post_login(c, base, &anon, Some(&csrf), "alice", pw("alice")).await;
    assert_eq!(r.status(), 303);
    let set = set_cookie(&r);
    assert_eq!(set.contains("; Secure"), tls, "{set}");
    let user = cookie_pair(&set);
    assert_ne!(user, anon, "signing in starts a new session id");
    let page = c
        .get(format!("{base}/ui/"))
        .header("Cookie", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Signed in as <strong>alice</strong>")
    );
    // The id from before signing in names no user.
    let page = c
        .get(format!("{base}/ui/"))
        .header("Cookie", &anon)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "anonymous visitors are sent to sign in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_session_cookie_is_secure_under_tls_and_sign_in_needs_the_csrf_token() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let https = AuthServer::start(&cfg, Some(ca.server_config(tmp.path()))).await;
    sign_in_flow(&https.base, &client(Some(&ca)), true).await;
    let http = AuthServer::start(&cfg, None).await;
    sign_in_flow(&http.base, &client(None), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_shows_a_user_only_the_repositories_they_may_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), "");
    let s = AuthServer::start(&cfg, None).await;
    let alice = basic_of("alice");
    push_image(&s.base, "team/app", "v1", &alice).await;
    let secret = push_image(&s.base, "other/secret", "v1", &alice).await;
    let c = client(None);
    let get = |cookie: String, path: String| {
        let c = c.clone();
        let url = format!("{}{path}", s.base);
        async move {
            let r = c.get(url).header("Cookie", cookie).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // carol pulls team/* only.
    let carol = sign_in(&c, &s.base, "carol").await;
    let (status, page) = get(carol.clone(), "/ui/".into()).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("team/app") && !page.contains("other/secret"),
        "{page}"
    );
    let (status, _) = get(carol.clone(), "/ui/repo?name=other/secret".into()).await;
    assert_eq!(status, 403);
    let m = format!("/ui/manifest?name=other/secret&ref={secret}");
    assert_eq!(get(carol.clone(), m.clone()).await.0, 403);
    // dave has no rule: an empty list, and no repository page.
    let dave = sign_in(&c, &s.base, "dave").await;
    let (status, page) = get(dave.clone(), "/ui/".into()).await;
    assert_eq!(status, 200);
    assert!(page.contains("No repositories"), "{page}");
    assert_eq!(get(dave, "/ui/repo?name=team/app".into()).await.0, 403);
    // alice sees both.
    let alice_ui = sign_in(&c, &s.base, "alice").await;
    let (_, page) = get(alice_ui.clone(), "/ui/".into()).await;
    assert!(page.contains("team/app") && page.contains("other/secret"));
    assert_eq!(get(alice_ui, m).await.0, 200);
}
