//! The browsing pages: repositories, a repository, a manifest. Thin: parse the query, check
//! access, gather with `data`/`detail` on the blocking pool, render.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::access::Viewer;
use super::format::{bounded, q, short_digest, size, time};
use super::views::{
    self, DescView, ManifestPage, Nav, RefGroup, RepoPage, RepoView, ReposPage, TagView,
};
use super::{UiState, data, detail};
use crate::auth::rules::Actions;
use crate::names::RepoName;
use crate::registry::Registry;

/// Rows per page.
pub const PAGE: usize = 50;

#[derive(Deserialize)]
pub struct ReposQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    prefix: String,
    last: Option<String>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> crate::error::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::Error::internal("ui task", e))?
}

fn failed(v: &Viewer, e: crate::error::Error) -> HttpResponse {
    tracing::error!(error = %e, "ui page");
    views::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        v,
        "Error",
        &e.to_string(),
    )
}

/// `GET /ui/`.
pub async fn repositories(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
    query: web::Query<ReposQuery>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    if !v.may_list() {
        return views::refused(&v);
    }
    let ReposQuery {
        q: contains,
        prefix,
        last,
    } = query.into_inner();
    let filter = v.catalog();
    let visible = filter.as_ref().and_then(|f| f.prefixes());
    let (r, c, p, l) = (
        reg.get_ref().clone(),
        contains.clone(),
        prefix.clone(),
        last,
    );
    let page = blocking(move || {
        let q = data::RepoQuery {
            prefix: &p,
            contains: &c,
            last: l.as_deref(),
            n: PAGE,
            visible,
        };
        data::repositories(&r, &q, &|name| {
            filter.as_ref().is_none_or(|f| f.allows(name))
        })
    })
    .await;
    let page = match page {
        Ok(p) => p,
        Err(e) => return failed(&v, e),
    };
    let rows = page
        .rows
        .into_iter()
        .map(|r| RepoView {
            href: format!("/ui/repo?name={}", q(&r.name)),
            tags: bounded(r.tags.value, r.tags.more),
            last_push: time(r.last_push),
            size: format!(
                "{}{}",
                size(r.size.value),
                if r.size.more { "+" } else { "" }
            ),
            name: r.name,
        })
        .collect();
    let next_href = page.next.map(|n| {
        format!(
            "/ui/?prefix={}&q={}&last={}",
            q(&prefix),
            q(&contains),
            q(&n)
        )
    });
    views::html(
        StatusCode::OK,
        &ReposPage {
            nav: Nav::of(&v),
            q: contains,
            prefix,
            rows,
            next_href,
        },
    )
}

#[derive(Deserialize)]
pub struct RepoQuery {
    name: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: String,
    last: Option<String>,
}

/// `GET /ui/repo?name=`.
pub async fn repository(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
    query: web::Query<RepoQuery>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    let RepoQuery {
        name,
        q: contains,
        sort,
        last,
    } = query.into_inner();
    if !v.may(&name, Actions::PULL) {
        return views::refused(&v);
    }
    let may_delete = v.may(&name, Actions::DELETE) && crate::api::Deletes::allowed(&req);
    let (r, n, c) = (reg.get_ref().clone(), name.clone(), contains.clone());
    let page = blocking(move || {
        let Some(page) = data::tags(&r, &n, &c, last.as_deref(), PAGE)? else {
            return Ok(None);
        };
        let rows: Vec<_> = page
            .rows
            .into_iter()
            .map(|t| {
                let plats = t
                    .record
                    .as_ref()
                    .map(|rec| detail::platforms(&r, &t.digest, rec))
                    .unwrap_or_default();
                (t, plats)
            })
            .collect();
        Ok(Some((rows, page.next)))
    })
    .await;
    let (mut rows, next) = match page {
        Ok(Some(p)) => p,
        Ok(None) => {
            return views::message(
                StatusCode::NOT_FOUND,
                &v,
                "Not found",
                "No such repository.",
            );
        }
        Err(e) => return failed(&v, e),
    };
    match sort.as_str() {
        "newest" => {
            rows.sort_by_key(|(t, _)| std::cmp::Reverse(t.record.as_ref().map_or(0, |r| r.created)))
        }
        "size" => rows.sort_by_key(|(t, _)| std::cmp::Reverse(t.size)),
        _ => {}
    }
    let name_q = q(&name);
    let rows = rows
        .into_iter()
        .map(|(t, plats)| TagView {
            href: format!("/ui/manifest?name={name_q}&ref={}", q(&t.digest)),
            short: short_digest(&t.digest),
            pushed: time(t.record.as_ref().map_or(0, |r| r.created)),
            size: size(t.size),
            platforms: plats.join(", "),
            media_type: t
                .record
                .as_ref()
                .map(|r| r.media_type.clone())
                .unwrap_or_default(),
            delete_href: may_delete
                .then(|| format!("/ui/delete-tag?name={name_q}&tag={}", q(&t.tag))),
            tag: t.tag,
            digest: t.digest,
        })
        .collect();
    let next_href = next.map(|l| {
        format!(
            "/ui/repo?name={name_q}&q={}&sort={}&last={}",
            q(&contains),
            q(&sort),
            q(&l)
        )
    });
    let host = req.connection_info().host().to_string();
    views::html(
        StatusCode::OK,
        &RepoPage {
            nav: Nav::of(&v),
            pull_prefix: format!("{host}/{name}"),
            name,
            q: contains,
            sort: if sort.is_empty() { "name".into() } else { sort },
            rows,
            next_href,
        },
    )
}

