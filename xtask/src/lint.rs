//! `cargo xtask ci lint`: the layering rules (from `cargo metadata`) and tidy rules (module
//! docs, no ignored or should-panic tests) that clippy cannot check.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util;

/// Dependency kind as cargo metadata reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepKind {
    Normal,
    Dev,
    Build,
}

/// One edge from a workspace package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub kind: DepKind,
}

/// One workspace package.
#[derive(Clone, Debug)]
pub struct Package {
    pub name: String,
    pub deps: Vec<Dep>,
}

/// (package, allowed workspace normal/build deps or `None` for any, extra allowed dev-deps).
type Rule = (
    &'static str,
    Option<&'static [&'static str]>,
    &'static [&'static str],
);

/// Allowed workspace-internal dependencies.
const RULES: &[Rule] = &[
    ("mailsync-migration", Some(&[]), &["mailsync-testkit"]),
    // SQLite's FTS5 extensions (the workspace's one crate with unsafe code): nothing of ours.
    ("mailsync-fts", Some(&[]), &[]),
    (
        "mailsync-store",
        Some(&["mailsync-migration", "mailsync-fts"]),
        &["mailsync-testkit"],
    ),
    ("mailsync-jmap-client", Some(&[]), &["mailsync-testkit"]),
    (
        "mailsync-imap-sync",
        Some(&["mailsync-store"]),
        &["mailsync-testkit"],
    ),
    (
        "mailsync-jmap-sync",
        Some(&["mailsync-store", "mailsync-jmap-client"]),
        &["mailsync-testkit"],
    ),
    (
        "mailsync-outbox",
        Some(&["mailsync-store"]),
        &["mailsync-testkit"],
    ),
    ("mailsync-testkit", Some(&[]), &[]),
    (
        "mailsync-engine",
        Some(&[
            "mailsync-migration",
            "mailsync-store",
            "mailsync-jmap-client",
            "mailsync-imap-sync",
            "mailsync-jmap-sync",
            "mailsync-outbox",
        ]),
        &["mailsync-testkit"],
    ),
    // the command-line application composes everything (but never ships the testkit)
    (
        "mailsync",
        Some(&[
            "mailsync-migration",
            "mailsync-store",
            "mailsync-jmap-client",
            "mailsync-imap-sync",
            "mailsync-jmap-sync",
            "mailsync-outbox",
            "mailsync-engine",
        ]),
        &["mailsync-testkit"],
    ),
    ("mailsync-tests", None, &[]),
    ("xtask", Some(&["mailsync-testkit"]), &[]),
];

/// Packages that are applications or test harnesses, not libraries: anyhow is fine there.
const NOT_LIBRARIES: &[&str] = &["xtask", "mailsync-tests", "mailsync"];
/// Packages that may use the testkit as a normal dependency (they are test tooling).
const TESTKIT_USERS: &[&str] = &["xtask", "mailsync-tests"];
const BANNED_IN_LIBRARIES: &[&str] = &["anyhow", "eyre"];

/// Reads the workspace packages with `cargo metadata --no-deps`.
pub fn workspace_packages() -> Result<Vec<Package>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = util::run(
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(util::workspace_root()),
    )?;
    parse_metadata(&out)
}

