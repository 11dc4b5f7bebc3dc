//! Power loss, not just a crash: `kill -9` keeps the page cache, so it cannot catch a missing
//! fsync. Here the real `kura` binary runs with its `--root` on a FUSE filesystem
//! (`powerfail/`) that keeps everything not made durable (file data, and directory entries
//! whose directory was not fsynced) in a volatile layer and drops it on a "power cut". After
//! each cut (kill -9, drop the volatile state, unmount, mount the durable state) `kura fsck`
//! must find the store clean, every acknowledged push must be served byte for byte, every
//! acknowledged delete must stay deleted, and every acknowledged write's webhook event must
//! still be delivered. Needs root and `/dev/fuse` (as CI has).

mod common;
mod powerfail;

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use common::{
    KillOnDrop, client, image_manifest, kura_cmd, short_online_grace_env, spawn_kura_guarded,
    spawn_kura_guarded_env,
};
use kura::digest::Digest;
use powerfail::{Mounted, Tree};
use serde_json::Value;

/// Mounts `tree` at `at`, or fails with what the test needs.
fn mount(tree: Tree, at: &Path) -> Mounted {
    Mounted::mount(tree, at).unwrap_or_else(|e| {
        panic!("mounting the FUSE test filesystem at {at:?} failed ({e}); needs root and /dev/fuse")
    })
}

fn fsync(path: &Path) {
    std::fs::File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn power_cut_drops_file_data_and_directory_entries_not_made_durable() {
    let mnt = tempfile::tempdir().unwrap();
    let m = mount(Tree::default(), mnt.path());
    let p = |n: &str| mnt.path().join(n);
    std::fs::create_dir(p("d")).unwrap();
    fsync(mnt.path());
    let write = |n: &str, data: &[u8], sync: bool| {
        use std::io::Write;
        let mut f = std::fs::File::create(p(n)).unwrap();
        f.write_all(data).unwrap();
        if sync {
            f.sync_all().unwrap();
        }
    };
    write("d/durable", b"c", true);
    write("d/renamed-late", b"e", true);
    write("d/removed-late", b"g", true);
    write("d/entry-only", b"h", false);
    write("d/overwritten", b"old", true);
    fsync(&p("d"));
    // After the directory sync: new files (one with its data synced), a rename, an unlink
    // and an overwrite, none made durable.
    write("d/unsynced", b"a", false);
    write("d/file-synced-only", b"b", true);
    std::fs::rename(p("d/renamed-late"), p("d/renamed-new")).unwrap();
    std::fs::remove_file(p("d/removed-late")).unwrap();
    write("d/overwritten", b"new contents", false);
    assert_eq!(std::fs::read(p("d/overwritten")).unwrap(), b"new contents");
    let durable = m.power_cut();
    let _m = mount(durable, mnt.path());
    let names: Vec<String> = std::fs::read_dir(p("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        [
            "durable",
            "entry-only",
            "overwritten",
            "removed-late",
            "renamed-late"
        ]
    );
    assert_eq!(std::fs::read(p("d/durable")).unwrap(), b"c");
    assert_eq!(std::fs::read(p("d/removed-late")).unwrap(), b"g");
    assert_eq!(std::fs::read(p("d/renamed-late")).unwrap(), b"e");
    // The entry was made durable by the directory sync, the data never was.
    assert_eq!(std::fs::read(p("d/entry-only")).unwrap(), b"");
    assert_eq!(std::fs::read(p("d/overwritten")).unwrap(), b"old");
}

/// An image push: (repository, tag, manifest, [(digest, bytes)] of config and layer).
#[derive(Clone)]
struct Image {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<(Digest, Vec<u8>)>,
}

impl Image {
    fn new(repo: &str, tag: &str, seed: u64, layer_len: usize) -> Image {
        let layer: Vec<u8> = (0..layer_len)
            .map(|i| ((i as u64).wrapping_mul(seed | 1) >> 3) as u8)
            .collect();
        let config = format!("{{\"seed\":{seed}}}").into_bytes();
        let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
        let manifest = image_manifest(
            &(cd.clone(), config.len()),
            &[(ld.clone(), layer.len())],
            serde_json::json!({}),
        );
        Image {
            repo: repo.into(),
            tag: tag.into(),
            manifest,
            blobs: vec![(cd, config), (ld, layer)],
        }
    }

    fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }
}

type Key = (String, String, String);

fn key(action: &str, repo: &str, what: &str) -> Key {
    (action.into(), repo.into(), what.into())
}

/// The server gave no answer (the power cut): the only excuse for an operation not done.
#[derive(Debug)]
struct Cut;

