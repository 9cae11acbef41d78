//! Tests of the trust policy: configuration, matching, explain, lists, the shared handle
//! and subscriptions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pd_proto::address::Host;
use serde::Deserialize;
use url::Url;

use super::*;

const OWN: &str = "home.example";

fn host(s: &str) -> Host {
    Host::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

fn now() -> SystemTime {
    at("2026-06-01T00:00:00Z")
}

#[derive(Deserialize)]
struct NodeConfig {
    #[serde(default)]
    trust: TrustConfig,
}

fn config(toml_text: &str) -> TrustConfig {
    toml::from_str::<NodeConfig>(toml_text).unwrap().trust
}

fn config_err(toml_text: &str) -> String {
    match toml::from_str::<NodeConfig>(toml_text) {
        Ok(_) => panic!("accepted: {toml_text}"),
        Err(e) => e.to_string(),
    }
}

fn policy(toml_text: &str) -> TrustPolicy {
    TrustPolicy::new(host(OWN), config(toml_text)).unwrap()
}

fn allowed(p: &TrustPolicy, h: &str) -> bool {
    p.decide(&host(h), now()).allowed
}

fn explain(p: &TrustPolicy, h: &str) -> String {
    p.explain(&host(h), now())
}

const ISSUE_CONFIG: &str = r#"
[trust]
mode = "allowlist"            # or "open" (the default)
allow = ["blackmesa.us", "*.aperture.example"]
deny = ["xen.example", { domain = "spam.example", reason = "spam wave", expires = "2027-01-01T00:00:00Z" }]
subscriptions = [{ url = "https://community.example/allow.txt", kind = "allow", refresh = "6h" }]
"#;

mod config_shape {
    use super::*;

    #[test]
    fn the_documented_shape_parses() {
        let c = config(ISSUE_CONFIG);
        assert_eq!(c.mode(), Mode::Allowlist);
        let allow: Vec<String> = c.allow.iter().map(|e| e.pattern.to_string()).collect();
        assert_eq!(allow, ["blackmesa.us", "*.aperture.example"]);
        assert_eq!(
            c.deny[0],
            Entry::new(DomainPattern::parse("xen.example").unwrap())
        );
        assert_eq!(c.deny[1].pattern.to_string(), "spam.example");
        assert_eq!(c.deny[1].reason.as_deref(), Some("spam wave"));
        assert_eq!(c.deny[1].expires, Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(c.subscriptions.len(), 1);
        assert_eq!(
            c.subscriptions[0].url.as_str(),
            "https://community.example/allow.txt"
        );
        assert_eq!(c.subscriptions[0].kind, EntryKind::Allow);
        assert_eq!(c.subscriptions[0].refresh, Duration::from_secs(6 * 3600));
        c.validate().unwrap();
    }

    #[test]
    fn defaults_are_open_and_empty() {
        let c = config("");
        assert_eq!(c, TrustConfig::default());
        assert_eq!(c.mode(), Mode::Open);
        let c =
            config("[trust]\nsubscriptions = [{ url = \"https://l.example/x\", kind = \"deny\" }]");
        assert_eq!(c.subscriptions[0].refresh, DEFAULT_REFRESH);
    }

    #[test]
    fn table_entries_carry_metadata() {
        let c = config(
            r#"[trust]
deny = [{ domain = "Spam.Example.", reason = "r", added_by = "ops", added_at = "2026-01-02T03:04:05Z" }]"#,
        );
        let e = &c.deny[0];
        assert_eq!(e.pattern.to_string(), "spam.example");
        assert_eq!(e.added_by.as_deref(), Some("ops"));
        assert_eq!(e.added_at, Some(at("2026-01-02T03:04:05Z")));
        assert_eq!(e.expires, None);
    }

    #[test]
    fn serialising_gives_back_the_same_config() {
        let c = config(ISSUE_CONFIG);
        #[derive(serde::Serialize)]
        struct Wrapper<'a> {
            trust: &'a TrustConfig,
        }
        let text = toml::to_string(&Wrapper { trust: &c }).unwrap();
        assert_eq!(config(&text), c, "{text}");
    }

    #[test]
    fn mistakes_are_refused_with_a_clear_message() {
        let e = config_err("[trust]\ndney = [\"xen.example\"]");
        assert!(e.contains("unknown field `dney`"), "{e}");
        let e = config_err("[trust]\nmode = \"closed\"");
        assert!(e.contains("unknown variant `closed`"), "{e}");
        let e = config_err("[trust]\ndeny = [\"xen.example:8443\"]");
        assert!(e.contains("has a port"), "{e}");
        let e = config_err("[trust]\ndeny = [\"a.*.example\"]");
        assert!(e.contains("'*' other than a leading '*.'"), "{e}");
        let e = config_err("[trust]\ndeny = [\"bad domain\"]");
        assert!(e.contains("not a valid domain"), "{e}");
        let e = config_err("[trust]\ndeny = [\"\"]");
        assert!(e.contains("entry is empty"), "{e}");
        let e = config_err("[trust]\ndeny = [{ domain = \"a.example\", expires = \"tomorrow\" }]");
        assert!(e.contains("RFC 3339"), "{e}");
        let e = config_err("[trust]\ndeny = [{ domain = \"a.example\", why = \"x\" }]");
        assert!(e.contains("unknown field `why`"), "{e}");
        let e = config_err("[trust]\ndeny = [{ reason = \"x\" }]");
        assert!(e.contains("missing field `domain`"), "{e}");
        let e = config_err("[trust]\ndeny = [\"*.192.0.2.1\"]");
        assert!(e.contains("glob on an IP"), "{e}");
    }

    #[test]
    fn subscriptions_must_be_https_unique_and_not_too_frequent() {
        let c = config(
            "[trust]\nsubscriptions = [{ url = \"http://l.example/a.txt\", kind = \"allow\" }]",
        );
        let e = TrustPolicy::new(host(OWN), c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "trust subscription http://l.example/a.txt is not an https URL"
        );
        let c = config(
            "[trust]\nsubscriptions = [{ url = \"https://l.example/a\", kind = \"allow\" }, { url = \"https://l.example/a\", kind = \"deny\" }]",
        );
        assert!(matches!(
            c.validate(),
            Err(TrustError::DuplicateSubscription(_))
        ));
        let c = config(
            "[trust]\nsubscriptions = [{ url = \"https://l.example/a\", kind = \"allow\", refresh = \"10s\" }]",
        );
        assert!(matches!(c.validate(), Err(TrustError::RefreshTooShort(_))));
    }

    #[test]
    fn the_policy_may_live_in_a_separate_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("trust.toml"),
            "mode = \"allowlist\"\nallow = [\"blackmesa.us\"]\n",
        )
        .unwrap();
        let c = config("[trust]\nfile = \"trust.toml\"");
        assert!(matches!(
            TrustPolicy::new(host(OWN), c.clone()),
            Err(TrustError::Unresolved(_))
        ));
        let resolved = c.resolve(dir.path()).unwrap();
        assert_eq!(resolved.mode(), Mode::Allowlist);
        assert_eq!(resolved.allow.len(), 1);
        assert_eq!(resolved.file, None);

        let both = config("[trust]\nfile = \"trust.toml\"\ndeny = [\"x.example\"]");
        assert!(matches!(
            both.resolve(dir.path()),
            Err(TrustError::InlineAndFile(_))
        ));
        let missing = config("[trust]\nfile = \"nope.toml\"");
        let e = missing.resolve(dir.path()).unwrap_err();
        assert!(
            e.to_string().starts_with("failed to read trust file"),
            "{e}"
        );
        std::fs::write(dir.path().join("bad.toml"), "allow = [\"a b\"]\n").unwrap();
        let bad = config("[trust]\nfile = \"bad.toml\"");
        let e = bad.resolve(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("bad.toml") && e.contains("not a valid domain"),
            "{e}"
        );
    }
}

