//! Shared list formats: plain text (one domain per line) and Mastodon's domain-block CSV,
//! parsing (for import and subscriptions) and export.
//!
//! Plain text: one entry per line; `#` starts a comment (whole line or after an entry);
//! blank lines are skipped; `*.` globs and IP literals are accepted.
//!
//! Mastodon CSV: a header naming the columns, with or without `#` prefixes
//! (`#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate`); only
//! `domain` is required, so Mastodon's allow export (`#domain` alone) parses too. Quoted
//! fields are handled by the `csv` crate. Severity:
//! - `suspend` is an entry;
//! - `silence` is an entry too: PD has no "limited" federation, a lookup either happens or
//!   not, and a list author who limits a domain does not vouch for it, so this fails closed;
//! - `noop` rows are skipped;
//! - a missing or empty severity counts as an entry; any other severity is an error.
//!
//! Obfuscated rows (a `*` anywhere but a leading `*.`) cannot be matched and are skipped
//! with a warning. The entry's reason is the row's `private_comment` if present, else its
//! `public_comment`.
//!
//! Any malformed line makes the whole list fail with its line number: a subscription keeps
//! its last good copy rather than a partial one.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::config::{DomainPattern, Entry, EntryKind, PatternError};

/// Largest list accepted, in bytes.
pub const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;

/// The format of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// One domain per line.
    Text,
    /// Mastodon's domain-block (or domain-allow) CSV.
    MastodonCsv,
}

/// A parsed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedList {
    /// The detected or requested format.
    pub format: ListFormat,
    /// The entries, in file order.
    pub entries: Vec<Entry>,
    /// Lines that were skipped, and why.
    pub warnings: Vec<ListWarning>,
}

/// A skipped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListWarning {
    /// 1-based line number.
    pub line: u64,
    /// What was skipped and why.
    pub message: String,
}

/// Why a list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The list is larger than [`MAX_LIST_BYTES`].
    #[error("list is {0} bytes, more than the {MAX_LIST_BYTES} accepted")]
    TooLarge(usize),
    /// The list is not UTF-8.
    #[error("list is not valid UTF-8 (line {line})")]
    NotUtf8 {
        /// 1-based line of the first invalid byte.
        line: u64,
    },
    /// An entry does not parse.
    #[error("line {line}: {source}")]
    Entry {
        /// 1-based line number.
        line: u64,
        /// Why the entry was refused.
        source: PatternError,
    },
    /// A CSV line is malformed.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// The start of `added_by` on entries that `pd-server trust import` converted from a
/// list file: `import from <file>`.
pub const IMPORTED_FROM: &str = "import from ";

/// Marks entries converted from the list `file` as imported at `at`: each entry without
/// `added_by` gets `import from <file>`, and each without `added_at` gets `at`, so the
/// entries keep their provenance once pasted into the configuration.
pub fn mark_imported(entries: &mut [Entry], file: &str, at: SystemTime) {
    for entry in entries {
        if entry.added_by.is_none() {
            entry.added_by = Some(format!("{IMPORTED_FROM}{file}"));
        }
        if entry.added_at.is_none() {
            entry.added_at = Some(at);
        }
    }
}

/// The file a configured entry was imported from, when [`mark_imported`] marked it.
pub fn imported_from(entry: &Entry) -> Option<&str> {
    entry.added_by.as_deref()?.strip_prefix(IMPORTED_FROM)
}

/// Parses a list, detecting its format: CSV when the first non-blank line holds a comma
/// (which no plain-text entry can) or is `#domain` / `domain` alone, plain text otherwise.
pub fn parse(bytes: &[u8]) -> Result<ParsedList, ListError> {
    let text = decode(bytes)?;
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let is_csv = first.is_some_and(|l| {
        l.contains(',') || l.eq_ignore_ascii_case("#domain") || l.eq_ignore_ascii_case("domain")
    });
    if is_csv {
        parse_mastodon_csv(text)
    } else {
        parse_text(text)
    }
}

