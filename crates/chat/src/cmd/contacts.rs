//! `chat contacts` (and `contacts remove`): the stored answers of the people talked with.

use std::io::Write;

use pd_proto::Address;

use crate::account::now_secs;
use crate::contacts::{Contacts, age};
use crate::error::ChatError;
use crate::home::Home;
use crate::output::write;

/// `chat contacts`: everyone whose answer is stored, with when they were last seen online and
/// talked with.
pub(crate) fn list(home: &Home, json: bool, out: &mut dyn Write) -> Result<(), ChatError> {
    home.config()?;
    let contacts = Contacts::new(home.clone()).list()?;
    let now = now_secs();
    if json {
        let list: Vec<serde_json::Value> = contacts
            .iter()
            .map(|c| {
                serde_json::json!({
                    "address": c.address,
                    "public_key": c.key.map(|k| k.to_string()),
                    "fingerprint": c.key.map(|k| k.fingerprint()),
                    "fetched_at": c.fetched_at,
                    "last_seen_online": c.last_seen_online,
                    "last_talked": c.last_talked,
                    "damaged": c.damaged,
                })
            })
            .collect();
        return write(out, format_args!("{:#}\n", serde_json::Value::from(list)));
    }
    if contacts.is_empty() {
        return write(
            out,
            format_args!(
                "no contacts yet (an answer is kept for everyone you look up or talk with)\n"
            ),
        );
    }
    let when =
        |t: Option<u64>| t.map_or_else(|| "never".to_owned(), |t| format!("{} ago", age(t, now)));
    let rows: Vec<[String; 5]> = contacts
        .iter()
        .map(|c| {
            [
                c.address.clone(),
                c.key.map_or_else(
                    || "(damaged: `chat contacts remove` it)".to_owned(),
                    |k| k.fingerprint(),
                ),
                when(c.last_seen_online),
                when(c.last_talked),
                when(Some(c.fetched_at)),
            ]
        })
        .collect();
    let header = [
        "ADDRESS",
        "FINGERPRINT",
        "LAST SEEN ONLINE",
        "LAST TALKED",
        "STORED",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut row = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                row.push_str(cell);
            } else {
                row.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(row.trim_end());
        text.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    write(out, format_args!("{text}"))
}

/// `chat contacts remove ADDRESS`: forgets a contact's stored answer.
pub(crate) fn remove(home: Home, address: &Address, out: &mut dyn Write) -> Result<(), ChatError> {
    home.config()?;
    if Contacts::new(home).remove(address)? {
        write(out, format_args!("forgot the stored answer of {address}\n"))
    } else {
        Err(ChatError::Home(format!(
            "{address} is not among the contacts (`chat contacts` lists them)"
        )))
    }
}