mod matching {
    use super::*;

    #[test]
    fn a_plain_entry_covers_the_domain_and_its_subdomains() {
        let p = policy("[trust]\ndeny = [\"xen.example\"]");
        assert!(!allowed(&p, "xen.example"));
        assert!(!allowed(&p, "sub.xen.example"));
        assert!(!allowed(&p, "a.b.xen.example"));
        assert!(allowed(&p, "notxen.example"));
        assert!(allowed(&p, "xen.example.com"));
        assert!(allowed(&p, "example"));
    }

    #[test]
    fn case_and_trailing_dots_cannot_slip_past() {
        let p = policy("[trust]\ndeny = [\"Xen.Example.\"]");
        assert!(!allowed(&p, "XEN.example."));
        assert!(!allowed(&p, "Sub.XEN.Example"));
        assert!(
            !allowed(&p, "xen.example:8443"),
            "ports are governed by the domain"
        );
    }

    #[test]
    fn globs_match_strict_subdomains_only() {
        let p = policy("[trust]\nmode = \"allowlist\"\nallow = [\"*.aperture.example\"]");
        assert!(allowed(&p, "lab.aperture.example"));
        assert!(allowed(&p, "a.lab.aperture.example"));
        assert!(!allowed(&p, "aperture.example"));
        assert!(!allowed(&p, "evilaperture.example"));
    }

    #[test]
    fn unicode_entries_and_hosts_compare_as_punycode() {
        let p = policy("[trust]\ndeny = [\"bücher.example\"]");
        assert!(!allowed(&p, "xn--bcher-kva.example"));
        assert!(!allowed(&p, "BÜCHER.example"));
        assert!(!allowed(&p, "shop.bücher.example"));
        let p = policy("[trust]\ndeny = [\"xn--bcher-kva.example\"]");
        assert!(!allowed(&p, "bücher.example"));
    }

    #[test]
    fn a_look_alike_spelling_is_a_different_domain() {
        // The second 'а' is Cyrillic.
        let lookalike = "blаckmesa.us";
        assert_ne!(host(lookalike).hostname(), "blackmesa.us");
        let p = policy("[trust]\nmode = \"allowlist\"\nallow = [\"blackmesa.us\"]");
        assert!(allowed(&p, "blackmesa.us"));
        assert!(!allowed(&p, lookalike));
        assert_eq!(
            p.decide(&host(lookalike), now()).why,
            Reason::NotInAllowlist
        );
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let p = policy(
            "[trust]\nmode = \"allowlist\"\nallow = [\"good.example.org\", \"example.net\"]\ndeny = [\"example.org\", \"*.example.net\"]",
        );
        assert!(allowed(&p, "good.example.org"));
        assert!(allowed(&p, "sub.good.example.org"));
        assert!(!allowed(&p, "bad.example.org"));
        assert!(!allowed(&p, "example.org"));
        // `*.example.net` is one label deeper than `example.net`.
        assert!(allowed(&p, "example.net"));
        assert!(!allowed(&p, "x.example.net"));
    }

    #[test]
    fn an_exact_domain_beats_a_glob_of_the_same_depth() {
        let p =
            policy("[trust]\ndeny = [\"*.aperture.example\"]\nallow = [\"lab.aperture.example\"]");
        assert!(allowed(&p, "lab.aperture.example"));
        assert!(allowed(&p, "x.lab.aperture.example"));
        assert!(!allowed(&p, "office.aperture.example"));
        let p =
            policy("[trust]\nallow = [\"*.aperture.example\"]\ndeny = [\"lab.aperture.example\"]");
        assert!(!allowed(&p, "lab.aperture.example"));
        assert!(allowed(&p, "office.aperture.example"));
    }

    #[test]
    fn on_a_tie_deny_wins() {
        for order in [
            "allow = [\"xen.example\"]\ndeny = [\"xen.example\"]",
            "deny = [\"xen.example\"]\nallow = [\"xen.example\"]",
        ] {
            let p = policy(&format!("[trust]\nmode = \"allowlist\"\n{order}"));
            let v = p.decide(&host("xen.example"), now());
            assert!(!v.allowed);
            assert_eq!(v.why, Reason::Denied);
            assert_eq!(v.deciding.unwrap().kind, EntryKind::Deny);
        }
    }