fn decode(bytes: &[u8]) -> Result<&str, ListError> {
    if bytes.len() > MAX_LIST_BYTES {
        return Err(ListError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ListError::NotUtf8 {
        line: line_of(bytes, e.valid_up_to()),
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn line_of(bytes: &[u8], offset: usize) -> u64 {
    let newlines = bytes.iter().take(offset).filter(|b| **b == b'\n').count();
    newlines as u64 + 1
}

/// Parses a plain-text list.
pub fn parse_text(text: &str) -> Result<ParsedList, ListError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if line.is_empty() {
            continue;
        }
        let pattern = DomainPattern::parse(line).map_err(|source| ListError::Entry {
            line: i as u64 + 1,
            source,
        })?;
        entries.push(Entry::new(pattern));
    }
    Ok(ParsedList {
        format: ListFormat::Text,
        entries,
        warnings: Vec::new(),
    })
}

/// Column positions of a Mastodon CSV header.
struct Columns {
    domain: usize,
    severity: Option<usize>,
    public_comment: Option<usize>,
    private_comment: Option<usize>,
}

/// Parses a Mastodon domain-block CSV (see the module documentation).
pub fn parse_mastodon_csv(text: &str) -> Result<ParsedList, ListError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_error = |e: csv::Error| ListError::Csv {
        line: e.position().map_or(0, csv::Position::line),
        message: match e.kind() {
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
            _ => e.to_string(),
        },
    };
    let mut records = reader.records();
    let mut columns = None;
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for record in records.by_ref() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let Some(cols) = &columns else {
            columns = Some(header(&record, line)?);
            continue;
        };
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|s| !s.is_empty());
        let domain = field(Some(cols.domain)).ok_or_else(|| ListError::Csv {
            line,
            message: "the domain column is empty".to_owned(),
        })?;
        match field(cols.severity).map(str::to_ascii_lowercase).as_deref() {
            None | Some("suspend" | "silence") => {}
            Some("noop") => continue,
            Some(other) => {
                return Err(ListError::Csv {
                    line,
                    message: format!(
                        "unknown severity {other:?} (expected suspend, silence or noop)"
                    ),
                });
            }
        }
        let is_glob = domain.strip_prefix("*.").is_some_and(|r| !r.contains('*'));
        if domain.contains('*') && !is_glob {
            warnings.push(ListWarning {
                line,
                message: format!("skipped obfuscated domain {domain:?}"),
            });
            continue;
        }
        let pattern =
            DomainPattern::parse(domain).map_err(|source| ListError::Entry { line, source })?;
        let mut entry = Entry::new(pattern);
        entry.reason = field(cols.private_comment)
            .or(field(cols.public_comment))
            .map(str::to_owned);
        entries.push(entry);
    }
    if columns.is_none() {
        return Err(ListError::Csv {
            line: 1,
            message: "no header line (expected #domain,#severity,...)".to_owned(),
        });
    }
    Ok(ParsedList {
        format: ListFormat::MastodonCsv,
        entries,
        warnings,
    })
}

fn header(record: &csv::StringRecord, line: u64) -> Result<Columns, ListError> {
    let names: Vec<String> = record
        .iter()
        .map(|h| h.trim_start_matches('#').trim().to_ascii_lowercase())
        .collect();
    let find = |name: &str| names.iter().position(|n| n == name);
    let domain = find("domain").ok_or_else(|| ListError::Csv {
        line,
        message: "header has no domain column (expected #domain,#severity,...)".to_owned(),
    })?;
    Ok(Columns {
        domain,
        severity: find("severity"),
        public_comment: find("public_comment"),
        private_comment: find("private_comment"),
    })
}

/// Exports entries as plain text, one per line. Reasons and other metadata are not part
/// of the format and are left out.
pub fn export_text(entries: &[Entry]) -> String {
    let mut out = String::new();
    for entry in entries {
        let _ = writeln!(out, "{}", entry.pattern);
    }
    out
}

/// Exports entries as Mastodon CSV. Deny entries use the domain-block header with severity
/// `suspend` and an empty `public_comment`: an entry's reason is private (it is never shown
/// to the refused side), and an export is made to be shared, so no reason ever goes into
/// it. Allow entries use Mastodon's allow export, a single `#domain` column. Globs are
/// written as `*.domain`, which only PD reads back; Mastodon already applies a plain domain
/// to its subdomains.
pub fn export_mastodon_csv(entries: &[Entry], kind: EntryKind) -> String {
    let mut out = String::new();
    match kind {
        EntryKind::Allow => {
            out.push_str("#domain\n");
            for entry in entries {
                let _ = writeln!(out, "{}", csv_field(&entry.pattern.to_string()));
            }
        }
        EntryKind::Deny => {
            out.push_str(
                "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n",
            );
            for entry in entries {
                let _ = writeln!(
                    out,
                    "{},suspend,false,false,,false",
                    csv_field(&entry.pattern.to_string()),
                );
            }
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    let needs_quotes = s.contains([',', '"', '\n', '\r']) || s.trim() != s;
    if needs_quotes {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
