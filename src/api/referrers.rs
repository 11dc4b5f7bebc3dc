//! `GET /v2/<name>/referrers/<digest>`: an image index of the manifests whose subject is digest.
//!
//! Paginated like `tags/list` (`n`, `last`, `Link`): distribution spec v1.1.1, "Listing
//! Referrers": "A `Link` header MUST be included in the response when the descriptor list
//! cannot be returned in a single manifest." Each page is a complete image index.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::error::Result;
use crate::manifest::OCI_INDEX;
use crate::registry::Registry;

/// Most descriptors in one response.
pub const MAX_PAGE: usize = 1000;

pub async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let repo = super::repo(&path.0)?;
    let subject = super::digest(&path.1)?;
    let filter = super::query_param(&req, "artifactType")?.filter(|a| !a.is_empty());
    let (n, last, _) = super::pagination(&req, MAX_PAGE)?;
    let (manifests, more) =
        reg.referrers(&repo, &subject, filter.as_deref(), last.as_deref(), n)?;
    let mut res = HttpResponse::Ok();
    res.content_type(OCI_INDEX);
    if filter.is_some() {
        res.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    if more
        && n > 0
        && let Some(l) = manifests.last()
    {
        let mut next = format!(
            "/v2/{repo}/referrers/{subject}?n={n}&last={}",
            super::percent_encode(&l.digest)
        );
        if let Some(a) = &filter {
            next.push_str(&format!("&artifactType={}", super::percent_encode(a)));
        }
        res.insert_header(("Link", format!("<{next}>; rel=\"next\"")));
    }
    Ok(res.body(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))?))
}
