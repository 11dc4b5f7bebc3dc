//! `GET /v2/<name>/tags/list`: a repository's tags, sorted, paginated with `n`, `last`, `Link`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::error::Result;
use crate::registry::Registry;

/// Most tags returned in one page.
const MAX_PAGE: usize = 10_000;

pub async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let repo = super::repo(&path)?;
    let (n, last, _) = super::pagination(&req, MAX_PAGE)?;
    let page = reg.list_tags(&repo, last.as_deref(), n)?;
    let mut res = HttpResponse::Ok();
    if page.more
        && n > 0
        && let Some(l) = page.items.last()
    {
        super::link_next(&mut res, &format!("/v2/{repo}/tags/list"), n, l);
    }
    Ok(res.json(json!({ "name": repo.as_str(), "tags": page.items })))
}
