//! Retention (`[[policies.retention]]`): keep_last, not_pulled_for, protect, immutable tags
//! never removed, the dry run listing exactly what the real run removes, the collector's
//! periodic run applying it, pulls by tag recorded in batches, the CLI and the admin endpoint,
//! and a retention run racing pushes of new tags.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, client, kura_cmd, push_image};
use kura::gc::retention;
use kura::meta::rows::TagTime;
use kura::meta::tags;
use kura::policy::immutable::ImmutableRule;
use kura::policy::retention::RetentionRule;
use kura::policy::{Policies, PoliciesConfig};

const DAY: u64 = 86_400;

fn rules(retention: Vec<RetentionRule>, immutable: Vec<ImmutableRule>) -> Policies {
    Policies::compile(&PoliciesConfig {
        retention,
        immutable,
        ..PoliciesConfig::default()
    })
    .unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Pushes `tag` of `repo` and records it as pushed at `pushed` (and pulled at `pulled`).
async fn tag_at(s: &TestServer, repo: &str, tag: &str, pushed: u64, pulled: Option<u64>) {
    push_image(s, repo, tag, &[format!("{repo}:{tag}").as_bytes()]).await;
    s.registry
        .meta()
        .write(|t| {
            t.put_tag_time(TagTime::Pushed, repo, tag, pushed)?;
            if let Some(p) = pulled {
                t.put_tag_time(TagTime::Pulled, repo, tag, p)?;
            }
            Ok(())
        })
        .unwrap();
}

fn tags_of(s: &TestServer, repo: &str) -> Vec<String> {
    s.registry
        .meta()
        .read(|t| tags::all(t, repo))
        .unwrap()
        .into_iter()
        .map(|(tag, _)| tag)
        .collect()
}

fn run_at(s: &TestServer, dry_run: bool, now: u64) -> kura::gc::GcReport {
    retention::run_at(&s.registry, dry_run, now).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_last_keeps_the_most_recently_pushed_and_protect_and_other_repositories_stay() {
    let s = TestServer::start().await;
    s.registry.set_policies(rules(
        vec![RetentionRule {
            repositories: strings(&["team/**"]),
            keep_last: Some(2),
            protect: strings(&["latest"]),
            ..RetentionRule::default()
        }],
        vec![],
    ));
    for (i, tag) in ["b1", "b2", "b3", "b4", "latest"].iter().enumerate() {
        tag_at(&s, "team/a/app", tag, 1000 + i as u64, None).await;
        tag_at(&s, "other/app", tag, 1000 + i as u64, None).await;
    }
    // The admin endpoint's dry run lists them (keep_last does not depend on the clock).
    let r = client()
        .post(s.url("/admin/retention?dry_run=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dry: kura::gc::GcReport = r.json().await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.items, ["tag team/a/app:b2", "tag team/a/app:b1"]);
    let report = run_at(&s, false, 2000);
    assert_eq!(report.tags_removed, 2);
    assert_eq!(report.items, ["tag team/a/app:b2", "tag team/a/app:b1"]);
    assert_eq!(tags_of(&s, "team/a/app"), ["b3", "b4", "latest"]);
    assert_eq!(tags_of(&s, "other/app").len(), 5);
    // Nothing more to do: a second run removes nothing.
    assert_eq!(run_at(&s, false, 2000).tags_removed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_pulled_for_removes_tags_unused_that_long_counting_a_never_pulled_tag_from_its_push() {
    let s = TestServer::start().await;
    s.registry.set_policies(rules(
        vec![RetentionRule {
            not_pulled_for: Some(Duration::from_secs(30 * DAY)),
            ..RetentionRule::default()
        }],
        vec![],
    ));
    let now = 100 * DAY;
    tag_at(&s, "app", "never-pulled-old", 10 * DAY, None).await;
    tag_at(&s, "app", "never-pulled-new", 80 * DAY, None).await;
    tag_at(&s, "app", "pulled-lately", 10 * DAY, Some(90 * DAY)).await;
    tag_at(&s, "app", "pulled-long-ago", 10 * DAY, Some(50 * DAY)).await;
    let report = run_at(&s, false, now);
    let mut items = report.items.clone();
    items.sort();
    assert_eq!(
        items,
        ["tag app:never-pulled-old", "tag app:pulled-long-ago"]
    );
    assert_eq!(tags_of(&s, "app"), ["never-pulled-new", "pulled-lately"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_tags_are_never_removed_by_retention() {
    let s = TestServer::start().await;
    s.registry.set_policies(rules(
        vec![RetentionRule {
            keep_last: Some(0),
            not_pulled_for: Some(Duration::from_secs(DAY)),
            ..RetentionRule::default()
        }],
        vec![ImmutableRule {
            repositories: strings(&["**"]),
            tags: strings(&["v*"]),
        }],
    ));
    tag_at(&s, "prod/app", "v1", 1, None).await;
    tag_at(&s, "prod/app", "nightly", 1, None).await;
    let report = run_at(&s, false, 100 * DAY);
    assert_eq!(report.items, ["tag prod/app:nightly"]);
    assert_eq!(tags_of(&s, "prod/app"), ["v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_removes_nothing_and_lists_exactly_what_the_real_run_removes() {
    let s = TestServer::start().await;
    s.registry.set_policies(rules(
        vec![RetentionRule {
            keep_last: Some(3),
            not_pulled_for: Some(Duration::from_secs(30 * DAY)),
            protect: strings(&["keep-*"]),
            ..RetentionRule::default()
        }],
        vec![],
    ));
    for i in 0..8u64 {
        let pulled = (i % 2 == 0).then_some(95 * DAY);
        tag_at(&s, "r/one", &format!("t{i}"), 60 * DAY + i, pulled).await;
        tag_at(&s, "r/two", &format!("t{i}"), i * 10 * DAY, pulled).await;
    }
    tag_at(&s, "r/two", "keep-me", 0, None).await;
    let before = (tags_of(&s, "r/one"), tags_of(&s, "r/two"));
    let dry = run_at(&s, true, 100 * DAY);
    assert!(dry.dry_run);
    assert!(dry.tags_removed > 0);
    assert_eq!((tags_of(&s, "r/one"), tags_of(&s, "r/two")), before);
    let real = run_at(&s, false, 100 * DAY);
    assert_eq!(real.items, dry.items);
    assert_eq!(real.tags_removed, dry.tags_removed);
    assert!(tags_of(&s, "r/two").contains(&"keep-me".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_tag_are_recorded_in_memory_and_written_by_a_batched_flush() {
    let s = TestServer::start().await;
    push_image(&s, "app", "v1", &[b"layer"]).await;
    let pulled = |s: &TestServer| {
        s.registry
            .meta()
            .read(|t| tags::pulled_at(t, "app", "v1"))
            .unwrap()
    };
    for _ in 0..3 {
        let r = client()
            .get(s.url("/v2/app/manifests/v1"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Not written per pull.
    assert_eq!(pulled(&s), None);
    s.registry.flush_tag_pulls().await.unwrap();
    let at = pulled(&s).expect("the pull was written by the flush");
    assert!(at >= kura::meta::now_secs() - 60);
    // A removed tag takes its pull time along.
    let repo = kura::names::RepoName::parse("app").unwrap();
    s.registry
        .delete_manifest(&repo, &kura::names::Reference::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(pulled(&s), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collectors_periodic_run_applies_retention_and_collects_what_it_untagged() {
    let s = TestServer::start().await;
    s.registry.set_policies(rules(
        vec![RetentionRule {
            keep_last: Some(1),
            ..RetentionRule::default()
        }],
        vec![],
    ));
    tag_at(&s, "app", "old", 1, None).await;
    tag_at(&s, "app", "new", 2, None).await;
    let opts = kura::gc::GcOptions {
        delete_untagged: true,
        grace: Duration::ZERO,
        ..kura::gc::GcOptions::default()
    };
    let task = kura::gc::spawn_periodic(s.registry.clone(), Duration::from_millis(100), opts);
    let start = Instant::now();
    while tags_of(&s, "app") != ["new"] {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "retention never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    // The revision "old" named went with the same kind of run.
    let r = kura::gc::collect(
        &s.registry,
        &kura::gc::GcOptions {
            delete_untagged: true,
            grace: Duration::ZERO,
            ..kura::gc::GcOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.tags_removed, 0);
    let revisions = s
        .registry
        .meta()
        .read(|t| Ok(kura::meta::manifests::of_repo(t, "app")?.len()))
        .unwrap();
    assert_eq!(revisions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_run_racing_pushes_never_removes_a_new_tag_and_keep_last_holds() {
    let s = Arc::new(TestServer::start().await);
    s.registry.set_policies(rules(
        vec![RetentionRule {
            keep_last: Some(3),
            ..RetentionRule::default()
        }],
        vec![],
    ));
    for round in 0..8 {
        let repo = format!("race/r{round}");
        for i in 0..6u64 {
            tag_at(&s, &repo, &format!("old{i}"), 1000 + i, None).await;
        }
        let pusher = {
            let (s, repo) = (s.clone(), repo.clone());
            tokio::spawn(async move {
                for i in 0..3 {
                    push_image(
                        &s,
                        &repo,
                        &format!("new{i}"),
                        &[format!("{repo} {i}").as_bytes()],
                    )
                    .await;
                }
            })
        };
        let runner = {
            let s = s.clone();
            tokio::task::spawn_blocking(move || retention::run(&s.registry, false).unwrap())
        };
        pusher.await.unwrap();
        runner.await.unwrap();
        let left = tags_of(&s, &repo);
        for i in 0..3 {
            assert!(
                left.contains(&format!("new{i}")),
                "round {round}: new{i} removed: {left:?}"
            );
        }
        assert!(left.len() >= 3, "round {round}: {left:?}");
        // Settled, the three newest stay.
        retention::run(&s.registry, false).unwrap();
        assert_eq!(
            tags_of(&s, &repo),
            ["new0", "new1", "new2"],
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_retention_and_config_check_use_the_config_files_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let config = tmp.path().join("kura.toml");
    std::fs::write(
        &config,
        format!(
            "root = {:?}\n\n[[policies.retention]]\nrepositories = [\"team/**\"]\nkeep_last = 1\nnot_pulled_for = \"30d\"\nprotect = [\"latest\"]\n\n[[policies.immutable]]\ntags = [\"v*\"]\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, err) = kura_cmd(&["config", "check", config.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("keep_last") && out.contains("not_pulled_for") && out.contains("protect"),
        "{out}"
    );
    assert!(
        out.contains("[[policies.immutable]]") || out.contains("policies.immutable"),
        "{out}"
    );
    {
        let s = TestServer::start_in(&root).await;
        let now = kura::meta::now_secs();
        tag_at(&s, "team/app", "a", now - 20, None).await;
        tag_at(&s, "team/app", "b", now - 10, None).await;
    }
    // The server is stopped; give its store a moment to be released.
    let mut tries = 0;
    let out = loop {
        let (ok, out, err) = kura_cmd(&[
            "retention",
            "--config",
            config.to_str().unwrap(),
            "--dry-run",
        ]);
        if ok {
            break out;
        }
        tries += 1;
        assert!(tries < 100, "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(out.contains("tag team/app:a"), "{out}");
    assert!(
        out.contains("would remove") && out.contains("1 tag(s) by retention"),
        "{out}"
    );
    let (ok, out, err) = kura_cmd(&["retention", "--config", config.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("removed") && out.contains("1 tag(s) by retention"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_removal_yields_to_a_push_that_moved_or_re_pushed_the_tag_since() {
    let s = TestServer::start().await;
    tag_at(&s, "app", "t", 1000, None).await;
    let state = |s: &TestServer| {
        s.registry
            .meta()
            .read(|t| {
                Ok(kura::policy::retention::TagState {
                    tag: "t".into(),
                    digest: tags::get(t, "app", "t")?.unwrap(),
                    pushed: tags::pushed_at(t, "app", "t")?.unwrap(),
                    pulled: None,
                })
            })
            .unwrap()
    };
    let planned = state(&s);
    // Moved to another revision since the plan (its push time set back to the plan's): kept.
    push_image(&s, "app", "t", &[b"another layer"]).await;
    s.registry
        .meta()
        .write(|t| t.put_tag_time(TagTime::Pushed, "app", "t", 1000))
        .unwrap();
    assert!(!retention::remove_planned(&s.registry, "app", &planned).unwrap());
    // Same digest, pushed again since the plan: kept.
    let planned = state(&s);
    s.registry
        .meta()
        .write(|t| t.put_tag_time(TagTime::Pushed, "app", "t", 2000))
        .unwrap();
    assert!(!retention::remove_planned(&s.registry, "app", &planned).unwrap());
    assert_eq!(tags_of(&s, "app"), ["t"]);
    // Unchanged: removed.
    let planned = state(&s);
    assert!(retention::remove_planned(&s.registry, "app", &planned).unwrap());
    assert!(tags_of(&s, "app").is_empty());
}