    #[test]
    fn expired_entries_are_ignored() {
        let p = policy(
            "[trust]\ndeny = [{ domain = \"spam.example\", reason = \"spam wave\", expires = \"2027-01-01T00:00:00Z\" }]",
        );
        let h = host("spam.example");
        assert!(!p.decide(&h, at("2026-12-31T23:59:59Z")).allowed);
        assert!(p.decide(&h, at("2027-01-01T00:00:00Z")).allowed);
        assert_eq!(
            p.decide(&h, at("2028-01-01T00:00:00Z")).why,
            Reason::OpenMode
        );
        // An expired, more specific entry gives way to a less specific live one.
        let p = policy(
            "[trust]\ndeny = [\"example.org\"]\nallow = [{ domain = \"a.example.org\", expires = \"2026-01-01T00:00:00Z\" }]",
        );
        assert!(!allowed(&p, "a.example.org"));
    }

    #[test]
    fn the_own_domain_is_always_allowed() {
        let p = policy("[trust]\nmode = \"allowlist\"\ndeny = [\"home.example\", \"example\"]");
        let v = p.decide(&host("HOME.example."), now());
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                deciding: None,
                why: Reason::OwnDomain
            }
        );
        assert!(allowed(&p, "home.example:8443"));
        assert!(!allowed(&p, "sub.home.example"), "only the domain itself");
        assert!(
            p.warnings_at(now())
                .contains(&TrustWarning::OwnDomainListed {
                    entry: "home.example".into(),
                    kind: EntryKind::Deny
                })
        );
    }

    #[test]
    fn an_empty_allowlist_federates_with_no_one_and_warns() {
        let p = policy("[trust]\nmode = \"allowlist\"");
        assert!(!allowed(&p, "blackmesa.us"));
        assert!(allowed(&p, OWN));
        assert_eq!(p.warnings_at(now()), [TrustWarning::EmptyAllowlist]);
        assert_eq!(
            TrustWarning::EmptyAllowlist.to_string(),
            "trust mode is allowlist but the allowlist is empty: this node federates with no one"
        );
        // Only expired allow entries: just as empty.
        let p = policy(
            "[trust]\nmode = \"allowlist\"\nallow = [{ domain = \"a.example\", expires = \"2026-01-01T00:00:00Z\" }]",
        );
        let w = p.warnings_at(now());
        assert!(w.contains(&TrustWarning::EmptyAllowlist), "{w:?}");
        assert!(w.contains(&TrustWarning::Expired {
            entry: "a.example".into(),
            kind: EntryKind::Allow
        }));
        // An allow subscription not fetched yet.
        let p = policy(
            "[trust]\nmode = \"allowlist\"\nsubscriptions = [{ url = \"https://l.example/a\", kind = \"allow\" }]",
        );
        assert_eq!(
            p.warnings_at(now()),
            [TrustWarning::AllowlistAwaitsSubscriptions]
        );
        // Open mode with nothing listed is not a warning.
        assert!(policy("").warnings_at(now()).is_empty());
    }

    #[test]
    fn ip_literal_hosts_match_only_ip_entries() {
        let p = policy("[trust]\ndeny = [\"192.0.2.7\", \"2001:db8::1\"]");
        assert!(!allowed(&p, "192.0.2.7"));
        assert!(!allowed(&p, "192.0.2.7:8080"));
        assert!(allowed(&p, "192.0.2.8"));
        assert!(!allowed(&p, "[2001:db8::1]:8448"));
        assert!(allowed(&p, "[2001:db8::2]"));
        let p = policy("[trust]\nmode = \"allowlist\"\nallow = [\"example.org\", \"[::1]\"]");
        assert!(!allowed(&p, "127.0.0.1"));
        assert!(allowed(&p, "[::1]:8080"));
        // An IP entry never matches a domain, whatever it resolves to.
        let p = policy("[trust]\ndeny = [\"127.0.0.1\"]");
        assert!(allowed(&p, "localhost"));
        // Partial or ambiguous numeric entries are refused rather than suffix-matched.
        let e = config_err("[trust]\ndeny = [\"0.2.7\"]");
        assert!(e.contains("not a dotted-quad"), "{e}");
    }
}

mod explain {
    use super::*;

    #[test]
    fn explain_names_the_deciding_entry_and_list() {
        let p = policy(
            r#"[trust]
mode = "allowlist"
allow = ["blackmesa.us", "*.aperture.example"]
deny = ["xen.example", { domain = "spam.example", reason = "spam wave" }]
"#,
        );
        assert_eq!(
            explain(&p, "XEN.example."),
            "refused: xen.example (deny entry \"xen.example\" in local list)"
        );
        assert_eq!(
            explain(&p, "mail.spam.example"),
            "refused: mail.spam.example (deny entry \"spam.example\" in local list: spam wave)"
        );
        assert_eq!(
            explain(&p, "blackmesa.us:8443"),
            "allowed: blackmesa.us (allow entry \"blackmesa.us\" in local list)"
        );
        assert_eq!(
            explain(&p, "lab.aperture.example"),
            "allowed: lab.aperture.example (allow entry \"*.aperture.example\" in local list)"
        );
        assert_eq!(
            explain(&p, "outsider.example"),
            "refused: outsider.example (allowlist mode, no allow entry matches)"
        );
        assert_eq!(
            explain(&p, "home.example"),
            "allowed: home.example (this node's own domain)"
        );
        assert_eq!(
            explain(&policy(""), "anyone.example"),
            "allowed: anyone.example (open mode, no deny entry matches)"
        );
    }

    #[test]
    fn explain_names_a_subscribed_list() {
        let url = Url::parse("https://community.example/deny.txt").unwrap();
        let p = policy(
            "[trust]\nsubscriptions = [{ url = \"https://community.example/deny.txt\", kind = \"deny\" }]",
        )
        .with_list(&url, list_of(&["xen.example"]))
        .unwrap();
        let v = p.decide(&host("xen.example"), now());
        assert_eq!(
            v.deciding.as_ref().unwrap().list,
            ListSource::Subscription(url)
        );
        assert_eq!(
            v.explain(&host("xen.example")),
            "refused: xen.example (deny entry \"xen.example\" in subscribed list https://community.example/deny.txt)"
        );
    }
}