fn cut(_: reqwest::Error) -> Cut {
    Cut
}

/// Pushes `img` (config in one POST, layer in a session: POST, PATCH, PUT); every answer must
/// be the expected one. Returns the events the pushes must have queued.
async fn push(base: &str, img: &Image) -> Result<Vec<Key>, Cut> {
    let c = client();
    let (cd, config) = &img.blobs[0];
    let r = c
        .post(format!("{base}/v2/{}/blobs/uploads/?digest={cd}", img.repo))
        .body(config.clone())
        .send()
        .await
        .map_err(cut)?;
    assert_eq!(r.status(), 201, "config of {}", img.tag);
    let (ld, layer) = &img.blobs[1];
    let r = c
        .post(format!("{base}/v2/{}/blobs/uploads/", img.repo))
        .send()
        .await
        .map_err(cut)?;
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let half = layer.len() / 2;
    let r = c
        .patch(&loc)
        .header("Content-Range", format!("0-{}", half - 1))
        .body(layer[..half].to_vec())
        .send()
        .await
        .map_err(cut)?;
    assert_eq!(r.status(), 202);
    let r = c
        .put(format!("{loc}?digest={ld}"))
        .body(layer[half..].to_vec())
        .send()
        .await
        .map_err(cut)?;
    assert_eq!(r.status(), 201, "layer of {}", img.tag);
    let r = c
        .put(format!("{base}/v2/{}/manifests/{}", img.repo, img.tag))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(img.manifest.clone())
        .send()
        .await
        .map_err(cut)?;
    assert_eq!(r.status(), 201, "manifest of {}", img.tag);
    Ok(push_events(img))
}

/// The events pushing `img` queues.
fn push_events(img: &Image) -> Vec<Key> {
    vec![
        key("push", &img.repo, &img.blobs[0].0.to_string()),
        key("push", &img.repo, &img.blobs[1].0.to_string()),
        key("push", &img.repo, &img.digest().to_string()),
    ]
}

/// Deletes manifest `img` by digest.
async fn delete(base: &str, img: &Image) -> Result<Key, Cut> {
    let r = client()
        .delete(format!("{base}/v2/{}/manifests/{}", img.repo, img.digest()))
        .send()
        .await
        .map_err(cut)?;
    assert_eq!(r.status(), 202, "delete {}:{}", img.repo, img.tag);
    Ok(key("delete", &img.repo, &img.digest().to_string()))
}

/// What the load of the last cycle did: acknowledged pushes and deletes, events of
/// acknowledged writes, and operations the cut may have interrupted.
#[derive(Default)]
struct Load {
    kept: Vec<Image>,
    deleted: Vec<Image>,
    events: Vec<Key>,
    cut: Vec<Image>,
}

/// A worker: pushes images (deleting every other one again) until the power goes.
async fn load_worker(base: String, worker: u64, load: Arc<Mutex<Load>>) {
    for i in 0..1000u64 {
        let img = Image::new(
            &format!("power/load{worker}"),
            &format!("t{i}"),
            1000 + worker * 1000 + i,
            500 + 20_000 * (i as usize % 5),
        );
        let Ok(ev) = push(&base, &img).await else {
            load.lock().unwrap().cut.push(img);
            return;
        };
        load.lock().unwrap().events.extend(ev);
        if i % 2 == 1 {
            match delete(&base, &img).await {
                Ok(ev) => {
                    let mut l = load.lock().unwrap();
                    l.events.push(ev);
                    l.deleted.push(img);
                }
                Err(Cut) => {
                    load.lock().unwrap().cut.push(img);
                    return;
                }
            }
        } else {
            load.lock().unwrap().kept.push(img);
        }
    }
}

/// An image the cut interrupted is absent or whole, never half there.
async fn verify_absent_or_whole(base: &str, img: &Image) {
    let c = client();
    let r = c
        .get(format!("{base}/v2/{}/manifests/{}", img.repo, img.digest()))
        .send()
        .await
        .unwrap();
    match r.status().as_u16() {
        404 => {}
        200 => assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice()),
        s => panic!("{}:{} cut by the power loss answers {s}", img.repo, img.tag),
    }
    for (d, data) in &img.blobs {
        let r = c
            .get(format!("{base}/v2/{}/blobs/{d}", img.repo))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            404 => {}
            200 => assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice()),
            s => panic!("blob {d} cut by the power loss answers {s}"),
        }
    }
}

async fn expect_status(r: reqwest::RequestBuilder, status: u16, what: &str) {
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), status, "{what}");
}

