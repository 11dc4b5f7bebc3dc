//! The web interface's listings straight from the store (no HTTP): pages follow the index,
//! a substring filter and the per-row figures stay within their bounds, the viewer's
//! prefixes narrow what is read; and `[ui] enabled = false` really removes `/ui/`.

mod common;

use kura::meta::records::ManifestRecord;
use kura::meta::{manifests, repos, tags};
use kura::registry::Registry;
use kura::ui::data::{self, AGG_TAGS, RepoQuery, SCAN_BUDGET};

fn record(created: u64) -> ManifestRecord {
    ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 100,
        artifact_type: None,
        annotations: None,
        subject: None,
        blobs: Vec::new(),
        manifests: Vec::new(),
        created,
        touched: 0,
    }
}

/// A store with `names`, each with one tag `latest` on a revision created at `i + 1`.
fn store(names: &[String]) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.meta()
        .write(|t| {
            for (i, n) in names.iter().enumerate() {
                repos::ensure(t, n)?;
                let d = format!("sha256:{:064x}", i + 1);
                manifests::insert(t, n, &d, &record(i as u64 + 1))?;
                tags::set(t, n, "latest", &d)?;
            }
            Ok(())
        })
        .unwrap();
    (dir, reg)
}

fn query<'a>(prefix: &'a str, contains: &'a str, last: Option<&'a str>) -> RepoQuery<'a> {
    RepoQuery {
        prefix,
        contains,
        last,
        n: 50,
        visible: None,
    }
}

fn names(p: &data::Page<data::RepoRow>) -> Vec<String> {
    p.rows.iter().map(|r| r.name.clone()).collect()
}

#[test]
fn repository_pages_follow_the_index_in_order_with_a_next_link() {
    let all: Vec<String> = (0..120)
        .map(|i| format!("{}/r{i:03}", if i < 60 { "a" } else { "b" }))
        .collect();
    let (_d, reg) = store(&all);
    let yes = |_: &str| true;
    let p1 = data::repositories(&reg, &query("", "", None), &yes).unwrap();
    assert_eq!(names(&p1), all[..50]);
    assert_eq!(p1.next.as_deref(), Some(all[49].as_str()));
    assert_eq!(
        p1.rows[0].tags,
        data::Bounded {
            value: 1,
            more: false
        }
    );
    assert_eq!(p1.rows[0].last_push, 1);
    let p2 = data::repositories(&reg, &query("", "", p1.next.as_deref()), &yes).unwrap();
    assert_eq!(names(&p2), all[50..100]);
    let p3 = data::repositories(&reg, &query("", "", p2.next.as_deref()), &yes).unwrap();
    assert_eq!(names(&p3), all[100..]);
    assert_eq!(p3.next, None);
    // Prefix and substring.
    let b = data::repositories(&reg, &query("b/", "", None), &yes).unwrap();
    assert_eq!(names(&b), all[60..110]);
    let sub = data::repositories(&reg, &query("", "r07", None), &yes).unwrap();
    assert_eq!(sub.rows.len(), 10);
    assert!(sub.rows.iter().all(|r| r.name.contains("r07")));
    // What the viewer may not pull is not shown; their prefixes narrow the scan.
    let only_b = |n: &str| n.starts_with("b/");
    let mut q = query("", "", None);
    q.visible = Some(vec!["b/".into()]);
    assert_eq!(
        names(&data::repositories(&reg, &q, &only_b).unwrap()),
        all[60..110]
    );
    let odd = |n: &str| n.ends_with('1');
    let p = data::repositories(&reg, &query("a/", "", None), &odd).unwrap();
    assert!(p.rows.iter().all(|r| r.name.ends_with('1')) && p.rows.len() == 6);
}

#[test]
fn a_substring_matching_nothing_reads_at_most_the_scan_budget_per_page() {
    let all: Vec<String> = (0..SCAN_BUDGET + 500)
        .map(|i| format!("x/r{i:06}"))
        .collect();
    let (_d, reg) = store(&all);
    let p = data::repositories(&reg, &query("", "nothing", None), &|_| true).unwrap();
    assert!(p.rows.is_empty());
    // The page stops at the budget and says where to go on from.
    assert_eq!(p.next.as_deref(), Some(all[SCAN_BUDGET - 1].as_str()));
    let p2 = data::repositories(&reg, &query("", "nothing", p.next.as_deref()), &|_| true).unwrap();
    assert!(p2.rows.is_empty());
    assert_eq!(p2.next, None, "the rest is below the budget");
}

#[test]
fn per_repository_figures_are_bounded_and_tags_are_paged() {
    let (_d, reg) = store(&["big".to_string()]);
    reg.meta()
        .write(|t| {
            for i in 0..AGG_TAGS + 5 {
                tags::set(t, "big", &format!("t{i:05}"), &format!("sha256:{:064x}", 1))?;
            }
            Ok(())
        })
        .unwrap();
    let p = data::repositories(&reg, &query("", "", None), &|_| true).unwrap();
    assert_eq!(
        p.rows[0].tags,
        data::Bounded {
            value: AGG_TAGS as u64,
            more: true
        }
    );
    let t1 = data::tags(&reg, "big", "", None, 50).unwrap().unwrap();
    assert_eq!(t1.rows.len(), 50);
    assert_eq!(t1.rows[0].tag, "latest");
    let t2 = data::tags(&reg, "big", "", t1.next.as_deref(), 50)
        .unwrap()
        .unwrap();
    assert!(t2.rows[0].tag > t1.rows[49].tag);
    let f = data::tags(&reg, "big", "t0100", None, 50).unwrap().unwrap();
    assert_eq!(f.rows.len(), 5, "t01000..t01004");
    assert!(data::tags(&reg, "missing", "", None, 50).unwrap().is_none());
}

#[test]
fn ui_enabled_false_removes_the_web_interface() {
    let tmp = tempfile::tempdir().unwrap();
    let (_on, on) = common::spawn_kura_guarded(&tmp.path().join("a"), &[]);
    let (_off, off) = common::spawn_kura_guarded_env(
        &tmp.path().join("b"),
        &[],
        &[("KURA_UI__ENABLED", "false")],
    );
    let status = |u: String| {
        use std::io::{Read, Write};
        let rest = u.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split(' ').nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(status(format!("{on}/ui/")), "200");
    assert_eq!(status(format!("{off}/ui/")), "404");
    assert_eq!(status(format!("{off}/v2/")), "200", "the API stays");
}
