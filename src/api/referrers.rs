//! `GET /v2/<name>/referrers/<digest>`: an image index of the manifests whose subject is digest.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::error::Result;
use crate::manifest::OCI_INDEX;
use crate::registry::Registry;

pub async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let repo = super::repo(&path.0)?;
    let subject = super::digest(&path.1)?;
    let filter = super::query_param(&req, "artifactType")?.filter(|a| !a.is_empty());
    let manifests = reg.referrers(&repo, &subject, filter.as_deref())?;
    let mut res = HttpResponse::Ok();
    res.content_type(OCI_INDEX);
    if filter.is_some() {
        res.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    Ok(res.body(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))?))
}
