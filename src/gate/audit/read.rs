//! The operator API's decision-log endpoints (issue 17 item 4), under
//! `/.well-known/attestgate/log/`, behind operator authentication ([`crate::gate::operator`]):
//!
//! | method and path | answer |
//! |---|---|
//! | `GET log/checkpoint` | the latest signed checkpoint (`text/plain`, a C2SP signed note) |
//! | `POST log/checkpoint` | sign a checkpoint of the current tree now (on demand), then as GET |
//! | `GET log/record/{index}` | `{"index", "record"}` |
//! | `GET log/inclusion/{index}/{size}` | `{"index", "size", "leaf_hash", "proof"}` (standard base64) |
//! | `GET log/consistency/{old}/{new}` | `{"old", "new", "proof"}` |
//! | `GET log/export/{start}/{end}` | records `[start, end)` as an NDJSON download ([`super::export`]) against the latest checkpoint, at most [`MAX_EXPORT`] records |
//!
//! Numbers are decimal without sign or leading zeros. What the path names is parsed here; the
//! Worker hands it to the sequencer object, which answers from its store.

use crate::policy::{Allow, Miss};
use crate::Error;

/// The prefix of the decision-log endpoints.
pub const PREFIX: &str = "/.well-known/attestgate/log/";

/// Most records in one export (page through longer ranges).
pub const MAX_EXPORT: u64 = 1000;

/// One read of the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// The latest checkpoint; `sign`: sign one of the current tree first.
    Checkpoint {
        sign: bool,
    },
    Record(u64),
    Inclusion {
        index: u64,
        size: u64,
    },
    Consistency {
        old: u64,
        new: u64,
    },
    Export {
        start: u64,
        end: u64,
    },
}

fn number(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

impl LogRead {
    /// The read `method` and `path` name: `None` when the path is not a decision-log path;
    /// 404 for a malformed one, 405 for another method.
    pub fn parse(method: &str, path: &str) -> Option<Result<LogRead, Error>> {
        let rest = path.strip_prefix(PREFIX)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let get = method == "GET" || method == "HEAD";
        let not_found = Err(Error::Route(Miss::NoRoute));
        let only_get = Err(Error::Route(Miss::MethodNotAllowed(Allow::from_static(
            "GET, HEAD",
        ))));
        let read = match parts.as_slice() {
            ["checkpoint"] => {
                if get || method == "POST" {
                    Ok(LogRead::Checkpoint {
                        sign: method == "POST",
                    })
                } else {
                    Err(Error::Route(Miss::MethodNotAllowed(Allow::from_static(
                        "GET, HEAD, POST",
                    ))))
                }
            }
            [op, a, rest @ ..] => {
                let a = number(a);
                let b = rest.first().and_then(|b| number(b));
                let arity_ok = rest.len() == usize::from(*op != "record");
                match (*op, a, b, arity_ok) {
                    (_, _, _, false) | (_, None, _, _) => not_found,
                    ("record", Some(i), _, _) => Ok(LogRead::Record(i)),
                    ("inclusion", Some(index), Some(size), _) if index < size => {
                        Ok(LogRead::Inclusion { index, size })
                    }
                    ("consistency", Some(old), Some(new), _) if old <= new => {
                        Ok(LogRead::Consistency { old, new })
                    }
                    ("export", Some(start), Some(end), _)
                        if start <= end && end - start <= MAX_EXPORT =>
                    {
                        Ok(LogRead::Export { start, end })
                    }
                    _ => not_found,
                }
            }
            _ => not_found,
        };
        Some(match read {
            Ok(LogRead::Checkpoint { .. }) | Err(_) => read,
            Ok(_) if !get => only_get,
            ok => ok,
        })
    }

    /// The sequencer object's URL for this read.
    pub fn object_url(&self) -> String {
        match self {
            LogRead::Checkpoint { sign: false } => "https://audit-log/checkpoint".into(),
            LogRead::Checkpoint { sign: true } => "https://audit-log/sign".into(),
            LogRead::Record(i) => format!("https://audit-log/record/{i}"),
            LogRead::Inclusion { index, size } => {
                format!("https://audit-log/inclusion/{index}/{size}")
            }
            LogRead::Consistency { old, new } => {
                format!("https://audit-log/consistency/{old}/{new}")
            }
            LogRead::Export { start, end } => format!("https://audit-log/export/{start}/{end}"),
        }
    }

    /// The read an object URL path names (the object's side of [`LogRead::object_url`]).
    pub fn from_object_path(path: &str) -> Option<LogRead> {
        let rest = path.strip_prefix('/')?;
        match rest {
            "checkpoint" => return Some(LogRead::Checkpoint { sign: false }),
            "sign" => return Some(LogRead::Checkpoint { sign: true }),
            _ => {}
        }
        let method = "GET";
        LogRead::parse(method, &format!("{PREFIX}{rest}"))?.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, rest: &str) -> Option<Result<LogRead, Error>> {
        LogRead::parse(method, &format!("{PREFIX}{rest}"))
    }

    #[test]
    fn paths_parse_strictly() {
        assert_eq!(
            p("GET", "checkpoint"),
            Some(Ok(LogRead::Checkpoint { sign: false }))
        );
        assert_eq!(
            p("POST", "checkpoint"),
            Some(Ok(LogRead::Checkpoint { sign: true }))
        );
        assert_eq!(p("GET", "record/7"), Some(Ok(LogRead::Record(7))));
        assert_eq!(
            p("GET", "inclusion/3/9"),
            Some(Ok(LogRead::Inclusion { index: 3, size: 9 }))
        );
        assert_eq!(
            p("GET", "consistency/0/9"),
            Some(Ok(LogRead::Consistency { old: 0, new: 9 }))
        );
        assert_eq!(
            p("GET", "export/10/20"),
            Some(Ok(LogRead::Export { start: 10, end: 20 }))
        );
        for bad in [
            "record/07",
            "record/-1",
            "record/1/2",
            "record/",
            "inclusion/9/9",
            "inclusion/1",
            "consistency/5/4",
            "export/0/1001",
            "export/5/4",
            "nothing",
            "record/99999999999999999999",
            "checkpoint/1",
        ] {
            assert_eq!(
                p("GET", bad),
                Some(Err(Error::Route(Miss::NoRoute))),
                "{bad}"
            );
        }
        assert!(matches!(
            p("DELETE", "record/1"),
            Some(Err(Error::Route(Miss::MethodNotAllowed(_))))
        ));
        assert!(matches!(
            p("PUT", "checkpoint"),
            Some(Err(Error::Route(Miss::MethodNotAllowed(_))))
        ));
        assert_eq!(
            LogRead::parse("GET", "/.well-known/attestgate/operator/whoami"),
            None
        );
        for read in [
            LogRead::Checkpoint { sign: false },
            LogRead::Checkpoint { sign: true },
            LogRead::Record(4),
            LogRead::Inclusion { index: 1, size: 2 },
            LogRead::Consistency { old: 1, new: 2 },
            LogRead::Export { start: 0, end: 2 },
        ] {
            let url = read.object_url();
            let path = url.strip_prefix("https://audit-log").unwrap();
            assert_eq!(LogRead::from_object_path(path), Some(read));
        }
    }
}
