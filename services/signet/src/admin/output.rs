//! What people read: aligned tables of objects, an apply's per-object lines with the diff
//! of each replacement, and its summary; and the JSON report of an apply for scripts.

use serde_json::{json, Value};

use super::apply::{Action, Step, Summary};
use super::{compact, Kind};

/// Columns of a kind's table: header and member.
fn columns(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Client => &[
            ("CLIENT ID", "clientId"),
            ("NAME", "clientName"),
            ("ENABLED", "enabled"),
            ("GRANT TYPES", "allowedGrantTypes"),
            ("SCOPES", "allowedScopes"),
        ],
        Kind::ApiResource => &[
            ("NAME", "name"),
            ("DISPLAY NAME", "displayName"),
            ("ENABLED", "enabled"),
            ("SCOPES", "scopes"),
            ("SIGNING ALGORITHMS", "allowedAccessTokenSigningAlgorithms"),
        ],
        Kind::InitialAccessToken => &[
            ("ID", "id"),
            ("DESCRIPTION", "description"),
            ("EXPIRES", "expiresAt"),
            ("USES", "uses"),
            ("MAX USES", "maxUses"),
            ("GRANT TYPES", "allowedGrantTypes"),
            ("SCOPES", "allowedScopes"),
        ],
        Kind::IdentityProvider => &[
            ("SCHEME", "scheme"),
            ("DISPLAY NAME", "displayName"),
            ("ENABLED", "enabled"),
            ("TYPE", "type"),
            ("AUTHORITY", "authority"),
            ("CLIENT ID", "clientId"),
        ],
        Kind::ApiScope | Kind::IdentityResource => &[
            ("NAME", "name"),
            ("DISPLAY NAME", "displayName"),
            ("ENABLED", "enabled"),
            ("REQUIRED", "required"),
            ("USER CLAIMS", "userClaims"),
        ],
    }
}

/// One cell: lists joined by commas, `<none>` for nothing.
pub fn cell(v: Option<&Value>) -> String {
    const NONE: &str = "<none>";
    match v {
        None | Some(Value::Null) => NONE.to_owned(),
        Some(Value::String(s)) if s.is_empty() => NONE.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => NONE.to_owned(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => compact(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => compact(other),
    }
}

/// Rows under headers, columns three spaces apart (as `kubectl get`), sorted by the id.
pub fn table(kind: Kind, items: &[Value]) -> String {
    let cols = columns(kind);
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| cols.iter().map(|(_, m)| cell(item.get(*m))).collect())
        .collect();
    rows.sort();
    let headers: Vec<&str> = cols.iter().map(|(h, _)| *h).collect();
    render(&headers, &rows)
}

/// The signing keys (`key list`, `key get`): KID, ALG, STATE, ACTIVATED (UTC), by
/// algorithm, then active before published before retired, then newest first.
pub fn key_table(items: &[Value]) -> String {
    let rank = |state: &str| match state {
        "active" => 0,
        "published" => 1,
        "retired" => 2,
        _ => 3,
    };
    let mut sorted: Vec<&Value> = items.iter().collect();
    sorted.sort_by_key(|k| {
        (
            k.get("alg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            rank(k.get("state").and_then(Value::as_str).unwrap_or_default()),
            std::cmp::Reverse(k.get("activatedAt").and_then(Value::as_i64)),
            k.get("kid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    });
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|k| {
            vec![
                cell(k.get("kid")),
                cell(k.get("alg")),
                cell(k.get("state")),
                k.get("activatedAt")
                    .and_then(Value::as_i64)
                    .map_or_else(|| cell(None), utc),
            ]
        })
        .collect();
    render(&["KID", "ALG", "STATE", "ACTIVATED"], &rows)
}

/// Seconds since the Unix epoch as `2026-11-20T09:30:00Z`.
pub fn utc(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(c);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `client/web replaced` and, for a replacement, one `    field: old -> new` per change.
pub fn step_lines(step: &Step<'_>, dry_run: bool) -> String {
    let doc = step.doc;
    let verb = match step.action {
        Action::Create => "created",
        Action::Replace(_) => "replaced",
        Action::Unchanged => "unchanged",
    };
    let suffix = if dry_run && step.action != Action::Unchanged {
        " (dry run)"
    } else {
        ""
    };
    let mut s = format!("{}/{} {verb}{suffix}", doc.kind.cli_name(), doc.id);
    if let Action::Replace(changes) = &step.action {
        for c in changes {
            s.push_str(&format!(
                "\n    {}: {} -> {}",
                c.field,
                compact(&c.old),
                compact(&c.new)
            ));
        }
    }
    s
}

/// `N created, M replaced, K unchanged` (or what a dry run would do).
pub fn summary_line(s: Summary, dry_run: bool) -> String {
    if dry_run {
        format!(
            "dry run: {} to create, {} to replace, {} unchanged; nothing was written",
            s.created, s.replaced, s.unchanged
        )
    } else {
        format!(
            "{} created, {} replaced, {} unchanged",
            s.created, s.replaced, s.unchanged
        )
    }
}

/// The JSON report of an apply. `applied` steps (the first `applied`, in write order) are
/// marked as written; a dry run writes none.
pub fn report(steps: &[Step<'_>], applied: usize, dry_run: bool) -> Value {
    let summary = Summary::of(steps);
    let objects: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let changes: Vec<Value> = match &s.action {
                Action::Replace(c) => c
                    .iter()
                    .map(|c| json!({"field": c.field, "old": c.old, "new": c.new}))
                    .collect(),
                _ => Vec::new(),
            };
            json!({
                "kind": s.doc.kind.name(),
                "id": s.doc.id,
                "object": s.doc.index,
                "action": s.action.label(),
                "applied": !dry_run && i < applied && s.action != Action::Unchanged,
                "changes": changes,
            })
        })
        .collect();
    json!({
        "dryRun": dry_run,
        "complete": dry_run || applied >= steps.len(),
        "created": summary.created,
        "replaced": summary.replaced,
        "unchanged": summary.unchanged,
        "objects": objects,
    })
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
