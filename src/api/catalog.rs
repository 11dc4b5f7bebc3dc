//! `GET /v2/_catalog`: repository listing from the `repositories` table.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::error::Result;
use crate::registry::Registry;

/// Most repositories returned in one page.
const MAX_PAGE: usize = 1000;

pub async fn get(req: HttpRequest, reg: web::Data<Registry>) -> Result<HttpResponse> {
    let (n, last, _) = super::pagination(&req, MAX_PAGE)?;
    let page = reg.catalog(last.as_deref(), n)?;
    let mut res = HttpResponse::Ok();
    if page.more && n > 0 {
        if let Some(l) = page.items.last() {
            super::link_next(&mut res, "/v2/_catalog", n, l);
        }
    }
    Ok(res.json(json!({ "repositories": page.items })))
}