fn list_of(domains: &[&str]) -> SubscribedList {
    SubscribedList {
        entries: domains
            .iter()
            .map(|d| Entry::new(DomainPattern::parse(d).unwrap()))
            .collect(),
        fetched_at: now(),
    }
}

mod overrides {
    use super::*;

    const SUBSCRIBED: &str = r#"[trust]
allow = ["spam.example"]
deny = ["friend.example"]
subscriptions = [{ url = "https://community.example/deny.txt", kind = "deny" }, { url = "https://community.example/allow.txt", kind = "allow" }]
"#;

    fn subscribed_policy() -> TrustPolicy {
        let deny = Url::parse("https://community.example/deny.txt").unwrap();
        let allow = Url::parse("https://community.example/allow.txt").unwrap();
        policy(SUBSCRIBED)
            .with_list(
                &deny,
                list_of(&["spam.example", "bad.example", "x.spam.example"]),
            )
            .unwrap()
            .with_list(&allow, list_of(&["friend.example", "bad.example"]))
            .unwrap()
    }

    #[test]
    fn local_entries_override_subscribed_ones_for_the_same_domain() {
        let p = subscribed_policy();
        let v = p.decide(&host("spam.example"), now());
        assert!(v.allowed, "local allow beats a subscribed deny");
        assert_eq!(v.deciding.unwrap().list, ListSource::Local);
        assert!(
            !allowed(&p, "friend.example"),
            "local deny beats a subscribed allow"
        );
        // Subscribed lists that disagree: deny wins the tie.
        assert!(!allowed(&p, "bad.example"));
        // A more specific subscribed entry still decides below a local one.
        assert!(!allowed(&p, "x.spam.example"));
    }

    #[test]
    fn entries_name_their_list_and_overrides() {
        let p = subscribed_policy();
        let listed: Vec<(String, String, bool)> = p
            .entries(now())
            .into_iter()
            .map(|e| {
                (
                    format!("{} {}", e.kind, e.entry.pattern),
                    e.source.to_string(),
                    e.overridden,
                )
            })
            .collect();
        let deny = "subscribed list https://community.example/deny.txt";
        let allow = "subscribed list https://community.example/allow.txt";
        let expected = [
            ("allow spam.example", "local list", false),
            ("deny friend.example", "local list", false),
            ("deny spam.example", deny, true),
            ("deny bad.example", deny, false),
            ("deny x.spam.example", deny, false),
            ("allow friend.example", allow, true),
            ("allow bad.example", allow, false),
        ];
        let expected: Vec<(String, String, bool)> = expected
            .iter()
            .map(|(e, s, o)| ((*e).to_owned(), (*s).to_owned(), *o))
            .collect();
        assert_eq!(listed, expected);
        // Expired entries are not in force.
        let p = policy(
            "[trust]\ndeny = [{ domain = \"old.example\", expires = \"2020-01-01T00:00:00Z\" }, \"new.example\"]",
        );
        let names: Vec<String> = p
            .entries(now())
            .iter()
            .map(|e| e.entry.pattern.to_string())
            .collect();
        assert_eq!(names, ["new.example"]);
    }

    #[test]
    fn effective_lists_resolve_overrides_and_expiry() {
        let p = subscribed_policy();
        let deny: Vec<String> = p
            .effective(EntryKind::Deny, now())
            .iter()
            .map(|e| e.pattern.to_string())
            .collect();
        assert_eq!(deny, ["friend.example", "bad.example", "x.spam.example"]);
        let allow: Vec<String> = p
            .effective(EntryKind::Allow, now())
            .iter()
            .map(|e| e.pattern.to_string())
            .collect();
        assert_eq!(allow, ["spam.example", "bad.example"]);
    }

    #[test]
    fn a_reload_keeps_lists_of_subscriptions_still_configured() {
        let p = subscribed_policy();
        let reloaded = p
            .with_local(config(
                "[trust]\nsubscriptions = [{ url = \"https://community.example/deny.txt\", kind = \"deny\" }]",
            ))
            .unwrap();
        assert_eq!(reloaded.subscribed().len(), 1);
        assert!(!allowed(&reloaded, "spam.example"));
        assert!(allowed(&reloaded, "friend.example"));
        let other = Url::parse("https://community.example/allow.txt").unwrap();
        assert!(matches!(
            reloaded.with_list(&other, list_of(&["a.example"])),
            Err(TrustError::NotSubscribed(_))
        ));
    }
}

mod list_formats {
    use super::lists::*;
    use super::*;

    #[test]
    fn imported_entries_keep_their_provenance() {
        let mut parsed = lists::parse(b"spam.example\nold.example\n").unwrap();
        parsed.entries[1].added_by = Some("ops".into());
        let when = at("2026-02-03T04:05:06Z");
        lists::mark_imported(&mut parsed.entries, "blocks.csv", when);
        assert_eq!(lists::imported_from(&parsed.entries[0]), Some("blocks.csv"));
        assert_eq!(parsed.entries[0].added_at, Some(when));
        assert_eq!(lists::imported_from(&parsed.entries[1]), None);
        assert_eq!(parsed.entries[1].added_by.as_deref(), Some("ops"));
        // The marks survive the TOML snippet the import prints (nested under `trust`).
        #[derive(serde::Serialize)]
        struct Snippet {
            trust: TrustConfig,
        }
        let snippet = TrustConfig {
            deny: parsed.entries,
            ..TrustConfig::default()
        };
        let text = toml::to_string(&Snippet { trust: snippet }).unwrap();
        assert!(text.contains("[[trust.deny]]"), "{text}");
        let back = config(&text);
        assert_eq!(lists::imported_from(&back.deny[0]), Some("blocks.csv"));
        assert_eq!(back.deny[0].added_at, Some(when));
    }

