//! `GET /healthz` (the process answers) and `GET /readyz` (the store takes writes).

use std::io::Write;

use actix_web::{HttpResponse, web};

use crate::registry::Registry;

/// Liveness: 200 while the server answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Readiness: 200 when a file can be written and synced in the data directory and the
/// metadata store answers a read; 503 with the reason otherwise.
pub async fn readyz(reg: web::Data<Registry>) -> HttpResponse {
    let r = reg.get_ref().clone();
    let check = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let probe = r
            .store()
            .root()
            .join("uploads")
            .join(format!("readyz-{}", uuid::Uuid::new_v4()));
        let written = std::fs::File::create(&probe).and_then(|mut f| {
            f.write_all(b"ok")?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        written.map_err(|e| format!("data directory not writable: {e}"))?;
        r.meta()
            .schema_version()
            .map_err(|e| format!("metadata store: {e}"))?;
        Ok(())
    })
    .await;
    match check {
        Ok(Ok(())) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Ok(Err(why)) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("{why}\n")),
        Err(e) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("{e}\n")),
    }
}