fn parse_metadata(json: &str) -> Result<Vec<Package>> {
    let v: Value = serde_json::from_str(json).context("parsing cargo metadata")?;
    let packages = v["packages"]
        .as_array()
        .context("no packages in cargo metadata")?;
    let mut out = Vec::new();
    for p in packages {
        let name = p["name"]
            .as_str()
            .context("package without name")?
            .to_string();
        let deps = p["dependencies"]
            .as_array()
            .map(|deps| {
                deps.iter()
                    .filter_map(|d| {
                        let kind = match d["kind"].as_str() {
                            None => DepKind::Normal,
                            Some("dev") => DepKind::Dev,
                            Some("build") => DepKind::Build,
                            Some(_) => return None,
                        };
                        Some(Dep {
                            name: d["name"].as_str()?.to_string(),
                            kind,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Package { name, deps });
    }
    Ok(out)
}

/// Every layering violation, as readable sentences.
pub fn layering_violations(packages: &[Package]) -> Vec<String> {
    let members: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut errors = Vec::new();
    for p in packages {
        let Some((_, normal, extra_dev)) = RULES.iter().find(|(n, _, _)| *n == p.name) else {
            errors.push(format!(
                "{}: new workspace package; add its allowed dependencies to RULES in xtask/src/lint.rs",
                p.name
            ));
            continue;
        };
        for d in &p.deps {
            // a dev-dependency on itself (to enable test features) is not an edge
            let internal = members.contains(&d.name.as_str()) && d.name != p.name;
            if internal {
                let allowed = match (normal, d.kind) {
                    (None, _) => true,
                    (Some(n), DepKind::Normal | DepKind::Build) => n.contains(&d.name.as_str()),
                    (Some(n), DepKind::Dev) => {
                        n.contains(&d.name.as_str()) || extra_dev.contains(&d.name.as_str())
                    }
                };
                if !allowed {
                    errors.push(format!(
                        "{} must not depend on {} ({:?} dependency)",
                        p.name, d.name, d.kind
                    ));
                }
                if d.name == "mailsync-testkit"
                    && d.kind != DepKind::Dev
                    && !TESTKIT_USERS.contains(&p.name.as_str())
                {
                    errors.push(format!("{}: testkit may only be a dev-dependency", p.name));
                }
            }
            if d.kind == DepKind::Normal
                && BANNED_IN_LIBRARIES.contains(&d.name.as_str())
                && !NOT_LIBRARIES.contains(&p.name.as_str())
            {
                errors.push(format!(
                    "{}: library crates must not use {} (use a thiserror enum)",
                    p.name, d.name
                ));
            }
        }
    }
    errors
}

/// Whether a workspace-relative path is a test file (under a crate's `tests/` or `benches/`).
fn is_test_file(rel: &Path) -> bool {
    let comps: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    // the top-level `tests/` directory is the e2e crate itself: look below it
    let inner = match comps.first().map(String::as_str) {
        Some("tests") => &comps[1..],
        _ => &comps[..],
    };
    inner
        .iter()
        .take(inner.len().saturating_sub(1))
        .any(|c| c == "tests" || c == "benches")
}

/// Tidy problems of one file.
fn tidy_file(rel: &Path, text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or("");
    if !is_test_file(rel) && !first.starts_with("//!") {
        errors.push(format!(
            "{}: must start with a `//!` line saying what the module owns",
            rel.display()
        ));
    }
    // spelled in pieces so this file does not trip over itself
    let banned = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    for (no, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for b in banned {
            if code.contains(b) {
                errors.push(format!(
                    "{}:{}: `{b}]` is not allowed (no skipped tests; assert on the error instead of panicking)",
                    rel.display(),
                    no + 1
                ));
            }
        }
    }
    errors
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if e.file_type()?.is_dir() {
            if name == "target" || name.starts_with('.') || name.starts_with("target-") {
                continue;
            }
            rust_files(&path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Tidy problems of the whole workspace.
pub fn tidy_violations(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for dir in ["crates", "migrations", "xtask", "tests"] {
        rust_files(&root.join(dir), &mut files)?;
    }
    files.sort();
    let mut errors = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let rel = f.strip_prefix(root).unwrap_or(&f);
        errors.extend(tidy_file(rel, &text));
    }
    Ok(errors)
}

/// `cargo xtask ci lint`.
pub fn run() -> Result<()> {
    let mut errors = layering_violations(&workspace_packages()?);
    errors.extend(tidy_violations(&util::workspace_root())?);
    if errors.is_empty() {
        println!("lint: layering and tidy rules hold");
        return Ok(());
    }
    for e in &errors {
        eprintln!("  {e}");
    }
    bail!("{} lint problem(s)", errors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: &[(&str, DepKind)]) -> Package {
        Package {
            name: name.into(),
            deps: deps
                .iter()
                .map(|(n, k)| Dep {
                    name: (*n).into(),
                    kind: *k,
                })
                .collect(),
        }
    }

    fn all_members(extra: Vec<Package>) -> Vec<Package> {
        let mut v: Vec<Package> = RULES.iter().map(|(n, _, _)| pkg(n, &[])).collect();
        for e in extra {
            v.retain(|p| p.name != e.name);
            v.push(e);
        }
        v
    }

    #[test]
    fn the_intended_layering_passes() {
        let ps = all_members(vec![
            pkg(
                "mailsync-store",
                &[
                    ("mailsync-migration", DepKind::Normal),
                    ("mailsync-testkit", DepKind::Dev),
                ],
            ),
            pkg(
                "mailsync-imap-sync",
                &[
                    ("mailsync-store", DepKind::Normal),
                    ("tokio", DepKind::Normal),
                ],
            ),
            pkg(
                "mailsync-engine",
                &[
                    ("mailsync-outbox", DepKind::Normal),
                    ("mailsync-jmap-client", DepKind::Normal),
                ],
            ),
            pkg(
                "mailsync-tests",
                &[
                    ("anyhow", DepKind::Normal),
                    ("mailsync-engine", DepKind::Normal),
                ],
            ),
            pkg(
                "xtask",
                &[
                    ("anyhow", DepKind::Normal),
                    ("mailsync-testkit", DepKind::Normal),
                ],
            ),
            pkg(
                "mailsync",
                &[
                    ("mailsync-engine", DepKind::Normal),
                    ("mailsync-testkit", DepKind::Dev),
                ],
            ),
        ]);
        assert_eq!(layering_violations(&ps), Vec::<String>::new());
        // the CLI must not ship the testkit
        let cli = all_members(vec![pkg(
            "mailsync",
            &[("mailsync-testkit", DepKind::Normal)],
        )]);
        assert_eq!(layering_violations(&cli).len(), 2);
    }

    #[test]
    fn forbidden_edges_are_reported() {
        let ps = all_members(vec![
            pkg(
                "mailsync-jmap-client",
                &[("mailsync-store", DepKind::Normal)],
            ),
            pkg(
                "mailsync-imap-sync",
                &[("mailsync-outbox", DepKind::Normal)],
            ),
            pkg(
                "mailsync-outbox",
                &[("anyhow", DepKind::Normal), ("anyhow", DepKind::Dev)],
            ),
            pkg("mailsync-migration", &[("mailsync-store", DepKind::Dev)]),
            pkg("mailsync-store", &[("mailsync-testkit", DepKind::Normal)]),
            pkg("mailsync-newthing", &[]),
        ]);
        let errors = layering_violations(&ps);
        let has = |s: &str| errors.iter().any(|e| e.contains(s));
        assert!(
            has("mailsync-jmap-client must not depend on mailsync-store"),
            "{errors:?}"
        );
        assert!(
            has("mailsync-imap-sync must not depend on mailsync-outbox"),
            "{errors:?}"
        );
        assert!(
            has("mailsync-outbox: library crates must not use anyhow"),
            "{errors:?}"
        );
        assert!(
            has("mailsync-migration must not depend on mailsync-store (Dev"),
            "{errors:?}"
        );
        assert!(
            has("mailsync-store: testkit may only be a dev-dependency"),
            "{errors:?}"
        );
        assert!(
            has("mailsync-newthing: new workspace package"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 7, "{errors:?}"); // store->testkit normal is also a bad edge
    }

    #[test]
    fn tidy_rules() {
        let ok = "//! Owns things.\nfn f() {}\n";
        assert!(tidy_file(Path::new("crates/a/src/lib.rs"), ok).is_empty());
        assert_eq!(
            tidy_file(Path::new("crates/a/src/lib.rs"), "fn f() {}\n").len(),
            1
        );
        // integration tests need no module doc, but may not be ignored
        assert!(tidy_file(Path::new("crates/a/tests/it.rs"), "fn f() {}\n").is_empty());
        assert!(tidy_file(Path::new("tests/tests/e2e/main.rs"), "fn f() {}\n").is_empty());
        assert_eq!(
            tidy_file(Path::new("tests/src/lib.rs"), "fn f() {}\n").len(),
            1
        );
        let ignored = format!("{}]\nfn t() {{}}\n", concat!("#[", "ignore"));
        assert_eq!(
            tidy_file(Path::new("crates/a/tests/it.rs"), &ignored).len(),
            1
        );
        let sp = format!(
            "//! x\n    {}(expected = \"x\")]\n",
            concat!("#[", "should_panic")
        );
        assert_eq!(tidy_file(Path::new("crates/a/src/x.rs"), &sp).len(), 1);
    }

    #[test]
    fn parses_cargo_metadata() {
        let json = r#"{"packages":[{"name":"a","dependencies":[
            {"name":"b","kind":null},{"name":"c","kind":"dev"},{"name":"d","kind":"build"}]}]}"#;
        let ps = parse_metadata(json).unwrap();
        assert_eq!(
            ps[0].deps.iter().map(|d| d.kind).collect::<Vec<_>>(),
            [DepKind::Normal, DepKind::Dev, DepKind::Build]
        );
    }
}
