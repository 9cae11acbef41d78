//! `name@host` addresses: parsing, normalisation and the validated types used everywhere else.
//!
//! An address is parsed once, at the edge, into [`Address`]; nothing downstream handles raw
//! strings. Normalisation lowercases both parts, strips a trailing dot from the host and
//! converts internationalised host names to their ASCII (punycode) form, so two spellings of
//! the same address compare equal and produce the same cache and trust-list keys.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted local name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Longest accepted host name (without port), in bytes, after conversion to ASCII.
pub const MAX_HOST_LEN: usize = 253;
/// Longest accepted DNS label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest accepted whole address (`name@host[:port]`), in bytes, after normalisation.
pub const MAX_ADDRESS_LEN: usize = 255;
/// Inputs longer than this are refused before any further work.
const MAX_INPUT_LEN: usize = 1024;

/// Why a string is not a valid address, name or host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The input was empty.
    #[error("address is empty")]
    Empty,
    /// The input is longer than any valid address could be.
    #[error("address is longer than {MAX_ADDRESS_LEN} bytes")]
    TooLong,
    /// There is no `@` separating name and host.
    #[error("address has no '@' (expected name@host)")]
    MissingAt,
    /// There is more than one `@`.
    #[error("address has more than one '@'")]
    MultipleAt,
    /// The part before `@` is empty.
    #[error("the name before '@' is empty")]
    EmptyName,
    /// The name is longer than allowed.
    #[error("name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    /// The name holds a character outside `a-z 0-9 . _ -`.
    #[error("name contains {0:?}; only letters, digits, '.', '_' and '-' are allowed")]
    NameInvalidChar(char),
    /// The name starts or ends with punctuation.
    #[error("name must start and end with a letter or digit")]
    NameEdge,
    /// The part after `@` is empty.
    #[error("the host after '@' is empty")]
    EmptyHost,
    /// The host holds a character that can never be part of a host name.
    #[error("host contains {0:?}, which is not allowed in a host name")]
    HostInvalidChar(char),
    /// The host could not be converted to an ASCII host name (IDNA failure).
    #[error("host {0:?} is not a valid internationalised domain name")]
    HostNotIdna(String),
    /// A label of the host is empty (two dots in a row, or a leading dot).
    #[error("host has an empty label")]
    EmptyLabel,
    /// A label of the host is longer than 63 bytes.
    #[error("host has a label longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong,
    /// A label of the host starts or ends with a hyphen.
    #[error("host label {0:?} starts or ends with '-'")]
    LabelHyphen(String),
    /// The host is longer than 253 bytes.
    #[error("host is longer than {MAX_HOST_LEN} bytes")]
    HostTooLong,
    /// A numeric host that is not a plain dotted-quad IPv4 address (e.g. `127.1`, `0x7f.0.0.1`).
    #[error("host {0:?} looks numeric but is not a dotted-quad IPv4 address")]
    AmbiguousNumericHost(String),
    /// A bracketed IPv6 literal that does not parse.
    #[error("host {0:?} is not a valid IPv6 literal")]
    BadIpv6(String),
    /// The port is not a number in 1-65535.
    #[error("port {0:?} is not a number between 1 and 65535")]
    BadPort(String),
}

/// The local part of an address: 1-64 characters of `a-z 0-9 . _ -`, lowercase,
/// starting and ending with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Parses and normalises (lowercases) a name.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::EmptyName);
        }
        // Every valid name is ASCII of the allowed characters: one pass over the bytes
        // decides it (the character-wise checks below only tell which error it is).
        let bytes = input.as_bytes();
        if bytes.len() <= MAX_NAME_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            let edge_ok = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
            if !edge_ok(bytes.first()) || !edge_ok(bytes.last()) {
                return Err(AddressError::NameEdge);
            }
            return Ok(Self(input.to_ascii_lowercase()));
        }
        if input.chars().count() > MAX_NAME_LEN {
            return Err(AddressError::NameTooLong);
        }
        if let Some(c) = input
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(AddressError::NameInvalidChar(c));
        }
        let name = input.to_ascii_lowercase();
        let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
            return Err(AddressError::NameEdge);
        }
        Ok(Self(name))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What kind of host an address names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostKind {
    /// A DNS name in lowercase ASCII (punycode) form, without a trailing dot.
    Domain(String),
    /// An IPv4 literal.
    Ipv4(Ipv4Addr),
    /// An IPv6 literal (written in brackets).
    Ipv6(Ipv6Addr),
}