    fn patterns(list: &ParsedList) -> Vec<String> {
        list.entries.iter().map(|e| e.pattern.to_string()).collect()
    }

    #[test]
    fn plain_text_with_comments_blank_lines_and_globs() {
        let text = "# community allowlist\r\n\nblackmesa.us\r\n  *.Aperture.Example.  # labs\n\n[::1]\nbücher.example\n";
        let l = parse(text.as_bytes()).unwrap();
        assert_eq!(l.format, ListFormat::Text);
        assert_eq!(
            patterns(&l),
            [
                "blackmesa.us",
                "*.aperture.example",
                "[::1]",
                "xn--bcher-kva.example"
            ]
        );
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn a_bad_text_line_names_its_number() {
        let e = parse(b"ok.example\n# fine\nnot a domain\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "line 3: {}",
                DomainPattern::parse("not a domain").unwrap_err()
            )
        );
        assert!(matches!(e, ListError::Entry { line: 3, .. }));
        let e = parse(b"ok.example\nfoo.example:80\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 2: entry \"foo.example:80\" has a port"),
            "{e}"
        );
        let e = parse(b"ok.example\n\xff\n").unwrap_err();
        assert_eq!(e, ListError::NotUtf8 { line: 2 });
        let big = vec![b'a'; MAX_LIST_BYTES + 1];
        assert!(matches!(parse(&big), Err(ListError::TooLarge(_))));
    }

    const MASTODON: &str = "\
#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate
xen.example,suspend,false,false,Harassment,false
quiet.example,silence,true,false,,false
fine.example,noop,true,false,media only,false
sp*m.example,suspend,false,false,obfuscated,true
\"comma.example\",suspend,false,false,\"spam, and \"\"worse\"\"\",false
";

    #[test]
    fn mastodon_csv_with_hash_headers() {
        let l = parse(MASTODON.as_bytes()).unwrap();
        assert_eq!(l.format, ListFormat::MastodonCsv);
        assert_eq!(
            patterns(&l),
            ["xen.example", "quiet.example", "comma.example"]
        );
        assert_eq!(l.entries[0].reason.as_deref(), Some("Harassment"));
        assert_eq!(l.entries[1].reason, None);
        assert_eq!(l.entries[2].reason.as_deref(), Some("spam, and \"worse\""));
        assert_eq!(
            l.warnings,
            [ListWarning {
                line: 5,
                message: "skipped obfuscated domain \"sp*m.example\"".into()
            }]
        );
    }

    #[test]
    fn mastodon_csv_without_hash_headers_and_reordered_columns() {
        let text = "severity,domain,public_comment,private_comment\nsuspend,a.example,public,private\n,b.example,,\n";
        let l = parse(text.as_bytes()).unwrap();
        assert_eq!(l.format, ListFormat::MastodonCsv);
        assert_eq!(patterns(&l), ["a.example", "b.example"]);
        assert_eq!(l.entries[0].reason.as_deref(), Some("private"));
        // Mastodon's allow export: a single #domain column.
        let l = parse(b"#domain\nblackmesa.us\n*.aperture.example\n").unwrap();
        assert_eq!(patterns(&l), ["blackmesa.us", "*.aperture.example"]);
    }

    #[test]
    fn malformed_csv_lines_name_their_number() {
        let e = parse_mastodon_csv("#domain,#severity\na.example,suspend\nb.example,ban\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: unknown severity \"ban\" (expected suspend, silence or noop)"
        );
        let e = parse_mastodon_csv("#domain,#severity\na.example,suspend\nbad domain,suspend\n")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("line 3: entry \"bad domain\""),
            "{e}"
        );
        let e = parse_mastodon_csv("#domain,#severity\n,suspend\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: the domain column is empty");
        let e = parse_mastodon_csv("#severity,#comment\nsuspend,x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: header has no domain column (expected #domain,#severity,...)"
        );
        let e = parse_mastodon_csv("\n").unwrap_err();
        assert!(e.to_string().contains("no header line"), "{e}");
    }

    fn sample_entries() -> Vec<Entry> {
        let mut with_reason = Entry::new(DomainPattern::parse("spam.example").unwrap());
        with_reason.reason = Some("spam, and \"worse\"".into());
        vec![
            Entry::new(DomainPattern::parse("xen.example").unwrap()),
            with_reason,
            Entry::new(DomainPattern::parse("*.aperture.example").unwrap()),
            Entry::new(DomainPattern::parse("192.0.2.7").unwrap()),
            Entry::new(DomainPattern::parse("[2001:db8::1]").unwrap()),
        ]
    }

    #[test]
    fn text_export_round_trips() {
        let entries = sample_entries();
        let text = export_text(&entries);
        assert_eq!(
            text,
            "xen.example\nspam.example\n*.aperture.example\n192.0.2.7\n[2001:db8::1]\n"
        );
        let back = parse(text.as_bytes()).unwrap();
        let expected: Vec<Entry> = entries
            .iter()
            .map(|e| Entry::new(e.pattern.clone()))
            .collect();
        assert_eq!(back.entries, expected);
    }

    /// Regression (issue 12): the private reason of a deny entry never goes into
    /// `public_comment`, nor anywhere else in the export.
    #[test]
    fn mastodon_csv_export_round_trips_without_reasons() {
        let entries = sample_entries();
        let csv = export_mastodon_csv(&entries, EntryKind::Deny);
        assert_eq!(
            csv,
            "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n\
             xen.example,suspend,false,false,,false\n\
             spam.example,suspend,false,false,,false\n\
             *.aperture.example,suspend,false,false,,false\n\
             192.0.2.7,suspend,false,false,,false\n\
             [2001:db8::1],suspend,false,false,,false\n"
        );
        assert!(!csv.contains("worse"), "{csv}");
        let back = parse(csv.as_bytes()).unwrap();
        assert_eq!(back.format, ListFormat::MastodonCsv);
        let without_reasons: Vec<Entry> = entries
            .iter()
            .map(|e| Entry::new(e.pattern.clone()))
            .collect();
        assert_eq!(back.entries, without_reasons);
        assert!(back.warnings.is_empty());

        let csv = export_mastodon_csv(&entries, EntryKind::Allow);
        assert!(csv.starts_with("#domain\nxen.example\n"), "{csv}");
        let back = parse(csv.as_bytes()).unwrap();
        let expected: Vec<Entry> = entries
            .iter()
            .map(|e| Entry::new(e.pattern.clone()))
            .collect();
        assert_eq!(back.entries, expected);
    }

    #[test]
    fn a_policy_exports_its_effective_lists() {
        let p = policy(ISSUE_CONFIG);
        let allow = p.effective(EntryKind::Allow, now());
        assert_eq!(export_text(&allow), "blackmesa.us\n*.aperture.example\n");
        let deny = p.effective(EntryKind::Deny, at("2028-01-01T00:00:00Z"));
        assert_eq!(
            export_text(&deny),
            "xen.example\n",
            "expired entries are not exported"
        );
    }
}

