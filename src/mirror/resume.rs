//! An upstream blob body that survives a broken transfer: when the connection fails before
//! the announced length, the rest is asked for with `Range: bytes=<offset>-` (a `200`
//! instead of `206` is read from the start, skipping what was already passed on).

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{Route, metrics};
use crate::digest::Digest;

/// Resumptions tried before the transfer fails.
const MAX_RESUMES: u32 = 5;

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct State {
    route: Route,
    digest: Digest,
    body: Body,
    len: Option<u64>,
    /// Bytes passed on so far.
    offset: u64,
    /// Bytes still to drop from the current body (after a `200` to a resumption).
    skip: u64,
    resumes: u32,
}

/// The bytes of blob `digest` from `first` (a `GET` from offset 0), resumed as needed.
pub fn body(
    route: Route,
    digest: Digest,
    first: reqwest::Response,
    len: Option<u64>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let state = State {
        route,
        digest,
        body: Box::pin(first.bytes_stream()),
        len,
        offset: 0,
        skip: 0,
        resumes: 0,
    };
    futures_util::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        loop {
            let why = match st.body.next().await {
                Some(Ok(mut chunk)) => {
                    if st.skip > 0 {
                        let drop = st.skip.min(chunk.len() as u64);
                        st.skip -= drop;
                        chunk = chunk.slice(drop as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    st.offset += chunk.len() as u64;
                    metrics::upstream_bytes(&st.route.mirror.cfg.name, chunk.len() as u64);
                    return Some((Ok(chunk), Some(st)));
                }
                Some(Err(e)) => e.to_string(),
                None if st.len.is_none_or(|l| st.offset >= l) => return None,
                None => format!("the body ended at {} of {:?} bytes", st.offset, st.len),
            };
            if let Err(e) = reopen(&mut st, &why).await {
                return Some((Err(e), None));
            }
        }
    })
}

/// Asks for the rest of the blob after a failure described by `why`.
async fn reopen(st: &mut State, why: &str) -> std::io::Result<()> {
    loop {
        if st.resumes >= MAX_RESUMES {
            return Err(std::io::Error::other(format!(
                "upstream transfer of {} failed {} times; last: {why}",
                st.digest, st.resumes
            )));
        }
        st.resumes += 1;
        metrics::upstream_error(&st.route.mirror.cfg.name);
        tracing::info!(target: "kura::mirror", digest = %st.digest, offset = st.offset, error = %why, "resuming an upstream blob transfer");
        tokio::time::sleep(Duration::from_millis(200 << st.resumes.min(5))).await;
        let m = &st.route.mirror;
        match m
            .upstream
            .blob(&st.route.upstream_name, &st.digest, st.offset)
            .await
        {
            Ok(resp) => {
                let partial = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT
                    && starts_at(&resp, st.offset);
                st.skip = if partial { 0 } else { st.offset };
                st.body = Box::pin(resp.bytes_stream());
                return Ok(());
            }
            Err(_) => continue,
        }
    }
}

/// True when `resp`'s `Content-Range` starts at `offset`.
fn starts_at(resp: &reqwest::Response, offset: u64) -> bool {
    resp.headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|s| s.parse::<u64>().ok())
        == Some(offset)
}
