//! `kura usage`: the unique bytes each repository and quota namespace holds, with the quotas
//! (`[[policies.quota]]`). Asks the server holding the store (`GET /admin/usage`), else opens it.

use super::store_target::{StoreTarget, Target, get_json};
use crate::config::Config;
use crate::policy::quota::human;
use crate::registry::{ScopeUsage, UsageReport};

/// Arguments of `kura usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub target: StoreTarget,
    /// Print JSON (`{"repositories": [...], "namespaces": [...]}`).
    #[arg(long)]
    pub json: bool,
}

/// Prints the usage report.
pub fn run(args: UsageArgs) -> Result<(), super::CliError> {
    let report: UsageReport = match args.target.resolve()? {
        Target::Local(registry) => {
            // The quotas come from the configuration file, when one is given.
            if let Some(file) = &args.target.config {
                let cfg = Config::load(Some(file), serde_json::json!({}))?;
                registry.set_policies(crate::policy::Policies::compile(&cfg.policies)?);
                registry.sync_quota_namespaces()?;
            }
            registry.usage_report()?
        }
        Target::Remote(url) => get_json(&args.target, &url, "/admin/usage")?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The report as two aligned tables.
pub fn render(report: &UsageReport) -> String {
    let mut out = String::new();
    table(&mut out, "REPOSITORY", &report.repositories);
    if !report.namespaces.is_empty() {
        out.push('\n');
        table(&mut out, "NAMESPACE", &report.namespaces);
    }
    out
}

fn table(out: &mut String, head: &str, rows: &[ScopeUsage]) {
    let width = rows
        .iter()
        .map(|r| r.name.len())
        .chain([head.len()])
        .max()
        .unwrap_or(0);
    out.push_str(&format!(
        "{head:<width$}  {:>12}  {:>12}  {:>14}\n",
        "USED", "LIMIT", "BYTES"
    ));
    for r in rows {
        let limit = r.limit_bytes.map_or("-".to_string(), human);
        out.push_str(&format!(
            "{:<width$}  {:>12}  {:>12}  {:>14}\n",
            r.name,
            human(r.used_bytes),
            limit,
            r.used_bytes
        ));
    }
}
