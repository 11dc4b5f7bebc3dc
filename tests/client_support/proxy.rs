//! A test double in front of a kura server: a minimal HTTP/1.1 proxy (one request per
//! connection, `Connection: close` both ways) that can serve TLS, demand basic or bearer
//! authentication (with a Docker-token-spec endpoint at `/token` that checks basic
//! credentials and grants the scopes asked for) or a fixed bearer token, and cut, hold or
//! corrupt blob downloads, or go down (close every connection unanswered). It stands in for a
//! registry that authenticates, or sits in front of one that does (`pass_authorization`).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;

/// What the proxy demands.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic {
        user: String,
        pass: String,
    },
    Bearer {
        user: String,
        pass: String,
    },
    /// Only this bearer token (a static token; no token endpoint).
    StaticBearer(String),
}

/// How the proxy behaves.
#[derive(Clone)]
pub struct Options {
    pub auth: Auth,
    pub tls: Option<Arc<ServerConfig>>,
    /// Where to listen (`127.0.0.1:0` by default).
    pub bind: String,
    /// Cut the first blob download after this many body bytes.
    pub cut_first_blob_get_after: Option<usize>,
    /// Flip the first byte of every blob download.
    pub corrupt_blob_gets: bool,
    /// Another server's base URL (`http://host:port`): blob downloads are answered with a 307
    /// to it, and upload session `Location`s point to it (as a registry handing off to an
    /// object store or a CDN would).
    pub hand_off_to: Option<String>,
    /// Forward the client's `Authorization` header (the server behind authenticates).
    pub pass_authorization: bool,
    /// Stop the first blob download after this many body bytes until `release()`.
    pub hold_first_blob_get_after: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth: Auth::None,
            tls: None,
            bind: "127.0.0.1:0".into(),
            cut_first_blob_get_after: None,
            corrupt_blob_gets: false,
            hand_off_to: None,
            pass_authorization: false,
            hold_first_blob_get_after: None,
        }
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub authorization: Option<String>,
    pub range: Option<String>,
    pub status: u16,
}

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub service: Option<String>,
    pub scopes: Vec<String>,
    pub user: Option<String>,
    pub granted: bool,
}

struct State {
    upstream: SocketAddr,
    opts: Options,
    base: String,
    seen: Mutex<Vec<Seen>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    tokens: Mutex<HashMap<String, BTreeSet<String>>>,
    counter: AtomicU64,
    cut_done: AtomicBool,
    hold_done: AtomicBool,
    corrupt: AtomicBool,
    down: AtomicBool,
    /// When non-zero, every registry request is answered with this status (not forwarded).
    answer: std::sync::atomic::AtomicU16,
    held: tokio::sync::watch::Sender<bool>,
    released: tokio::sync::watch::Sender<bool>,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    /// `host:port` as a client names it.
    pub host: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr, opts: Options) -> Proxy {
        let listener = TcpListener::bind(&opts.bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let state = Arc::new(State {
            upstream,
            base: format!("{scheme}://{addr}"),
            seen: Mutex::new(Vec::new()),
            token_requests: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            cut_done: AtomicBool::new(false),
            hold_done: AtomicBool::new(false),
            corrupt: AtomicBool::new(opts.corrupt_blob_gets),
            down: AtomicBool::new(false),
            answer: std::sync::atomic::AtomicU16::new(0),
            held: tokio::sync::watch::channel(false).0,
            released: tokio::sync::watch::channel(false).0,
            opts,
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                if st.down.load(Ordering::SeqCst) {
                    drop(sock);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    match st.opts.tls.clone() {
                        Some(cfg) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                            if let Ok(tls) = acceptor.accept(sock).await {
                                serve(tls, st).await;
                            }
                        }
                        None => serve(sock, st).await,
                    }
                });
            }
        });
        Proxy {
            addr,
            host: addr.to_string(),
            state,
            task,
        }
    }

    /// The requests seen so far (token requests excepted).
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The token requests seen so far.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.token_requests.lock().unwrap().clone()
    }

    /// Corrupts (flips the first byte of) blob downloads from now on, or stops doing so.
    pub fn set_corrupt(&self, on: bool) {
        self.state.corrupt.store(on, Ordering::SeqCst);
    }

    /// Goes down (every new connection is closed unanswered) or comes back.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Answers every registry request with `status` (e.g. 429, 503) from now on, or forwards
    /// them again (`None`).
    pub fn set_answer(&self, status: Option<u16>) {
        self.state
            .answer
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Waits (at most `limit`) until a download is held by `hold_first_blob_get_after`.
    pub async fn wait_held(&self, limit: std::time::Duration) {
        let mut rx = self.state.held.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|h| *h))
            .await
            .expect("a blob download reached the hold point in time")
            .unwrap();
    }

    /// Lets the held download go on.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(target: &str) -> Vec<(String, String)> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn items(scopes: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in scopes {
        if let Some((prefix, actions)) = s.rsplit_once(':') {
            for a in actions.split(',') {
                out.insert(format!("{prefix}:{a}"));
            }
        }
    }
    out
}

