//! Access rules (users and groups → repository patterns → actions) and token scopes
//! (`repository:team/app:pull,push`, `registry:catalog:*`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::AuthConfig;

/// The repository actions, in the order they are printed.
pub const ACTIONS: [&str; 3] = ["pull", "push", "delete"];

/// A set of repository actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const ALL: Actions = Actions(7);

    /// The action named `s` (`*` is all three); `None` for anything else.
    pub fn parse(s: &str) -> Option<Actions> {
        Some(match s {
            "pull" => Actions::PULL,
            "push" => Actions::PUSH,
            "delete" => Actions::DELETE,
            "*" => Actions::ALL,
            _ => return None,
        })
    }

    /// The union of the known actions in `names`; unknown names are ignored.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Actions {
        names
            .iter()
            .filter_map(|n| Actions::parse(n.as_ref()))
            .fold(Actions::NONE, |a, b| a.union(b))
    }

    pub fn union(self, o: Actions) -> Actions {
        Actions(self.0 | o.0)
    }

    pub fn intersect(self, o: Actions) -> Actions {
        Actions(self.0 & o.0)
    }

    /// Whether every action of `o` is in this set.
    pub fn contains(self, o: Actions) -> bool {
        self.0 & o.0 == o.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The action names, e.g. `["pull", "push"]`.
    pub fn names(self) -> Vec<String> {
        ACTIONS
            .iter()
            .zip([Actions::PULL, Actions::PUSH, Actions::DELETE])
            .filter(|(_, a)| self.contains(*a))
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

/// Whether `pattern` is a usable repository pattern (non-empty, no whitespace).
pub fn glob_is_valid(pattern: &str) -> bool {
    !pattern.is_empty() && !pattern.chars().any(char::is_whitespace)
}

/// Matches `name` against `pattern`: `*` stands for any characters (`/` included), `?` for
/// one character (`wildmatch`, which knows nothing of path separators).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(name)
}

#[derive(Debug)]
struct Rule {
    users: Vec<String>,
    groups: Vec<String>,
    repositories: Vec<String>,
    actions: Actions,
    admin: bool,
}

/// The access rules of a configuration, evaluated per user (`None` is anonymous).
#[derive(Debug)]
pub struct Rules {
    anonymous_pull: bool,
    groups: BTreeMap<String, Vec<String>>,
    rules: Vec<Rule>,
    /// No rules were configured next to an htpasswd file: the Distribution default applies.
    implicit: bool,
}

impl Rules {
    /// The rules of `cfg` (already validated). An htpasswd file without any rule lets every
    /// authenticated user pull, push and delete every repository, as Distribution's htpasswd
    /// does; `/admin/` stays closed unless a rule grants `admin`.
    pub fn new(cfg: &AuthConfig) -> Rules {
        let implicit = cfg.rules.is_empty() && cfg.htpasswd.is_some();
        let mut rules: Vec<Rule> = cfg
            .rules
            .iter()
            .map(|r| Rule {
                users: r.users.clone(),
                groups: r.groups.clone(),
                repositories: r.repositories.clone(),
                actions: Actions::from_names(&r.actions),
                admin: r.actions.iter().any(|a| a == "admin"),
            })
            .collect();
        if implicit {
            rules.push(Rule {
                users: vec!["*".into()],
                groups: Vec::new(),
                repositories: vec!["*".into()],
                actions: Actions::ALL,
                admin: false,
            });
        }
        Rules {
            anonymous_pull: cfg.anonymous_pull,
            groups: cfg.groups.clone(),
            rules,
            implicit,
        }
    }

    /// The effective access policy in one line, for the start-up log.
    pub fn describe(&self) -> String {
        let who = if self.implicit {
            "every authenticated user may pull, push and delete every repository (htpasswd \
             without rules, as Distribution)"
                .to_string()
        } else {
            format!(
                "{} rules over {} groups decide what each user may do",
                self.rules.len(),
                self.groups.len()
            )
        };
        let admins: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.admin)
            .flat_map(|r| {
                r.users
                    .iter()
                    .cloned()
                    .chain(r.groups.iter().map(|g| format!("group {g}")))
            })
            .collect();
        let admin = if admins.is_empty() {
            "nobody (a rule with the admin action grants it)".to_string()
        } else {
            admins.join(", ")
        };
        let anonymous = if self.anonymous_pull {
            "pull"
        } else {
            "nothing"
        };
        format!("{who}; admin: {admin}; anonymous: {anonymous}")
    }

    /// Whether anonymous clients may pull every repository.
    pub fn anonymous_pull(&self) -> bool {
        self.anonymous_pull
    }

    fn applies(&self, rule: &Rule, user: &str) -> bool {
        rule.users.iter().any(|u| u == user || u == "*")
            || rule.groups.iter().any(|g| {
                self.groups
                    .get(g)
                    .is_some_and(|members| members.iter().any(|m| m == user))
            })
    }

    /// The actions `user` (`None`: anonymous) may perform on repository `repo`.
    pub fn allowed(&self, user: Option<&str>, repo: &str) -> Actions {
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            return if self.anonymous_pull {
                Actions::PULL
            } else {
                Actions::NONE
            };
        };
        let mut out = if self.anonymous_pull {
            Actions::PULL
        } else {
            Actions::NONE
        };
        for r in &self.rules {
            if self.applies(r, user) && r.repositories.iter().any(|p| glob_match(p, repo)) {
                out = out.union(r.actions);
            }
        }
        out
    }

    /// The literal prefixes of every repository `user` may pull: each pulling rule pattern up
    /// to its first wildcard, without prefixes another one covers, sorted. `None` when no prefix
    /// narrows it (anonymous pull, or a pattern starting with `*`). Every repository
    /// `allowed` grants pull on starts with one of them; keep the two in step.
    pub fn pull_prefixes(&self, user: Option<&str>) -> Option<Vec<String>> {
        if self.anonymous_pull {
            return None;
        }
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            return Some(Vec::new());
        };
        let mut prefixes: Vec<String> = Vec::new();
        for r in &self.rules {
            if !self.applies(r, user) || !r.actions.contains(Actions::PULL) {
                continue;
            }
            for p in &r.repositories {
                // Up to the first wildcard (`*` any characters, `?` one character).
                let literal = p.split(['*', '?']).next().unwrap_or("");
                if literal.is_empty() {
                    return None;
                }
                prefixes.push(literal.to_string());
            }
        }
        prefixes.sort();
        let mut out: Vec<String> = Vec::new();
        for p in prefixes {
            if !out.last().is_some_and(|q| p.starts_with(q.as_str())) {
                out.push(p);
            }
        }
        Some(out)
    }

    /// Whether `user` may use the `/admin/` endpoints.
    pub fn is_admin(&self, user: Option<&str>) -> bool {
        user.filter(|u| !u.is_empty())
            .is_some_and(|u| self.rules.iter().any(|r| r.admin && self.applies(r, u)))
    }
}

