//! Glob lists of the policies (repositories, tags): `*` stays within one `/`-separated
//! segment, `**` crosses them; compiled once into one `globset` matcher.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A glob list compiled into one matcher, with its source kept for messages.
#[derive(Debug, Clone)]
pub struct Patterns {
    set: GlobSet,
    source: Vec<String>,
}

impl Patterns {
    /// Compiles `globs` (`*` does not cross `/`, `**` does); `what` names them in errors.
    pub fn compile(globs: &[String], what: &str) -> std::result::Result<Patterns, String> {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(glob(g).map_err(|e| format!("{what}: invalid pattern {g:?}: {e}"))?);
        }
        let set = b.build().map_err(|e| format!("{what}: {e}"))?;
        Ok(Patterns {
            set,
            source: globs.to_vec(),
        })
    }

    /// Whether any pattern matches `s`.
    pub fn matches(&self, s: &str) -> bool {
        self.set.is_match(s)
    }

    /// Whether there is no pattern at all.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// The patterns as configured.
    pub fn source(&self) -> &[String] {
        &self.source
    }
}

fn glob(g: &str) -> std::result::Result<Glob, globset::Error> {
    GlobBuilder::new(g).literal_separator(true).build()
}