mod handle {
    use super::*;

    /// Collects formatted log output.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    #[test]
    fn the_audit_log_keeps_the_latest_changes_newest_first() {
        let trust = Trust::new(policy("[trust]\ndeny = [\"a.example\"]"));
        assert!(trust.audit_log().is_empty());
        trust.replace(policy("[trust]\ndeny = [\"a.example\"]"));
        assert!(trust.audit_log().is_empty(), "no change, no record");
        trust.replace(policy("[trust]\ndeny = [\"b.example\"]"));
        trust
            .reload(config(
                "[trust]\nmode = \"allowlist\"\nallow = [\"c.example\"]",
            ))
            .unwrap();
        let log = trust.audit_log();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].cause, "reload");
        assert_eq!(log[0].mode_before, Mode::Open);
        assert_eq!(log[0].mode_after, Mode::Allowlist);
        assert_eq!(log[0].added[0].to_string(), "allow c.example");
        assert_eq!(log[0].removed[0].to_string(), "deny b.example");
        assert_eq!(log[1].cause, "replace");
        assert_eq!(log[1].added[0].to_string(), "deny b.example");
        assert!(log[0].at >= log[1].at);
        for i in 0..AUDIT_LOG_CAPACITY + 5 {
            trust.replace(policy(&format!("[trust]\ndeny = [\"n{i}.example\"]")));
        }
        let log = trust.audit_log();
        assert_eq!(log.len(), AUDIT_LOG_CAPACITY);
        let last = AUDIT_LOG_CAPACITY + 4;
        assert_eq!(log[0].added[0].entry, format!("n{last}.example"));
    }

    #[test]
    fn replace_returns_the_diff_and_logs_one_audit_line() {
        let trust = Trust::new(policy(
            "[trust]\ndeny = [\"old.example\", \"keep.example\"]",
        ));
        let before = trust.current();
        let new = policy(
            "[trust]\nmode = \"allowlist\"\nallow = [\"blackmesa.us\"]\ndeny = [{ domain = \"keep.example\", reason = \"now with a reason\" }, \"xen.example\"]",
        );
        let (diff, log) = captured(|| trust.replace(new));
        assert_eq!(diff.mode_before, Mode::Open);
        assert_eq!(diff.mode_after, Mode::Allowlist);
        let names = |v: &[DiffEntry]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            names(&diff.added),
            ["allow blackmesa.us", "deny xen.example"]
        );
        assert_eq!(names(&diff.removed), ["deny old.example"]);
        assert_eq!(names(&diff.changed), ["deny keep.example"]);
        assert!(!diff.is_empty());

        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains(" audit: trust policy changed"), "{log}");
        assert!(log.contains("cause=\"replace\""), "{log}");
        assert!(
            log.contains("mode.before=open mode.after=allowlist"),
            "{log}"
        );
        assert!(
            log.contains("added=allow blackmesa.us, deny xen.example"),
            "{log}"
        );
        assert!(log.contains("removed=deny old.example"), "{log}");
        assert!(log.contains("changed=deny keep.example"), "{log}");

        // Readers see the new policy; an old snapshot stays as it was.
        assert!(!trust.current().allows(&host("outsider.example"), now()));
        assert!(before.allows(&host("outsider.example"), now()));
    }

    #[test]
    fn the_diff_tells_the_cache_which_domains_are_newly_refused() {
        let trust = Trust::new(policy("[trust]\ndeny = [\"old.example\"]"));
        let diff = trust.replace(policy("[trust]\ndeny = [\"xen.example\"]"));
        assert!(diff.newly_refused(&host("xen.example"), now()));
        assert!(diff.newly_refused(&host("sub.xen.example:8443"), now()));
        assert!(!diff.newly_refused(&host("old.example"), now()));
        assert!(!diff.newly_refused(&host("other.example"), now()));
        assert!(diff.may_refuse_more());
        let diff = trust.replace(policy(
            "[trust]\ndeny = [\"xen.example\"]\nallow = [\"a.example\"]",
        ));
        assert!(!diff.may_refuse_more(), "{diff:?}");
        assert!(
            trust
                .reload(config("[trust]\nmode = \"allowlist\""))
                .unwrap()
                .may_refuse_more()
        );
        assert!(!trust.allows(&host("a.example")));
        assert_eq!(trust.decide(&host(OWN)).why, Reason::OwnDomain);
    }

    #[test]
    fn an_unchanged_policy_logs_nothing() {
        let trust = Trust::new(policy(ISSUE_CONFIG));
        let (diff, log) = captured(|| trust.replace(policy(ISSUE_CONFIG)));
        assert!(diff.is_empty());
        assert_eq!(log, "");
    }

    #[test]
    fn a_failed_update_keeps_the_policy_in_force() {
        let trust = Trust::new(policy("[trust]\ndeny = [\"xen.example\"]"));
        let bad =
            config("[trust]\nsubscriptions = [{ url = \"http://l.example/a\", kind = \"deny\" }]");
        let (result, log) = captured(|| trust.update("reload", |p| p.with_local(bad)));
        assert!(matches!(result, Err(TrustError::SubscriptionNotHttps(_))));
        assert_eq!(log, "");
        assert!(!trust.current().allows(&host("xen.example"), now()));

        let clone = trust.clone();
        let diff = clone
            .update("reload", |p| {
                p.with_local(config("[trust]\nmode = \"open\""))
            })
            .unwrap();
        assert_eq!(diff.removed.len(), 1);
        assert!(
            trust.current().allows(&host("xen.example"), now()),
            "clones share the policy"
        );
    }
}

