//! `chat lookup ADDRESS`: a user's key and presence record, as text or JSON.

use std::io::Write;

use pd_client::{LookupMode, VerifiedLookup};
use pd_proto::{Address, Endpoint};

use crate::account::{Account, Answer, now_secs};
use crate::contacts::age;
use crate::error::ChatError;
use crate::output::{rfc3339, write};

/// `chat lookup ADDRESS`: the user's key and presence record, from the home node, or the
/// stored answer when it cannot be reached.
pub(crate) async fn run(
    account: Account,
    address: &Address,
    mode: Option<LookupMode>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    match account.lookup_or_stored(address, mode).await? {
        Answer::Live(found) => print_lookup(&found, None, json, out),
        Answer::Stored { contact, why } => {
            eprintln!(
                "warning: {why}: showing the answer stored {} ago",
                age(contact.fetched_at, now_secs())
            );
            print_lookup(&contact.lookup, Some(contact.fetched_at), json, out)
        }
    }
}

/// Prints a lookup answer; `stored_at` is when a stored answer (shown because the home node
/// could not be reached) was fetched.
fn print_lookup(
    found: &VerifiedLookup,
    stored_at: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let now = now_secs();
    let response = found.response();
    let live = found.presence().filter(|p| p.is_live(now));
    if json {
        // The answer as the node sent it (signed envelope included, so scripts can verify
        // it themselves), plus the fields this client derived from it after verification.
        let mut value = serde_json::to_value(response)
            .map_err(|e| ChatError::Home(format!("failed to encode the answer: {e}")))?;
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "fingerprint".into(),
                response.public_key.fingerprint().into(),
            );
            object.insert("online".into(), live.is_some().into());
            let endpoints: Vec<&str> = live
                .map(|p| p.endpoints.iter().map(Endpoint::as_str).collect())
                .unwrap_or_default();
            object.insert("endpoints".into(), endpoints.into());
            object.insert("expires_at".into(), live.map(|p| p.expires_at).into());
            if let Some(stored_at) = stored_at {
                object.insert("source".into(), "stored".into());
                object.insert("stored_at".into(), stored_at.into());
                object.insert(
                    "stored_age_secs".into(),
                    now.saturating_sub(stored_at).into(),
                );
                let expired = found.presence().filter(|p| !p.is_live(now));
                let expired_endpoints: Vec<&str> = expired
                    .map(|p| p.endpoints.iter().map(Endpoint::as_str).collect())
                    .unwrap_or_default();
                object.insert("expired_endpoints".into(), expired_endpoints.into());
            }
        }
        return write(out, format_args!("{value:#}\n"));
    }
    let mut text = format!(
        "{}\n  fingerprint: {}\n",
        response.address,
        response.public_key.fingerprint()
    );
    let endpoints = |presence: &pd_proto::Presence, text: &mut String| {
        for (i, endpoint) in presence.endpoints.iter().enumerate() {
            let label = if i == 0 { "endpoints:" } else { "" };
            text.push_str(&format!("  {label:<12} {}\n", endpoint.as_str()));
        }
    };
    match (live, found.presence()) {
        (Some(presence), _) => {
            text.push_str(&format!(
                "  status:      online until {}\n",
                rfc3339(presence.expires_at)
            ));
            endpoints(presence, &mut text);
        }
        (None, Some(presence)) if stored_at.is_some() => {
            text.push_str(&format!(
                "  status:      offline? (its record expired at {}, {} ago)\n",
                rfc3339(presence.expires_at),
                age(presence.expires_at, now)
            ));
            endpoints(presence, &mut text);
        }
        _ => text.push_str("  status:      offline\n"),
    }
    match stored_at {
        Some(stored_at) => text.push_str(&format!(
            "  source:      stored\n  stored:      {} ago ({})\n",
            age(stored_at, now),
            rfc3339(stored_at)
        )),
        None => {
            if let Ok(serde_json::Value::String(source)) = serde_json::to_value(response.source) {
                text.push_str(&format!("  source:      {source}\n"));
            }
        }
    }
    write(out, format_args!("{text}"))
}