/// Every kept image is served byte for byte; every deleted one is gone.
async fn verify(base: &str, kept: &[Image], deleted: &[Image]) {
    let c = client();
    for img in kept {
        let r = c
            .get(format!("{base}/v2/{}/manifests/{}", img.repo, img.tag))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "acknowledged {}:{} lost",
            img.repo,
            img.tag
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
        for (d, data) in &img.blobs {
            let r = c
                .get(format!("{base}/v2/{}/blobs/{d}", img.repo))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "blob {d} of {}:{}", img.repo, img.tag);
            assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
        }
    }
    for img in deleted {
        let r = c
            .get(format!("{base}/v2/{}/manifests/{}", img.repo, img.digest()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "deleted {}:{} is back", img.repo, img.tag);
    }
}

/// kill -9, drop everything not durable, remount what is; `kura fsck` must be clean.
fn power_cut(kura: &mut KillOnDrop, m: Mounted, mnt: &Path, store: &Path) -> Mounted {
    kura.kill();
    let durable = m.power_cut();
    let m = mount(durable, mnt);
    let (ok, out, err) = kura_cmd(&["fsck", "--root", store.to_str().unwrap(), "--quiet"]);
    assert!(ok, "kura fsck after the power cut:\n{out}\n{err}");
    m
}