/// A normalised host with an optional port: the part of an address after `@`, and the
/// identity of a PD node ("its domain").
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host {
    kind: HostKind,
    port: Option<u16>,
}

impl Host {
    /// Parses and normalises a host with an optional `:port`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::EmptyHost);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(AddressError::TooLong);
        }
        if let Some(rest) = input.strip_prefix('[') {
            let (literal, after) = rest
                .split_once(']')
                .ok_or_else(|| AddressError::BadIpv6(input.to_owned()))?;
            let ip: Ipv6Addr = literal
                .parse()
                .map_err(|_| AddressError::BadIpv6(input.to_owned()))?;
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| AddressError::BadIpv6(input.to_owned()))?,
                )?),
            };
            return Ok(Self {
                kind: HostKind::Ipv6(ip),
                port,
            });
        }
        let (host, port) = match input.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (input, None),
        };
        Ok(Self {
            kind: parse_host_name(host)?,
            port,
        })
    }

    /// The domain name or IP literal.
    pub fn kind(&self) -> &HostKind {
        &self.kind
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The host without its port: the domain, the IPv4 address, or the bracketed IPv6 address.
    pub fn hostname(&self) -> String {
        match &self.kind {
            HostKind::Domain(d) => d.clone(),
            HostKind::Ipv4(ip) => ip.to_string(),
            HostKind::Ipv6(ip) => format!("[{ip}]"),
        }
    }

    /// Whether this host is an IP literal rather than a DNS name.
    pub fn is_ip_literal(&self) -> bool {
        !matches!(self.kind, HostKind::Domain(_))
    }
}

fn parse_port(p: &str) -> Result<u16, AddressError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::BadPort(p.to_owned()));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(AddressError::BadPort(p.to_owned())),
        Ok(port) => Ok(port),
    }
}

fn parse_host_name(host: &str) -> Result<HostKind, AddressError> {
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    // Characters that are never part of a host name. Rejecting them before the URL
    // standard's host parser matters: it would percent-decode `%41` or drop tabs.
    if let Some(c) = host.chars().find(|c| {
        c.is_control()
            || c.is_whitespace()
            || matches!(
                c,
                '/' | '\\'
                    | '%'
                    | '?'
                    | '#'
                    | '@'
                    | ':'
                    | '['
                    | ']'
                    | '<'
                    | '>'
                    | '^'
                    | '|'
                    | '*'
                    | '"'
                    | '\''
                    | '`'
                    | '{'
                    | '}'
                    | '!'
                    | '$'
                    | '&'
                    | '('
                    | ')'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | '~'
            )
    }) {
        return Err(AddressError::HostInvalidChar(c));
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty() || trimmed.starts_with('.') || trimmed.contains("..") {
        return Err(AddressError::EmptyLabel);
    }
    if plain_ascii_domain(trimmed) {
        let ascii = trimmed.to_ascii_lowercase();
        validate_dns_name(&ascii)?;
        return Ok(HostKind::Domain(ascii));
    }
    let parsed = url::Host::parse(trimmed).map_err(|_| {
        if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            AddressError::AmbiguousNumericHost(host.to_owned())
        } else {
            AddressError::HostNotIdna(host.to_owned())
        }
    })?;
    match parsed {
        url::Host::Ipv4(ip) => {
            // The URL standard also accepts `127.1`, `0x7f.0.0.1` and `2130706433`. Only the
            // canonical dotted-quad spelling is an IP literal here; the rest is refused.
            if ip.to_string() == trimmed {
                Ok(HostKind::Ipv4(ip))
            } else {
                Err(AddressError::AmbiguousNumericHost(host.to_owned()))
            }
        }
        url::Host::Ipv6(_) => Err(AddressError::HostInvalidChar('[')),
        url::Host::Domain(ascii) => {
            let ascii = ascii.to_ascii_lowercase();
            validate_dns_name(&ascii)?;
            Ok(HostKind::Domain(ascii))
        }
    }
}

