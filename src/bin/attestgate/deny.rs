//! `attestgate deny add|list|get|rm`: the deny list's operator API (issue 16,
//! `docs/openapi/operator.yaml`) from the command line.
//!
//! The gateway's URL is `--gateway URL` (or `ATTESTGATE_GATEWAY`); the operator's token, a token
//! of the policy's `[operator]` provider with its scopes, comes from `ATTESTGATE_OPERATOR_TOKEN`
//! or `--token-file FILE`, never from the command line (where any user could read it in the
//! process list) and never in a URL. The request is sent by `curl` (HTTPS, proxies and CA
//! settings as the system has them), the token handed to it on its standard input.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use serde_json::{json, Map, Value};

use crate::usage;

const API: &str = "/.well-known/attestgate/deny";

struct Opts {
    gateway: Option<String>,
    token_file: Option<String>,
    kind: Option<String>,
    values: Map<String, Value>,
    reason: Option<String>,
    fence: Option<i64>,
    limit: Option<u32>,
    after: Option<String>,
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        gateway: std::env::var("ATTESTGATE_GATEWAY").ok(),
        token_file: None,
        kind: None,
        values: Map::new(),
        reason: None,
        fence: None,
        limit: None,
        after: None,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--gateway" => o.gateway = Some(value()?),
            "--token-file" => o.token_file = Some(value()?),
            "--kind" => o.kind = Some(value()?),
            "--value" | "--iss" | "--sub" | "--jti" | "--sid" => {
                let name = arg.trim_start_matches('-').to_owned();
                o.values.insert(name, Value::String(value()?));
            }
            "--reason" => o.reason = Some(value()?),
            "--fence" => {
                o.fence = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--fence takes unix seconds".to_owned())?,
                )
            }
            "--limit" => {
                o.limit = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--limit takes a number".to_owned())?,
                )
            }
            "--after" => o.after = Some(value()?),
            "--token" => {
                return Err(
                    "the token is never a command-line argument: set ATTESTGATE_OPERATOR_TOKEN or use --token-file"
                        .into(),
                )
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => o.rest.push(other.to_owned()),
        }
    }
    Ok(o)
}

fn token(o: &Opts) -> Result<String, String> {
    let text = match &o.token_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => std::env::var("ATTESTGATE_OPERATOR_TOKEN").map_err(|_| {
            "no operator token: set ATTESTGATE_OPERATOR_TOKEN or use --token-file".to_owned()
        })?,
    };
    let t = text.trim().to_owned();
    if t.is_empty() || t.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("the operator token is empty or not a compact JWS".into());
    }
    Ok(t)
}

/// Send one request with curl; the answer's status and body.
fn send(
    gateway: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let url = format!("{}{path}", gateway.trim_end_matches('/'));
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("{gateway:?} is not an http(s) URL"));
    }
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-X", method, "-H", "@-"])
        .args(["-w", "\n%{http_code}"]);
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary"])
            .arg(body.to_string());
    }
    cmd.arg("--").arg(&url);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "authorization: Bearer {token}").map_err(|e| format!("curl: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status
        .trim()
        .parse()
        .map_err(|_| "no HTTP status from curl".to_owned())?;
    Ok((status, body.to_owned()))
}

fn print_answer(status: u16, body: &str) -> ExitCode {
    let pretty = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned());
    if (200..300).contains(&status) {
        println!("{pretty}");
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the gateway answered {status}\n{pretty}");
        ExitCode::FAILURE
    }
}

pub fn deny(args: &[String]) -> ExitCode {
    let Some((verb, args)) = args.split_first() else {
        return usage("deny needs add, list, get or rm");
    };
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => return usage(&e),
    };
    let Some(gateway) = o.gateway.clone() else {
        return usage("no gateway URL: --gateway URL or ATTESTGATE_GATEWAY");
    };
    let token = match token(&o) {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let sent = match verb.as_str() {
        "add" => {
            let (Some(kind), Some(reason)) = (&o.kind, &o.reason) else {
                return usage("deny add needs --kind and --reason");
            };
            let mut body = o.values.clone();
            body.insert("kind".into(), json!(kind));
            body.insert("reason".into(), json!(reason));
            if let Some(f) = o.fence {
                body.insert("fence".into(), json!(f));
            }
            send(&gateway, "POST", API, &token, Some(&Value::Object(body)))
        }
        "list" => {
            let mut q = Vec::new();
            if let Some(l) = o.limit {
                q.push(format!("limit={l}"));
            }
            if let Some(a) = &o.after {
                if !a
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return usage("--after takes an entry id");
                }
                q.push(format!("after={a}"));
            }
            let path = if q.is_empty() {
                API.to_owned()
            } else {
                format!("{API}?{}", q.join("&"))
            };
            send(&gateway, "GET", &path, &token, None)
        }
        "get" | "rm" => {
            let [id] = o.rest.as_slice() else {
                return usage("deny get/rm takes one entry id");
            };
            if !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return usage("not an entry id");
            }
            let method = if verb == "rm" { "DELETE" } else { "GET" };
            send(&gateway, method, &format!("{API}/{id}"), &token, None)
        }
        other => return usage(&format!("unknown deny verb {other:?}")),
    };
    match sent {
        Ok((status, body)) => print_answer(status, &body),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