/// One entry of a token's `access` claim (and one requested scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A repository name, or `catalog`/`admin` for the `registry` type.
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Access {
    /// A repository scope.
    pub fn repository(name: &str, actions: Actions) -> Access {
        Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.names(),
        }
    }

    /// A `registry:<name>:*` scope (`catalog`, `admin`).
    pub fn registry(name: &str) -> Access {
        Access {
            kind: "registry".into(),
            name: name.into(),
            actions: vec!["*".into()],
        }
    }

    /// Parses `type[(class)]:name:actions`; the name may itself contain `:` (a port).
    pub fn parse_scope(s: &str) -> Option<Access> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.into(),
            name: name.into(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// The scope string, `repository:team/app:pull,push`.
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// The repository actions a list of access entries grants on `repo`.
pub fn granted(access: &[Access], repo: &str) -> Actions {
    access
        .iter()
        .filter(|a| a.kind == "repository" && a.name == repo)
        .fold(Actions::NONE, |acc, a| {
            acc.union(Actions::from_names(&a.actions))
        })
}

/// Whether a list of access entries contains `registry:<name>:*`.
pub fn grants_registry(access: &[Access], name: &str) -> bool {
    access
        .iter()
        .any(|a| a.kind == "registry" && a.name == name && a.actions.iter().any(|x| x == "*"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::RuleConfig;

    #[test]
    fn glob_star_matches_any_run_of_characters_including_slashes() {
        assert!(glob_match("*", "a/b/c"));
        assert!(glob_match("team/*", "team/app"));
        assert!(glob_match("team/*", "team/a/b"));
        assert!(!glob_match("team/*", "teams/app"));
        assert!(!glob_match("team/*", "team"));
        assert!(glob_match("*/app", "x/y/app"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
        assert!(glob_match("team/app?", "team/app2"));
        assert!(!glob_match("team/app?", "team/app"));
    }

    #[test]
    fn scopes_parse_with_ports_classes_and_several_actions() {
        let a = Access::parse_scope("repository:localhost:5000/team/app:pull,push").unwrap();
        assert_eq!(a.kind, "repository");
        assert_eq!(a.name, "localhost:5000/team/app");
        assert_eq!(a.actions, ["pull", "push"]);
        let b = Access::parse_scope("repository(plugin):x:pull").unwrap();
        assert_eq!(b.kind, "repository");
        assert_eq!(
            Access::parse_scope("registry:catalog:*").unwrap().actions,
            ["*"]
        );
        assert!(Access::parse_scope("nonsense").is_none());
        assert_eq!(a.scope(), "repository:localhost:5000/team/app:pull,push");
    }

    #[test]
    fn rules_grant_the_union_of_matching_user_and_group_rules_only() {
        let cfg = AuthConfig {
            htpasswd: Some("x".into()),
            groups: [("devs".to_string(), vec!["bob".to_string()])].into(),
            rules: vec![
                RuleConfig {
                    users: vec!["alice".into()],
                    repositories: vec!["*".into()],
                    actions: vec!["*".into(), "admin".into()],
                    ..Default::default()
                },
                RuleConfig {
                    groups: vec!["devs".into()],
                    repositories: vec!["team/*".into()],
                    actions: vec!["pull".into(), "push".into()],
                    ..Default::default()
                },
                RuleConfig {
                    users: vec!["*".into()],
                    repositories: vec!["public/*".into()],
                    actions: vec!["pull".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        cfg.validate().unwrap();
        let r = Rules::new(&cfg);
        assert_eq!(r.allowed(Some("alice"), "any/thing"), Actions::ALL);
        assert_eq!(
            r.allowed(Some("bob"), "team/app"),
            Actions::PULL.union(Actions::PUSH)
        );
        assert_eq!(r.allowed(Some("bob"), "other"), Actions::NONE);
        assert_eq!(r.allowed(Some("carol"), "public/x"), Actions::PULL);
        assert_eq!(r.allowed(None, "public/x"), Actions::NONE);
        assert!(r.is_admin(Some("alice")));
        assert!(!r.is_admin(Some("bob")));
        assert!(!r.is_admin(None));
    }

    #[test]
    fn pull_prefixes_cover_every_repository_a_user_may_pull() {
        let cfg = AuthConfig {
            htpasswd: Some("x".into()),
            groups: [("devs".to_string(), vec!["bob".to_string()])].into(),
            rules: vec![
                RuleConfig {
                    users: vec!["alice".into()],
                    repositories: vec!["*".into()],
                    actions: vec!["pull".into()],
                    ..Default::default()
                },
                RuleConfig {
                    groups: vec!["devs".into()],
                    repositories: vec![
                        "team/*".into(),
                        "team/a*/x".into(),
                        "solo".into(),
                        "q?/x".into(),
                    ],
                    actions: vec!["pull".into()],
                    ..Default::default()
                },
                RuleConfig {
                    users: vec!["bob".into()],
                    repositories: vec!["push-only/*".into()],
                    actions: vec!["push".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        cfg.validate().unwrap();
        let r = Rules::new(&cfg);
        assert_eq!(r.pull_prefixes(Some("alice")), None);
        assert_eq!(
            r.pull_prefixes(Some("bob")),
            Some(vec![
                "q".to_string(),
                "solo".to_string(),
                "team/".to_string()
            ])
        );
        assert_eq!(r.pull_prefixes(Some("carol")), Some(vec![]));
        assert_eq!(r.pull_prefixes(None), Some(vec![]));
        let names = [
            "solo",
            "solo2",
            "soloist/x",
            "team",
            "team/a",
            "team/ab/x",
            "teams",
            "push-only/a",
            "other",
            "",
            "t",
            "qa/x",
        ];
        for user in ["alice", "bob", "carol"] {
            let Some(prefixes) = r.pull_prefixes(Some(user)) else {
                continue;
            };
            for n in names {
                if r.allowed(Some(user), n).contains(Actions::PULL) {
                    assert!(
                        prefixes.iter().any(|p| n.starts_with(p.as_str())),
                        "{user} may pull {n:?} outside {prefixes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn anonymous_pull_grants_anonymous_callers_pull_everywhere_and_nothing_more() {
        let cfg = AuthConfig {
            htpasswd: Some("x".into()),
            anonymous_pull: true,
            ..Default::default()
        };
        let r = Rules::new(&cfg);
        assert_eq!(r.allowed(None, "a/b"), Actions::PULL);
        // htpasswd without rules: users may do everything but administer.
        assert_eq!(r.allowed(Some("anyone"), "a/b"), Actions::ALL);
        assert!(!r.is_admin(Some("anyone")));
    }

    #[test]
    fn htpasswd_without_rules_grants_users_pull_push_delete_but_not_admin() {
        let mut cfg = AuthConfig {
            htpasswd: Some("x".into()),
            ..Default::default()
        };
        let r = Rules::new(&cfg);
        assert_eq!(r.allowed(Some("u"), "any/repo"), Actions::ALL);
        assert_eq!(r.allowed(None, "any/repo"), Actions::NONE);
        assert!(!r.is_admin(Some("u")));
        // Tokens alone (no htpasswd) get no implicit grant.
        cfg.htpasswd = None;
        assert_eq!(Rules::new(&cfg).allowed(Some("u"), "a"), Actions::NONE);
    }

    #[test]
    fn admin_action_outside_a_star_rule_is_refused() {
        let cfg = AuthConfig {
            htpasswd: Some("x".into()),
            rules: vec![RuleConfig {
                users: vec!["a".into()],
                repositories: vec!["team/*".into()],
                actions: vec!["admin".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().contains("admin"));
    }
}
