//! `GET /v2/_catalog`: repository listing from the `repositories` table.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::auth::CatalogFilter;
use crate::error::Result;
use crate::registry::Page;
use crate::registry::Registry;

/// Most repositories returned in one page.
const MAX_PAGE: usize = 1000;

pub async fn get(req: HttpRequest, reg: web::Data<Registry>) -> Result<HttpResponse> {
    let (n, last, _) = super::pagination(&req, MAX_PAGE)?;
    let filter = req.extensions().get::<CatalogFilter>().cloned();
    let page = match filter {
        None => reg.catalog(last.as_deref(), n)?,
        Some(f) => filtered(&reg, last, n, &f)?,
    };
    let mut res = HttpResponse::Ok();
    if page.more
        && n > 0
        && let Some(l) = page.items.last()
    {
        super::link_next(&mut res, "/v2/_catalog", n, l);
    }
    Ok(res.json(json!({ "repositories": page.items })))
}

/// A page of the repositories `filter` lets the caller see (authentication on): only the
/// names under the literal prefixes of the caller's pull grants are read; a caller whose
/// grants no prefix narrows (`*` patterns, anonymous pull) walks the whole table.
fn filtered(
    reg: &Registry,
    mut last: Option<String>,
    n: usize,
    filter: &CatalogFilter,
) -> Result<Page> {
    if let Some(prefixes) = filter.prefixes() {
        return reg.catalog_within(&prefixes, last.as_deref(), n, |name| filter.allows(name));
    }
    let mut items = Vec::new();
    loop {
        let page = reg.catalog(last.as_deref(), MAX_PAGE)?;
        last = page.items.last().cloned();
        for name in page.items {
            if filter.allows(&name) {
                if items.len() == n {
                    return Ok(Page { items, more: true });
                }
                items.push(name);
            }
        }
        if !page.more {
            return Ok(Page { items, more: false });
        }
    }
}
