//! The node's own documents: health, well-known, metrics and the OpenAPI description.

use pd_proto::wire::{Health, WellKnown};
use reqwest::StatusCode;

use crate::util::{TestNode, User};

#[tokio::test]
async fn healthz_reports_version_and_store() {
    let node = TestNode::start().await;
    let resp = node.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let health: Health = resp.json().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.store, "ok");
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn well_known_names_the_domain_and_server_key() {
    let node = TestNode::start().await;
    let wk: WellKnown = node.get("/.well-known/pd").await.json().await.unwrap();
    assert_eq!(wk.domain.to_string(), "localhost");
    assert_eq!(wk.api_version, "v1");
    assert_eq!(wk.lookup_access, "users");
    assert_eq!(wk.registration, "open");
    assert_eq!(wk.server_keys.len(), 1);
    assert_eq!(
        wk.server_keys[0].public_key,
        node.server.state().server_keys.current_public()
    );
    assert_eq!(
        wk.server_keys[0].key_id,
        pd_proto::node_auth::server_key_id(&wk.server_keys[0].public_key)
    );
}

#[tokio::test]
async fn metrics_count_requests_registrations_and_lookups() {
    let node = TestNode::start().await;
    let alice = User::new("alice");
    alice.register(&node).await;
    node.lookup_json(&alice, "alice@localhost").await;
    let text = node.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("pd_registrations_total 1"), "{text}");
    assert!(
        text.contains(r#"pd_lookups_total{source="local",result="found"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"pd_http_requests_total{route="/v1/accounts",status="201"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let node = TestNode::start().await;
    let doc: serde_json::Value = node.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/accounts",
        "/v1/accounts/{address}/presence",
        "/v1/accounts/{address}/presence/withdraw",
        "/v1/accounts/{address}/rotate",
        "/v1/accounts/{address}/delete",
        "/v1/sessions",
        "/v1/lookup/{address}",
        "/v1/whoami",
        "/healthz",
        "/.well-known/pd",
        "/metrics",
        "/openapi.json",
        "/v1/relay/{address}",
        "/v1/relay/{address}/slot",
        "/v1/relay/{address}/accept/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // The relay's upgrades are documented with their 101 and their refusals.
    for path in [
        "/v1/relay/{address}",
        "/v1/relay/{address}/slot",
        "/v1/relay/{address}/accept/{id}",
    ] {
        let responses = &doc["paths"][path]["get"]["responses"];
        assert!(responses["101"].is_object(), "{path}: {responses}");
        assert!(responses["400"].is_object(), "{path}: {responses}");
    }
    for schema in [
        "AccountInfo",
        "RegisterRequest",
        "RotateRequest",
        "PublishResponse",
        "LoginResponse",
        "LookupResponse",
        "RotationProof",
        "WhoamiResponse",
        "Health",
        "WellKnown",
        "Signed",
        "Problem",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    // The layers' answers are listed too: every operation can time out, and every one
    // with a body can be too large, of the wrong type, or rate limited.
    assert!(doc["paths"]["/v1/lookup/{address}"]["get"]["responses"]["503"].is_object());
    for (path, method) in [
        ("/v1/accounts", "post"),
        ("/v1/accounts/{address}/presence", "put"),
        ("/v1/sessions", "post"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for status in ["413", "415", "429", "503"] {
            assert_eq!(
                responses[status]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path} {status}"
            );
        }
    }
    let lookup = &doc["components"]["schemas"]["LookupResponse"]["properties"];
    assert_eq!(
        lookup["public_key"]["$ref"],
        "#/components/schemas/PublicKey"
    );
    assert_eq!(
        lookup["rotations"]["items"]["$ref"],
        "#/components/schemas/RotationProof"
    );
    let whoami = &doc["paths"]["/v1/whoami"]["get"]["responses"]["200"];
    assert!(whoami["headers"]["Cache-Control"].is_object(), "{whoami}");

    // Issue 14: the schemas carry the constraints the node enforces.
    let schemas = &doc["components"]["schemas"];
    for (schema, length) in [("PublicKey", 43), ("Signature", 86)] {
        assert_eq!(schemas[schema]["minLength"], length, "{schema}");
        assert_eq!(schemas[schema]["maxLength"], length, "{schema}");
        assert!(
            schemas[schema]["pattern"]
                .as_str()
                .unwrap()
                .starts_with("^[A-Za-z0-9_-]"),
            "{schema}"
        );
    }
    assert_eq!(
        schemas["Address"]["pattern"],
        pd_proto::openapi::address_pattern()
    );
    assert_eq!(schemas["Address"]["maxLength"], 255);
    assert_eq!(schemas["Signed"]["additionalProperties"], false);
    assert_eq!(
        schemas["Source"]["enum"],
        serde_json::json!(["local", "cache", "remote", "stale"])
    );
    assert_eq!(
        schemas["WellKnown"]["properties"]["registration"]["enum"],
        serde_json::json!(["open", "invite", "closed"])
    );
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
            .clone()
    };
    assert_eq!(
        param("/v1/lookup/{address}", "get", "mode")["schema"]["enum"],
        serde_json::json!(["normal", "cache-only", "refresh"])
    );
    assert_eq!(
        param("/.well-known/webfinger", "get", "resource")["schema"]["pattern"],
        pd_proto::openapi::acct_pattern()
    );
    for (path, method) in [
        ("/v1/lookup/{address}", "get"),
        ("/v1/federation/lookup/{address}", "get"),
    ] {
        assert_eq!(
            param(path, method, "address")["schema"]["$ref"],
            "#/components/schemas/Address",
            "{method} {path}"
        );
    }
    // The account operations take only this node's addresses; lookups take any.
    let local =
        pd_proto::openapi::local_address_pattern(&pd_proto::Host::parse("localhost").unwrap());
    assert!(local.ends_with("@localhost$"), "{local}");
    for (path, method) in [
        ("/v1/accounts/{address}/presence", "put"),
        ("/v1/accounts/{address}/rotate", "post"),
        ("/v1/accounts/{address}/delete", "post"),
    ] {
        assert_eq!(
            param(path, method, "address")["schema"]["pattern"],
            local,
            "{method} {path}"
        );
    }
}
