//! Build-time diagnostics: policy errors (the build fails) and warnings (the build goes on).
//!
//! Display form, one line each:
//! `policies/routes.toml: route "orders-create": field "forward": <message>`
//! `policies/providers.toml: provider "agent": field "jwks_uri": <message>`
//! `policies/gateway.toml: [gateway]: field "origin": <message>`
//! `policies/routes.toml: line 12, column 1: <message>` (TOML syntax and type errors)

use core::fmt;

/// What a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// The file as a whole.
    File,
    /// A position in the file (TOML syntax or type error), 1-based.
    Position { line: usize, column: usize },
    /// The `[gateway]` table.
    Gateway,
    /// `[provider.NAME]`.
    Provider(String),
    /// `[[route]]` with this id.
    Route(String),
    /// Another top-level table (`[operator]`, `[deny]`; issue 16).
    Section(String),
}

/// Where a diagnostic points: file, subject and field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: String,
    pub subject: Subject,
    pub field: Option<String>,
}

impl Location {
    pub fn file(file: &str) -> Self {
        Location {
            file: file.to_owned(),
            subject: Subject::File,
            field: None,
        }
    }
    pub fn gateway(file: &str, field: &str) -> Self {
        Location {
            file: file.to_owned(),
            subject: Subject::Gateway,
            field: Some(field.to_owned()),
        }
    }
    pub fn provider(file: &str, name: &str, field: &str) -> Self {
        Location {
            file: file.to_owned(),
            subject: Subject::Provider(name.to_owned()),
            field: Some(field.to_owned()),
        }
    }
    pub fn route(file: &str, id: &str, field: &str) -> Self {
        Location {
            file: file.to_owned(),
            subject: Subject::Route(id.to_owned()),
            field: Some(field.to_owned()),
        }
    }
}

impl Location {
    /// A field of the top-level table `[table]` (other than `[gateway]`).
    pub fn section(file: &str, table: &str, field: &str) -> Self {
        Location {
            file: file.to_owned(),
            subject: Subject::Section(table.to_owned()),
            field: Some(field.to_owned()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        match &self.subject {
            Subject::File => {}
            Subject::Position { line, column } => write!(f, "line {line}, column {column}: ")?,
            Subject::Gateway => f.write_str("[gateway]: ")?,
            Subject::Provider(name) => write!(f, "provider {name:?}: ")?,
            Subject::Route(id) => write!(f, "route {id:?}: ")?,
            Subject::Section(table) => write!(f, "[{table}]: ")?,
        }
        if let Some(field) = &self.field {
            write!(f, "field {field:?}: ")?;
        }
        Ok(())
    }
}

/// A policy error: the policy does not compile, the build fails.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyError {
    pub location: Location,
    pub message: String,
}

/// A policy warning: the policy compiles, the build prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

impl PolicyError {
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        PolicyError {
            location,
            message: one_line(message.into()),
        }
    }
}

impl Warning {
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Warning {
            location,
            message: one_line(message.into()),
        }
    }
}

/// Messages are printed as `cargo:warning=` lines: keep them on one line.
fn one_line(message: String) -> String {
    if message.contains(['\n', '\r']) {
        message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        message
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.location, self.message)
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.location, self.message)
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_subject_and_field() {
        let e = PolicyError::new(
            Location::route("policies/x.toml", "orders-create", "forward"),
            "bad",
        );
        assert_eq!(
            e.to_string(),
            "policies/x.toml: route \"orders-create\": field \"forward\": bad"
        );
        let e = PolicyError::new(
            Location {
                file: "a.toml".into(),
                subject: Subject::Position { line: 3, column: 7 },
                field: None,
            },
            "x\ny",
        );
        assert_eq!(e.to_string(), "a.toml: line 3, column 7: x; y");
        let w = Warning::new(Location::gateway("g.toml", "allow_insecure_http"), "on");
        assert_eq!(
            w.to_string(),
            "g.toml: [gateway]: field \"allow_insecure_http\": on"
        );
    }
}
