//! Reading a policy folder (feature `toml`): for `build.rs` and the command-line tool only.

use std::path::{Path, PathBuf};

use crate::diag::{Location, PolicyError, Subject, Warning};
use crate::model::{PolicyFile, SourceFile};
use crate::policy::Policy;

/// The `*.toml` files of a folder (not recursive, dot-files skipped), sorted by file name.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PolicyError::new(
            Location::file(&shown),
            format!("cannot read the policy folder: {e}"),
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            PolicyError::new(
                Location::file(&shown),
                format!("cannot read the policy folder: {e}"),
            )
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Parse one policy file. Syntax and type errors (unknown field, wrong type, missing field)
/// name the file, line and column.
pub fn parse_toml(name: &str, text: &str) -> Result<SourceFile, PolicyError> {
    match toml::from_str::<PolicyFile>(text) {
        Ok(model) => Ok(SourceFile::new(name, model)),
        Err(e) => {
            let subject = match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    Subject::Position { line, column }
                }
                None => Subject::File,
            };
            Err(PolicyError::new(
                Location {
                    file: name.to_owned(),
                    subject,
                    field: None,
                },
                e.message().trim().to_owned(),
            ))
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Read, parse and compile every `*.toml` of a folder. File names in messages are the folder as
/// given joined with the file name (`policies/routes.toml`).
pub fn load_dir(dir: impl AsRef<Path>) -> Result<(Policy, Vec<Warning>), Vec<PolicyError>> {
    let dir = dir.as_ref();
    let paths = policy_files(dir).map_err(|e| vec![e])?;
    if paths.is_empty() {
        return Err(vec![PolicyError::new(
            Location::file(&dir.display().to_string()),
            "the policy folder has no *.toml file",
        )]);
    }
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_toml(&name, &text) {
                Ok(f) => files.push(f),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(PolicyError::new(
                Location::file(&name),
                format!("cannot read: {e}"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let policy = crate::compile::compile(files)?;
    let warnings = policy.warnings().to_vec();
    Ok((policy, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse_toml("p.toml", "[gateway]\norigin = \"https://a\"\nbogus = 1\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("p.toml: line 3, column 1: "), "{s}");
        assert!(s.contains("bogus"), "{s}");
        let e = parse_toml("p.toml", "[[route]]\nid = \"x\"\npath = \n").unwrap_err();
        assert!(e.to_string().starts_with("p.toml: line 3"), "{e}");
    }
}