/// The scope a request needs (the challenge's), as the distribution registry words it.
fn required_scopes(method: &str, target: &str) -> Vec<String> {
    let path = target.split('?').next().unwrap_or("");
    if path == "/v2/" || path == "/v2" {
        return Vec::new();
    }
    if path == "/v2/_catalog" {
        return vec!["registry:catalog:*".into()];
    }
    let rest = path.trim_start_matches("/v2/");
    let name = ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
        .map_or(rest, |i| &rest[..i]);
    let actions = match method {
        "GET" | "HEAD" => "pull",
        "DELETE" => "delete",
        _ => "pull,push",
    };
    let mut out = vec![format!("repository:{name}:{actions}")];
    if let Some((_, from)) = query(target).into_iter().find(|(k, _)| k == "from") {
        out.push(format!("repository:{from}:pull"));
    }
    out
}

fn basic_user(auth: Option<&str>, user: &str, pass: &str) -> Result<String, Option<String>> {
    let Some(b64) = auth.and_then(|a| a.strip_prefix("Basic ")) else {
        return Err(None);
    };
    let decoded =
        String::from_utf8(BASE64.decode(b64.trim()).unwrap_or_default()).unwrap_or_default();
    let (u, p) = decoded.split_once(':').unwrap_or((&decoded, ""));
    if u == user && p == pass {
        Ok(u.to_string())
    } else {
        Err(Some(u.to_string()))
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let _ = s.shutdown().await;
}

/// Serves one request on `s`.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, st: Arc<State>) {
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let authorization = get("authorization");
    let length: u64 = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let early = buf[head_end..].to_vec();
    let remaining = length.saturating_sub(early.len() as u64);

    if target.starts_with("/token") {
        let (user, pass) = match &st.opts.auth {
            Auth::Bearer { user, pass } => (user.clone(), pass.clone()),
            _ => return respond(&mut s, 404, &[], b"").await,
        };
        let q = query(&target);
        let scopes: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect();
        let checked = basic_user(authorization.as_deref(), &user, &pass);
        st.token_requests.lock().unwrap().push(TokenRequest {
            service: q
                .iter()
                .find(|(k, _)| k == "service")
                .map(|(_, v)| v.clone()),
            scopes: scopes.clone(),
            user: match &checked {
                Ok(u) => Some(u.clone()),
                Err(u) => u.clone(),
            },
            granted: checked.is_ok(),
        });
        if checked.is_err() {
            return respond(&mut s, 401, &[], br#"{"details":"invalid credentials"}"#).await;
        }
        let token = format!("token-{}", st.counter.fetch_add(1, Ordering::SeqCst));
        st.tokens
            .lock()
            .unwrap()
            .insert(token.clone(), items(&scopes));
        let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
        return respond(
            &mut s,
            200,
            &[("Content-Type", "application/json".into())],
            body.as_bytes(),
        )
        .await;
    }

    let need = required_scopes(&method, &target);
    let challenge = match &st.opts.auth {
        Auth::None => None,
        Auth::StaticBearer(token) => (authorization.as_deref() != Some(&format!("Bearer {token}")))
            .then(|| r#"Bearer realm="kura-test""#.to_string()),
        Auth::Basic { user, pass } => basic_user(authorization.as_deref(), user, pass)
            .is_err()
            .then(|| r#"Basic realm="kura-test""#.to_string()),
        Auth::Bearer { .. } => {
            let ok = authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .and_then(|t| st.tokens.lock().unwrap().get(t).cloned())
                .is_some_and(|granted| granted.is_superset(&items(&need)));
            (!ok).then(|| {
                let mut c = format!(r#"Bearer realm="{}/token",service="kura-test""#, st.base);
                if !need.is_empty() {
                    c.push_str(&format!(r#",scope="{}""#, need.join(" ")));
                }
                c
            })
        }
    };
    let mut seen = Seen {
        method: method.clone(),
        target: target.clone(),
        authorization: authorization.clone(),
        range: get("range"),
        status: 0,
    };
    if let Some(c) = challenge {
        // Read the body first, so the client reads our answer rather than a reset.
        let _ = tokio::io::copy(&mut (&mut s).take(remaining), &mut tokio::io::sink()).await;
        seen.status = 401;
        st.seen.lock().unwrap().push(seen);
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        return respond(&mut s, 401, &[("WWW-Authenticate", c)], body).await;
    }

    let forced = st.answer.load(Ordering::SeqCst);
    if forced != 0 {
        let _ = tokio::io::copy(&mut (&mut s).take(remaining), &mut tokio::io::sink()).await;
        seen.status = forced;
        st.seen.lock().unwrap().push(seen);
        let body =
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"forced by the test proxy"}]}"#;
        return respond(&mut s, forced, &[("Retry-After", "1".into())], body).await;
    }
    let blob_get = method == "GET" && target.contains("/blobs/") && !target.contains("/uploads/");
    if let Some(other) = st.opts.hand_off_to.as_ref().filter(|_| blob_get) {
        seen.status = 307;
        st.seen.lock().unwrap().push(seen);
        let to = format!("{other}{target}");
        return respond(&mut s, 307, &[("Location", to)], b"").await;
    }

    let Ok(mut up) = TcpStream::connect(st.upstream).await else {
        return respond(&mut s, 502, &[], b"").await;
    };
    let mut fwd = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in &headers {
        let auth_header = k == "authorization" && !st.opts.pass_authorization;
        if !auth_header && !["connection", "keep-alive"].contains(&k.as_str()) {
            fwd.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    fwd.push_str("Connection: close\r\n");
    if st.opts.tls.is_some() {
        fwd.push_str("X-Forwarded-Proto: https\r\n");
    }
    fwd.push_str("\r\n");
    if up.write_all(fwd.as_bytes()).await.is_err() || up.write_all(&early).await.is_err() {
        return;
    }
    if tokio::io::copy(&mut (&mut s).take(remaining), &mut up)
        .await
        .is_err()
    {
        return;
    }

    // The response: head, then the body (possibly cut or corrupted).
    let mut rbuf = Vec::new();
    let mut rhead_end = loop {
        if let Some(p) = find(&rbuf, b"\r\n\r\n") {
            break p + 4;
        }
        match up.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => rbuf.extend_from_slice(&tmp[..n]),
        }
    };
    seen.status = String::from_utf8_lossy(&rbuf[..rhead_end])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    st.seen.lock().unwrap().push(seen.clone());
    if let Some(other) = &st.opts.hand_off_to {
        let head = String::from_utf8_lossy(&rbuf[..rhead_end]).into_owned();
        let moved: Vec<String> = head
            .split("\r\n")
            .map(|l| match l.split_once(':') {
                Some((k, v)) if k.eq_ignore_ascii_case("location") => {
                    format!("Location: {}", v.trim().replace(&st.base, other))
                }
                _ => l.to_string(),
            })
            .collect();
        let mut out = moved.join("\r\n").into_bytes();
        out.extend_from_slice(&rbuf[rhead_end..]);
        let delta = out.len() as i64 - rbuf.len() as i64;
        rbuf = out;
        rhead_end = (rhead_end as i64 + delta) as usize;
    }
    let length = String::from_utf8_lossy(&rbuf[..rhead_end])
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let cut = blob_get
        && seen.status == 200
        && st
            .opts
            .cut_first_blob_get_after
            .is_some_and(|n| length > n as u64)
        && !st.cut_done.swap(true, Ordering::SeqCst);
    let limit = if cut {
        st.opts.cut_first_blob_get_after.unwrap() as u64
    } else {
        u64::MAX
    };
    let corrupt =
        blob_get && st.corrupt.load(Ordering::SeqCst) && (seen.status == 200 || seen.status == 206);
    let mut hold_at = st
        .opts
        .hold_first_blob_get_after
        .filter(|n| blob_get && seen.status == 200 && length > *n as u64)
        .filter(|_| !st.hold_done.swap(true, Ordering::SeqCst))
        .map(|n| n as u64);
    if s.write_all(&rbuf[..rhead_end]).await.is_err() {
        return;
    }
    let mut body = rbuf[rhead_end..].to_vec();
    let mut sent = 0u64;
    let mut first_byte = true;
    loop {
        let mut off = 0;
        while off < body.len() {
            if corrupt && first_byte {
                body[off] ^= 0xff;
            }
            first_byte = false;
            let stop = hold_at.map_or(limit, |h| h.min(limit));
            let n = ((body.len() - off) as u64).min(stop - sent) as usize;
            if s.write_all(&body[off..off + n]).await.is_err() {
                return;
            }
            sent += n as u64;
            off += n;
            if sent >= limit {
                let _ = s.flush().await;
                // Drop both connections mid-body.
                return;
            }
            if hold_at == Some(sent) {
                // Stall mid-body (the server behind may be killed meanwhile), then go on.
                let _ = s.flush().await;
                hold_at = None;
                st.held.send_replace(true);
                let _ = st.released.subscribe().wait_for(|r| *r).await;
            }
        }
        match up.read(&mut tmp).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body = tmp[..n].to_vec(),
        }
    }
    let _ = s.shutdown().await;
}

/// A CA and a server certificate for `ip` signed by it: (CA PEM, server TLS config).
pub fn tls_for(ip: &str) -> (String, Arc<ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kura test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![ip.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, ip);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

/// This machine's address on its default route (not loopback), for a server the client must
/// reach over HTTPS.
pub fn non_loopback_ip() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("198.51.100.1:9")
        .or_else(|_| s.connect("10.255.255.1:9"))
        .expect("a route off this machine (no packet is sent)");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}