mod subscriptions {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// Fetches `https://community.example/<path>` from a local wiremock server with plain
    /// reqwest, standing in for the guarded client.
    struct TestFetcher {
        base: String,
        client: reqwest::Client,
    }

    impl ListFetcher for TestFetcher {
        async fn fetch(&self, url: &Url) -> Result<Vec<u8>, String> {
            let target = format!("{}{}", self.base, url.path());
            let response = self
                .client
                .get(target)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            Ok(response.bytes().await.map_err(|e| e.to_string())?.to_vec())
        }
    }

    const CONFIG: &str = r#"[trust]
mode = "allowlist"
allow = ["blackmesa.us"]
deny = ["mesa.example"]
subscriptions = [{ url = "https://community.example/allow.txt", kind = "allow", refresh = "1h" }]
"#;

    fn list_url() -> Url {
        Url::parse("https://community.example/allow.txt").unwrap()
    }

    async fn serve(server: &MockServer, body: &str) {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/allow.txt"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(server)
            .await;
    }

    fn is_allowed(trust: &Trust, h: &str) -> bool {
        trust.current().allows(&host(h), SystemTime::now())
    }

    #[tokio::test]
    async fn refresh_removal_override_and_last_good_copy() {
        let server = MockServer::start().await;
        let trust = Trust::new(policy(CONFIG));
        let refresher = SubscriptionRefresher::new(
            trust.clone(),
            TestFetcher {
                base: server.uri(),
                client: reqwest::Client::new(),
            },
        );
        assert!(!is_allowed(&trust, "lambda.example"));

        // Refresh: the community's entries come into force.
        serve(
            &server,
            "# community\nlambda.example\nmesa.example\n*.aperture.example\n",
        )
        .await;
        let diff = refresher.refresh(&list_url()).await.unwrap();
        assert_eq!(diff.added.len(), 3, "{diff:?}");
        assert!(is_allowed(&trust, "lambda.example"));
        assert!(is_allowed(&trust, "lab.aperture.example"));
        // Local override: the local deny of mesa.example beats the subscribed allow.
        assert!(!is_allowed(&trust, "mesa.example"));
        let v = trust
            .current()
            .decide(&host("mesa.example"), SystemTime::now());
        assert_eq!(v.deciding.unwrap().list, ListSource::Local);

        // Removal: an entry that left the source is gone again.
        serve(&server, "lambda.example\nmesa.example\n").await;
        let diff = refresher.refresh(&list_url()).await.unwrap();
        assert_eq!(diff.removed.len(), 1);
        assert_eq!(diff.removed[0].entry, "*.aperture.example");
        assert_eq!(diff.removed[0].list, ListSource::Subscription(list_url()));
        assert!(!is_allowed(&trust, "lab.aperture.example"));
        assert!(diff.newly_refused(&host("lab.aperture.example"), SystemTime::now()));

        // A malformed list keeps the last good copy.
        serve(&server, "lambda.example\nnot a domain\n").await;
        let e = refresher.refresh(&list_url()).await.unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(is_allowed(&trust, "lambda.example"));

        // So does a failing server...
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        let e = refresher.refresh(&list_url()).await.unwrap_err();
        assert!(matches!(e, RefreshError::Fetch { .. }), "{e}");
        assert!(is_allowed(&trust, "lambda.example"));

        // ...and an unreachable one.
        drop(server);
        let e = refresher.refresh(&list_url()).await.unwrap_err();
        assert!(matches!(e, RefreshError::Fetch { .. }), "{e}");
        assert!(is_allowed(&trust, "lambda.example"));
        let status = refresher.status();
        let s = &status[&list_url()];
        assert_eq!(s.entries, 2);
        assert!(s.last_success.is_some());
        assert!(
            s.last_error
                .as_deref()
                .unwrap()
                .starts_with("fetching https://community.example/allow.txt failed")
        );

        // URLs that are not subscribed are never fetched.
        let other = Url::parse("https://community.example/other.txt").unwrap();
        assert!(matches!(
            refresher.refresh(&other).await,
            Err(RefreshError::NotSubscribed(_))
        ));
    }

    /// An archive in memory, standing in for the node's database.
    #[derive(Default)]
    struct MemoryArchive {
        lists: std::sync::Mutex<std::collections::HashMap<Url, ArchivedList>>,
    }