#[derive(Deserialize)]
pub struct ManifestQuery {
    name: String,
    #[serde(rename = "ref")]
    reference: String,
}

fn desc_view(name_q: &str, d: &detail::Desc, link: bool) -> DescView {
    DescView {
        href: link.then(|| format!("/ui/manifest?name={name_q}&ref={}", q(&d.digest))),
        short: short_digest(&d.digest),
        size: size(d.size),
        bytes: d.size,
        media_type: d.media_type.clone(),
        platform: d.platform.clone(),
        digest: d.digest.clone(),
    }
}

/// `GET /ui/manifest?name=&ref=` (a tag or a digest).
pub async fn manifest(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
    query: web::Query<ManifestQuery>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    let ManifestQuery { name, reference } = query.into_inner();
    if !v.may(&name, Actions::PULL) {
        return views::refused(&v);
    }
    let Ok(repo) = RepoName::parse(&name) else {
        return views::message(
            StatusCode::BAD_REQUEST,
            &v,
            "Bad name",
            "Not a repository name.",
        );
    };
    let r = reg.get_ref().clone();
    let found = blocking(move || {
        let Some(digest) = detail::resolve(&r, repo.as_str(), &reference)? else {
            return Ok(None);
        };
        detail::manifest(&r, &repo, &digest)
    })
    .await;
    let d = match found {
        Ok(Some(d)) => d,
        Ok(None) => {
            return views::message(StatusCode::NOT_FOUND, &v, "Not found", "No such manifest.");
        }
        Err(e) => return failed(&v, e),
    };
    let name_q = q(&name);
    let may_delete = v.may(&name, Actions::DELETE) && crate::api::Deletes::allowed(&req);
    let info = d.config_info.clone().unwrap_or_default();
    let layers: Vec<DescView> = d
        .layers
        .iter()
        .map(|l| desc_view(&name_q, l, false))
        .collect();
    let total = d.size
        + d.config.as_ref().map_or(0, |c| c.size)
        + d.layers.iter().map(|l| l.size).sum::<u64>();
    let host = req.connection_info().host().to_string();
    let page = ManifestPage {
        nav: Nav::of(&v),
        pull: format!("podman pull {host}/{name}@{}", d.digest),
        delete_href: may_delete
            .then(|| format!("/ui/delete-manifest?name={name_q}&digest={}", q(&d.digest))),
        subject_href: d
            .subject
            .as_ref()
            .map(|s| format!("/ui/manifest?name={name_q}&ref={}", q(s))),
        media_type: d.media_type.clone(),
        size: size(d.size),
        artifact_type: d.artifact_type.clone().unwrap_or_default(),
        is_index: d.is_index,
        config: d.config.as_ref().map(|c| desc_view(&name_q, c, false)),
        platform: info.platform,
        env: info.env,
        entrypoint: info.entrypoint,
        cmd: info.cmd,
        labels: info.labels,
        history: info.history,
        layers,
        total: size(total),
        children: d
            .children
            .iter()
            .map(|c| desc_view(&name_q, c, true))
            .collect(),
        annotations: d.annotations.clone(),
        referrers: d
            .referrers
            .iter()
            .map(|(t, items)| RefGroup {
                artifact_type: t.clone(),
                items: items
                    .iter()
                    .map(|r| {
                        let dd = detail::Desc {
                            digest: r.digest.clone(),
                            media_type: r.media_type.clone(),
                            size: r.size,
                            platform: String::new(),
                        };
                        desc_view(&name_q, &dd, true)
                    })
                    .collect(),
            })
            .collect(),
        referrers_more: d.referrers_more,
        raw: d.raw.clone(),
        digest: d.digest,
        name,
        name_q,
    };
    views::html(StatusCode::OK, &page)
}
