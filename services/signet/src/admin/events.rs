//! `signet admin events`: the audit trail (`/admin/v1/Events`), one JSON line per event.
//!
//! ```text
//! signet admin events [--aggregate KIND] [--since SEQ] [--limit N] [--follow]
//! ```
//!
//! Without `--follow` it prints the events after `--since` (at most `--limit`) and stops at
//! the end of the log. With `--follow` it then keeps polling for new events, waiting a
//! little longer after each empty poll (up to [`MAX_PAUSE`]) and starting again quickly
//! when events come, until interrupted (Ctrl-C, SIGTERM). Secret hashes arrive redacted
//! from the server.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::client::{AdminApi, Connection};
use super::{emit, ConnectionArgs, Exit, Failure};

/// The kinds of object `--aggregate` takes (as the server names them).
pub const AGGREGATES: [&str; 9] = [
    "client",
    "api_resource",
    "api_scope",
    "identity_resource",
    "signing_key",
    "user",
    "api_key",
    "initial_access_token",
    "identity_provider",
];
/// The first pause of `--follow` after an empty poll.
const MIN_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause of `--follow` between polls.
pub const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Events asked for per request.
const PAGE: u64 = 1000;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this kind of object
    #[arg(long, value_name = "KIND", value_parser = AGGREGATES)]
    pub aggregate: Option<String>,
    /// Only events after this sequence number (each line's `seq`; default: from the start)
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub since: u64,
    /// At most this many events (without --follow)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Keep printing new events as they are written, until interrupted
    #[arg(long, conflicts_with = "limit")]
    pub follow: bool,
}

/// The pause after a poll: back to the shortest when events came, else doubled up to
/// [`MAX_PAUSE`].
pub fn next_pause(pause: Duration, got_events: bool) -> Duration {
    if got_events {
        MIN_PAUSE
    } else {
        (pause * 2).clamp(MIN_PAUSE, MAX_PAUSE)
    }
}

/// The query of one request.
pub fn query(args: &EventsArgs, since: u64, want: u64) -> Vec<(&'static str, String)> {
    let mut q = vec![("since", since.to_string()), ("limit", want.to_string())];
    if let Some(a) = &args.aggregate {
        q.push(("aggregate", a.clone()));
    }
    q
}

/// Prints a page's events; returns how many and the `next` to ask from.
fn print_page(page: &Value, since: u64) -> Result<(u64, u64), Failure> {
    let events = page["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for e in events {
        emit(&super::compact(e));
    }
    let next = page["next"]
        .as_u64()
        .ok_or_else(|| Failure::new(Exit::Refused, "the server's answer has no `next` sequence"))?;
    Ok((events.len() as u64, next.max(since)))
}

/// Runs `signet admin events`; an interrupt ends it (successfully) at any point.
pub async fn run(conn_args: &ConnectionArgs, args: EventsArgs) -> Result<(), Failure> {
    tokio::select! {
        result = print_events(conn_args, args) => result,
        _ = shutdown() => Ok(()),
    }
}

async fn print_events(conn_args: &ConnectionArgs, args: EventsArgs) -> Result<(), Failure> {
    let conn = Connection::resolve(conn_args, &|k| std::env::var(k).ok())?;
    let mut api = AdminApi::connect(&conn).await?;
    let mut since = args.since;
    let mut left = args.limit.unwrap_or(u64::MAX);
    // Up to the end of the log (or the limit).
    while left > 0 {
        let page = api.events(&query(&args, since, left.min(PAGE))).await?;
        let (printed, next) = print_page(&page, since)?;
        left -= printed.min(left);
        if next == since {
            break;
        }
        since = next;
    }
    if !args.follow {
        return Ok(());
    }
    let mut pause = MIN_PAUSE;
    loop {
        tokio::time::sleep(pause).await;
        let page = match api.events(&query(&args, since, PAGE)).await {
            Ok(page) => page,
            // The admin token expired while following: get a new one, once.
            Err(f) if f.exit == Exit::Auth => {
                api = AdminApi::connect(&conn).await?;
                api.events(&query(&args, since, PAGE)).await?
            }
            Err(f) => return Err(f),
        };
        let (printed, next) = print_page(&page, since)?;
        // A page that moved `next` without events (a filter that matched none of a long
        // stretch) means there may be more at once.
        pause = if next > since && printed == 0 {
            Duration::ZERO
        } else {
            next_pause(pause, printed > 0)
        };
        since = next;
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_backs_off_within_bounds_and_starts_again_on_events() {
        let mut pause = MIN_PAUSE;
        let mut seen = Vec::new();
        for _ in 0..10 {
            pause = next_pause(pause, false);
            seen.push(pause);
        }
        assert_eq!(seen[0], Duration::from_millis(400));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().unwrap(), MAX_PAUSE);
        assert_eq!(next_pause(MAX_PAUSE, true), MIN_PAUSE);
        assert_eq!(next_pause(Duration::ZERO, false), MIN_PAUSE);
    }

    #[test]
    fn the_query_carries_the_filter() {
        let args = EventsArgs {
            aggregate: Some("user".into()),
            since: 0,
            limit: None,
            follow: false,
        };
        assert_eq!(
            query(&args, 7, 50),
            vec![
                ("since", "7".to_owned()),
                ("limit", "50".to_owned()),
                ("aggregate", "user".to_owned())
            ]
        );
    }
}