    impl ListArchive for MemoryArchive {
        fn load<'a>(
            &'a self,
            url: &'a Url,
        ) -> futures::future::BoxFuture<'a, Result<Option<ArchivedList>, String>> {
            let copy = self.lists.lock().unwrap().get(url).cloned();
            Box::pin(async move { Ok(copy) })
        }

        fn save<'a>(
            &'a self,
            url: &'a Url,
            list: ArchivedList,
        ) -> futures::future::BoxFuture<'a, Result<(), String>> {
            self.lists.lock().unwrap().insert(url.clone(), list);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn the_last_good_copy_is_archived_and_restored_at_start() {
        let server = MockServer::start().await;
        let archive = Arc::new(MemoryArchive::default());
        let fetcher = || TestFetcher {
            base: server.uri(),
            client: reqwest::Client::new(),
        };
        let first = Trust::new(policy(CONFIG));
        let refresher =
            SubscriptionRefresher::new(first.clone(), fetcher()).with_archive(archive.clone());
        serve(
            &server,
            "lambda.example
",
        )
        .await;
        refresher.refresh(&list_url()).await.unwrap();
        // A failed refresh does not overwrite the archived copy.
        serve(
            &server,
            "not a domain
",
        )
        .await;
        refresher.refresh(&list_url()).await.unwrap_err();
        assert_eq!(
            archive.lists.lock().unwrap()[&list_url()].body,
            b"lambda.example\n"
        );

        // A restarted node, its list server down: the archived copy is in force at once.
        drop(server);
        let restarted = Trust::new(policy(CONFIG));
        let refresher = SubscriptionRefresher::new(restarted.clone(), unreachable_fetcher())
            .with_archive(archive.clone());
        assert!(!is_allowed(&restarted, "lambda.example"));
        assert_eq!(refresher.restore().await, 1);
        assert!(is_allowed(&restarted, "lambda.example"));
        assert_eq!(refresher.status()[&list_url()].entries, 1);
        refresher.refresh(&list_url()).await.unwrap_err();
        assert!(is_allowed(&restarted, "lambda.example"));
        // A list already in force is not replaced by the archived copy.
        assert_eq!(refresher.restore().await, 0);

        // A copy that no longer parses is skipped; one of a list no longer subscribed is
        // ignored.
        archive.lists.lock().unwrap().insert(
            list_url(),
            ArchivedList {
                body: b"not a domain\n".to_vec(),
                fetched_at: SystemTime::now(),
            },
        );
        let other = Trust::new(policy(CONFIG));
        let refresher = SubscriptionRefresher::new(other.clone(), unreachable_fetcher())
            .with_archive(archive.clone());
        assert_eq!(refresher.restore().await, 0);
        assert!(!is_allowed(&other, "lambda.example"));
        let unsubscribed = Trust::new(policy("[trust]\nmode = \"allowlist\"\n"));
        let refresher = SubscriptionRefresher::new(unsubscribed.clone(), unreachable_fetcher())
            .with_archive(archive);
        assert_eq!(refresher.restore().await, 0);
    }

    /// A fetcher whose list server is down (nothing listens on the discard port).
    fn unreachable_fetcher() -> TestFetcher {
        TestFetcher {
            base: "http://127.0.0.1:9".into(),
            client: reqwest::Client::new(),
        }
    }

    #[test]
    fn the_refresher_future_can_be_spawned() {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let refresher = Arc::new(SubscriptionRefresher::new(
            Trust::new(policy(CONFIG)),
            Arc::new(TestFetcher {
                base: String::new(),
                client: reqwest::Client::new(),
            }),
        ));
        let task = async move { refresher.run(std::future::pending()).await };
        assert_send(&task);
    }

    #[tokio::test]
    async fn mastodon_csv_deny_lists_are_understood() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/blocks.csv"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\nxen.example,suspend,false,false,harassment,false\n",
            ))
            .mount(&server)
            .await;
        let trust = Trust::new(policy(
            "[trust]\nsubscriptions = [{ url = \"https://community.example/blocks.csv\", kind = \"deny\" }]",
        ));
        let refresher = SubscriptionRefresher::new(
            trust.clone(),
            TestFetcher {
                base: server.uri(),
                client: reqwest::Client::new(),
            },
        );
        refresher
            .refresh(&Url::parse("https://community.example/blocks.csv").unwrap())
            .await
            .unwrap();
        assert_eq!(
            trust
                .current()
                .explain(&host("xen.example"), SystemTime::now()),
            "refused: xen.example (deny entry \"xen.example\" in subscribed list https://community.example/blocks.csv: harassment)"
        );
    }

    /// An in-memory list source that counts fetches.
    struct CountingFetcher {
        fetches: Arc<AtomicUsize>,
        body: Arc<Mutex<Result<String, String>>>,
    }

    impl ListFetcher for CountingFetcher {
        async fn fetch(&self, _url: &Url) -> Result<Vec<u8>, String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            self.body.lock().unwrap().clone().map(String::into_bytes)
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_refreshes_on_schedule_follows_reloads_and_stops() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new(Ok("lambda.example\n".to_owned())));
        let trust = Trust::new(policy(CONFIG));
        let refresher = Arc::new(SubscriptionRefresher::new(
            trust.clone(),
            CountingFetcher {
                fetches: fetches.clone(),
                body: body.clone(),
            },
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let refresher = refresher.clone();
            async move {
                refresher
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
            }
        });

        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched at start");
        assert!(is_allowed(&trust, "lambda.example"));

        tokio::time::sleep(Duration::from_secs(3599)).await;
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "fetched again after 1h");

        // A failure is retried sooner, and the last good copy stays.
        *body.lock().unwrap() = Err("connection refused".into());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
        assert!(is_allowed(&trust, "lambda.example"));
        *body.lock().unwrap() = Ok("other.example\n".into());
        tokio::time::sleep(RETRY_AFTER_FAILURE).await;
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 4);
        assert!(!is_allowed(&trust, "lambda.example"));
        assert!(is_allowed(&trust, "other.example"));

        // A reload that adds a subscription is fetched right away; one that removes it
        // drops its entries.
        let both = CONFIG.replace(
            "refresh = \"1h\" }]",
            "refresh = \"1h\" }, { url = \"https://community.example/more.txt\", kind = \"allow\" }]",
        );
        trust
            .update("reload", |p| p.with_local(config(&both)))
            .unwrap();
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 5);
        trust
            .update("reload", |p| {
                p.with_local(config("[trust]\nmode = \"allowlist\""))
            })
            .unwrap();
        settle().await;
        assert!(!is_allowed(&trust, "other.example"));
        assert!(trust.current().subscribed().is_empty());

        stop.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 5);
    }
}

#[test]
fn policies_can_be_built_from_fetched_lists_directly() {
    let url = Url::parse("https://community.example/allow.txt").unwrap();
    let mut lists = BTreeMap::new();
    lists.insert(url, list_of(&["lambda.example"]));
    lists.insert(
        Url::parse("https://stale.example/x").unwrap(),
        list_of(&["stale.example"]),
    );
    let p = TrustPolicy::build(host(OWN), config(ISSUE_CONFIG), lists).unwrap();
    assert_eq!(
        p.subscribed().len(),
        1,
        "lists of unsubscribed URLs are dropped"
    );
    assert!(allowed(&p, "lambda.example"));
}