fn webhook_config(dir: &Path, port: u16) -> String {
    let f = dir.join("kura.toml");
    std::fs::write(
        &f,
        format!(
            "[[notifications.endpoints]]\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/events\"\n\
             backoff = \"100ms\"\nmax_backoff = \"300ms\"\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    f.to_str().unwrap().to_string()
}

/// A webhook receiver recording every event.
fn receiver(listener: TcpListener) -> (Arc<Mutex<Vec<Value>>>, actix_web::dev::ServerHandle) {
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let ev = events.clone();
    let server = HttpServer::new(move || {
        let ev = ev.clone();
        App::new().route(
            "/events",
            web::post().to(move |body: web::Bytes| {
                let ev = ev.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    ev.lock()
                        .unwrap()
                        .extend(v["events"].as_array().unwrap().iter().cloned());
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (events, handle)
}

fn event_key(e: &Value) -> Key {
    let t = &e["target"];
    let what = t["tag"]
        .as_str()
        .filter(|_| e["action"] == "delete")
        .or(t["digest"].as_str())
        .unwrap_or_default();
    key(
        e["action"].as_str().unwrap_or_default(),
        t["repository"].as_str().unwrap_or_default(),
        what,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_keeps_every_acknowledged_push_delete_and_event() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut m = mount(Tree::default(), &mnt);
    // The data directory exists (and is durable) before kura starts, as an operator's would.
    let store = mnt.join("store");
    std::fs::create_dir(&store).unwrap();
    fsync(&mnt);
    // The receiver is down until the end: every event must wait in the store.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = webhook_config(dir.path(), port);
    let flags = ["--config", &cfg, "--gc-interval", "0s"];
    let (mut kept, mut deleted, mut events) = (Vec::new(), Vec::new(), Vec::new());
    let mut sessions: Vec<String> = Vec::new();
    let c = client();
    for cycle in 0..2u64 {
        let (mut kura, base) = spawn_kura_guarded(&store, &flags);
        verify(&base, &kept, &deleted).await;
        // Three images (a layer over 64 KiB goes through an upload file), one deleted by
        // digest, a layer mounted into another repository and that link deleted again.
        let imgs: Vec<Image> = (0..3)
            .map(|i| {
                Image::new(
                    &format!("power/c{cycle}"),
                    &format!("v{i}"),
                    cycle * 10 + i,
                    1000 + 50_000 * i as usize,
                )
            })
            .collect();
        for img in &imgs {
            events.extend(push(&base, img).await.expect("server up"));
        }
        // An upload session with an acknowledged PATCH, open at the cut.
        let r = c
            .post(format!("{base}/v2/power/c{cycle}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        expect_status(
            c.patch(&loc)
                .header("Content-Range", "0-9999")
                .body(vec![5u8; 10_000]),
            202,
            "patch of an open session",
        )
        .await;
        sessions.push(loc.trim_start_matches(&base).to_string());
        let gone = imgs[0].clone();
        expect_status(
            c.delete(format!(
                "{base}/v2/{}/manifests/{}",
                gone.repo,
                gone.digest()
            )),
            202,
            "delete manifest",
        )
        .await;
        events.push(key("delete", &gone.repo, &gone.digest().to_string()));
        let (ld, _) = &imgs[2].blobs[1];
        let other = format!("power/m{cycle}");
        expect_status(
            c.post(format!(
                "{base}/v2/{other}/blobs/uploads/?mount={ld}&from={}",
                imgs[2].repo
            )),
            201,
            "mount",
        )
        .await;
        events.push(key("mount", &other, &ld.to_string()));
        expect_status(
            c.delete(format!("{base}/v2/{other}/blobs/{ld}")),
            202,
            "delete blob link",
        )
        .await;
        events.push(key("delete", &other, &ld.to_string()));
        expect_status(
            c.head(format!("{base}/v2/{other}/blobs/{ld}")),
            404,
            "deleted link",
        )
        .await;
        deleted.push(gone);
        kept.extend(imgs[1..].iter().cloned());
        // Power goes right after the last acknowledgement.
        m = power_cut(&mut kura, m, &mnt, &store);
    }
    // Then the power fails under load, with the collector running (1 s grace).
    let env = short_online_grace_env();
    let gc_flags = [
        "--config",
        &cfg,
        "--gc-interval",
        "100ms",
        "--gc-grace",
        "1s",
    ];
    let (mut kura, base) = spawn_kura_guarded_env(&store, &gc_flags, &env);
    verify(&base, &kept, &deleted).await;
    let load: Arc<Mutex<Load>> = Arc::default();
    let workers: Vec<_> = (0..2)
        .map(|w| tokio::spawn(load_worker(base.clone(), w, load.clone())))
        .collect();
    let waited = Instant::now();
    while load.lock().unwrap().events.len() < 12 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "load made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _mounted = power_cut(&mut kura, m, &mnt, &store);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("workers stop once the server is gone")
            .unwrap();
    }
    let load = std::mem::take(&mut *load.lock().unwrap());
    assert!(
        !load.deleted.is_empty(),
        "the load acknowledged no delete before the cut"
    );
    println!(
        "power cut under load: {} pushes kept, {} deleted, {} operations cut",
        load.kept.len(),
        load.deleted.len(),
        load.cut.len()
    );
    let (_kura, base) = spawn_kura_guarded(&store, &flags);
    verify(&base, &kept, &deleted).await;
    verify(&base, &load.kept, &load.deleted).await;
    for img in &load.cut {
        verify_absent_or_whole(&base, img).await;
    }
    // A session open at a cut resumes from what survived of its bytes, or is gone.
    for loc in &sessions {
        let r = client().get(format!("{base}{loc}")).send().await.unwrap();
        match r.status().as_u16() {
            404 => {}
            204 => {
                let range = r.headers()["range"].to_str().unwrap().to_string();
                let end: u64 = range.trim_start_matches("0-").parse().unwrap();
                assert!(end < 10_000, "session {loc} claims {range}");
            }
            s => panic!("session {loc} after power loss: {s}"),
        }
    }
    let c = client();
    for i in 0..2 {
        expect_status(
            c.head(format!(
                "{base}/v2/power/m{i}/blobs/{}",
                kept[2 * i + 1].blobs[1].0
            )),
            404,
            "deleted link after power loss",
        )
        .await;
    }
    let (got, handle) = receiver(TcpListener::bind(("127.0.0.1", port)).unwrap());
    // Pull events (of the verification GETs) are best-effort and not counted.
    let writes = |got: &Arc<Mutex<Vec<Value>>>| -> Vec<Key> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|e| e["action"] != "pull")
            .map(event_key)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while writes(&got).len() < events.len() + load.events.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got_writes = writes(&got);
    // The deterministic cycles' events first, exactly and in order.
    assert_eq!(
        got_writes[..events.len().min(got_writes.len())],
        events[..],
        "events of acknowledged writes after power loss"
    );
    // Then every event of the load's acknowledged writes; besides them only events of
    // operations the cut interrupted (committed, but their answer lost).
    let rest = &got_writes[events.len()..];
    for e in &load.events {
        assert!(
            rest.contains(e),
            "event {e:?} of an acknowledged write lost"
        );
    }
    let cut_events: Vec<Key> = load
        .cut
        .iter()
        .flat_map(|img| {
            let mut ev = push_events(img);
            ev.push(key("delete", &img.repo, &img.digest().to_string()));
            ev
        })
        .collect();
    for e in rest {
        assert!(
            load.events.contains(e) || cut_events.contains(e),
            "event {e:?} of no write"
        );
    }
    assert_eq!(
        rest.len(),
        {
            let mut all: Vec<&Key> = rest.iter().collect();
            all.sort();
            all.dedup();
            all.len()
        },
        "an event was delivered twice"
    );
    handle.stop(false).await;
    // Drop order: kura (declared later) is killed before `m` unmounts.
}