/// Whether the URL standard's host parser would only lowercase `host`, so it can be
/// skipped (it is the costly part of parsing an address, and lookups parse one each): ASCII
/// letters, digits, hyphens and dots only, no label in punycode (`xn--`, which must be
/// decoded and checked), and a last label starting with a letter, so the host cannot be
/// read as an IPv4 number. Everything else takes the full path.
fn plain_ascii_domain(host: &str) -> bool {
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.split('.').all(|label| {
            !label
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
        })
        && host
            .rsplit('.')
            .next()
            .and_then(|last| last.bytes().next())
            .is_some_and(|b| b.is_ascii_alphabetic())
}

fn validate_dns_name(name: &str) -> Result<(), AddressError> {
    if name.len() > MAX_HOST_LEN {
        return Err(AddressError::HostTooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(AddressError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(AddressError::HostInvalidChar(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::LabelHyphen(label.to_owned()));
        }
    }
    Ok(())
}

/// A validated, normalised `name@host[:port]` address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    name: Name,
    host: Host,
}

impl Address {
    /// Parses and normalises an address.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(AddressError::TooLong);
        }
        let mut parts = input.split('@');
        let (name, host) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(h), None) => (n, h),
            (Some(_), None, _) => return Err(AddressError::MissingAt),
            _ => return Err(AddressError::MultipleAt),
        };
        let address = Self {
            name: Name::parse(name)?,
            host: Host::parse(host)?,
        };
        address.check_len()?;
        Ok(address)
    }

    /// Refuses an address whose text is longer than [`MAX_ADDRESS_LEN`], measured without
    /// allocating it (every lookup parses an address).
    fn check_len(&self) -> Result<(), AddressError> {
        struct Len(usize);
        impl fmt::Write for Len {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 += s.len();
                Ok(())
            }
        }
        let mut len = Len(0);
        // Writing to `Len` cannot fail.
        let _ = fmt::write(&mut len, format_args!("{self}"));
        if len.0 > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        Ok(())
    }

    /// Joins an already validated name and host.
    pub fn new(name: Name, host: Host) -> Result<Self, AddressError> {
        let address = Self { name, host };
        address.check_len()?;
        Ok(address)
    }

    /// The local name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The host (the domain of the user's home node).
    pub fn host(&self) -> &Host {
        &self.host
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self.0)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            HostKind::Domain(d) => f.write_str(d)?,
            HostKind::Ipv4(ip) => write!(f, "{ip}")?,
            HostKind::Ipv6(ip) => write!(f, "[{ip}]")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({self})")
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.host)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

macro_rules! string_serde {
    ($ty:ty, $what:literal) => {
        impl FromStr for $ty {
            type Err = AddressError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&s)
                    .map_err(|e| serde::de::Error::custom(format!("invalid {}: {e}", $what)))
            }
        }
    };
}

string_serde!(Name, "name");
string_serde!(Host, "host");
string_serde!(Address, "address");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(input: &str, expected: &str) {
        let a = Address::parse(input).unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
        assert_eq!(a.to_string(), expected, "normalising {input:?}");
    }

    fn err(input: &str, expected: AddressError) {
        assert_eq!(Address::parse(input), Err(expected), "parsing {input:?}");
    }

    #[test]
    fn case_and_trailing_dot_are_normalised() {
        ok("Gordon.Freeman@BlackMesa.US", "gordon.freeman@blackmesa.us");
        ok(
            "gordon.freeman@blackmesa.us.",
            "gordon.freeman@blackmesa.us",
        );
        assert_eq!(
            Address::parse("Gordon.Freeman@BlackMesa.US").unwrap(),
            Address::parse("gordon.freeman@blackmesa.us").unwrap()
        );
    }

    #[test]
    fn unicode_hosts_become_punycode() {
        ok("alice@bücher.example", "alice@xn--bcher-kva.example");
        ok("alice@BÜCHER.example", "alice@xn--bcher-kva.example");
        // A Cyrillic 'о' does not collapse into the Latin spelling.
        let lookalike = Address::parse("alice@mastоdon.social").unwrap();
        assert_ne!(lookalike, Address::parse("alice@mastodon.social").unwrap());
        assert!(lookalike.host().hostname().starts_with("xn--"));
    }

    #[test]
    fn ports_and_ip_literals() {
        ok("bob@localhost:8080", "bob@localhost:8080");
        ok("bob@127.0.0.1", "bob@127.0.0.1");
        ok("bob@[::1]:8448", "bob@[::1]:8448");
        ok("bob@[2001:DB8::1]", "bob@[2001:db8::1]");
        assert!(Address::parse("bob@[::1]").unwrap().host().is_ip_literal());
        err("bob@host:0", AddressError::BadPort("0".into()));
        err("bob@host:65536", AddressError::BadPort("65536".into()));
        err("bob@host:+80", AddressError::BadPort("+80".into()));
        err("bob@host:", AddressError::BadPort(String::new()));
        // `host:80:80` splits at the last ':' and then finds ':' inside the host part.
        err("bob@host:80:80", AddressError::HostInvalidChar(':'));
    }

    #[test]
    fn numeric_hosts_must_be_dotted_quads() {
        err(
            "a@127.1",
            AddressError::AmbiguousNumericHost("127.1".into()),
        );
        err(
            "a@0x7f.0.0.1",
            AddressError::AmbiguousNumericHost("0x7f.0.0.1".into()),
        );
        err(
            "a@2130706433",
            AddressError::AmbiguousNumericHost("2130706433".into()),
        );
        err(
            "a@1.2.3.999",
            AddressError::AmbiguousNumericHost("1.2.3.999".into()),
        );
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        err("", AddressError::Empty);
        err("alice", AddressError::MissingAt);
        err("a@b@c", AddressError::MultipleAt);
        err("@host", AddressError::EmptyName);
        err("alice@", AddressError::EmptyHost);
        err("al ice@host", AddressError::NameInvalidChar(' '));
        err("alice@ho st", AddressError::HostInvalidChar(' '));
        err("al/ice@host", AddressError::NameInvalidChar('/'));
        err("alice@host/x", AddressError::HostInvalidChar('/'));
        err("alice@h%41st", AddressError::HostInvalidChar('%'));
        err("alice@host?x", AddressError::HostInvalidChar('?'));
        err("alice@host#x", AddressError::HostInvalidChar('#'));
        err("alice@host\r\n", AddressError::HostInvalidChar('\r'));
        err("ali\u{0}ce@host", AddressError::NameInvalidChar('\u{0}'));
        err(".alice@host", AddressError::NameEdge);
        err("alice-@host", AddressError::NameEdge);
        err("alicé@host", AddressError::NameInvalidChar('é'));
        err("alice@a..b", AddressError::EmptyLabel);
        err("alice@.a", AddressError::EmptyLabel);
        err("alice@a.b..", AddressError::EmptyLabel);
        err("alice@-a.b", AddressError::LabelHyphen("-a".into()));
        err("alice@a-.b", AddressError::LabelHyphen("a-".into()));
        err("alice@a_b.c", AddressError::HostInvalidChar('_'));
        err("alice@[::1", AddressError::BadIpv6("[::1".into()));
        err("alice@[zz]", AddressError::BadIpv6("[zz]".into()));
    }

    #[test]
    fn length_limits() {
        let name64 = "a".repeat(64);
        ok(&format!("{name64}@h"), &format!("{name64}@h"));
        err(&format!("{}@h", "a".repeat(65)), AddressError::NameTooLong);
        let label63 = "b".repeat(63);
        ok(&format!("a@{label63}.c"), &format!("a@{label63}.c"));
        err(
            &format!("a@{}.c", "b".repeat(64)),
            AddressError::LabelTooLong,
        );
        // 4 labels of 63 plus dots = 255 > 253.
        let long_host = [label63.as_str(); 4].join(".");
        assert!(Address::parse(&format!("a@{long_host}")).is_err());
        // A 253-byte host with a 64-byte name exceeds the 255-byte address limit.
        let host253 = format!("{}.{}.{}.{}", label63, label63, label63, "c".repeat(61));
        assert_eq!(host253.len(), 253);
        ok(&format!("a@{host253}"), &format!("a@{host253}"));
        err(&format!("{name64}@{host253}"), AddressError::TooLong);
        err(&"a".repeat(5000), AddressError::TooLong);
    }

    #[test]
    fn serde_round_trip_uses_the_normal_form() {
        let a: Address = serde_json::from_str("\"Alice@Example.COM.\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"alice@example.com\"");
        let e = serde_json::from_str::<Address>("\"nope\"").unwrap_err();
        assert!(e.to_string().contains("invalid address"), "{e}");
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC*") {
            let _ = Address::parse(&s);
        }

        /// The shortcut for plain ASCII names gives exactly what the URL standard's host
        /// parser gives, for hosts made of the characters it accepts (numbers, hex and
        /// punycode labels included).
        #[test]
        fn plain_ascii_shortcut_agrees_with_the_url_parser(
            host in "([a-zA-Z0-9-]{1,6}|[0-9]{1,3}|0[xX][0-9a-fA-F]{1,4}|[xX][nN]--[a-z0-9-]{1,6})(\\.([a-zA-Z0-9-]{1,6}|[0-9]{1,3}|0[xX][0-9a-fA-F]{1,4}|[xX][nN]--[a-z0-9-]{1,6})){0,3}",
        ) {
            if plain_ascii_domain(&host) {
                let via_url = match url::Host::parse(&host) {
                    Ok(url::Host::Domain(d)) => Some(d.to_ascii_lowercase()),
                    _ => None,
                };
                prop_assert_eq!(via_url, Some(host.to_ascii_lowercase()), "{}", host);
            }
        }

        #[test]
        fn parser_never_panics_on_address_like_input(s in "[a-zA-Z0-9._%@:\\[\\]-]{0,80}") {
            let _ = Address::parse(&s);
        }

        #[test]
        fn normalising_twice_changes_nothing(
            name in "[a-zA-Z0-9]([a-zA-Z0-9._-]{0,20}[a-zA-Z0-9])?",
            labels in proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", 1..4),
            tld in "[a-zA-Zа-яü]{2,6}",
            port in proptest::option::of(1u16..),
            dot in any::<bool>(),
        ) {
            let mut host = labels.join(".");
            host.push('.');
            host.push_str(&tld);
            if dot { host.push('.'); }
            if let Some(p) = port { host.push_str(&format!(":{p}")); }
            let input = format!("{name}@{host}");
            if let Ok(once) = Address::parse(&input) {
                let twice = Address::parse(&once.to_string()).unwrap();
                prop_assert_eq!(&once, &twice);
                prop_assert_eq!(once.to_string(), twice.to_string());
            }
        }

        #[test]
        fn any_accepted_address_reparses_to_itself(s in "\\PC{0,40}") {
            if let Ok(once) = Address::parse(&s) {
                prop_assert_eq!(Address::parse(&once.to_string()), Ok(once));
            }
        }
    }
}
