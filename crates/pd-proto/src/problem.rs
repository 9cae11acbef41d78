//! RFC 9457 problem details: the one error body of the API, and the stable problem types.

use serde::{Deserialize, Serialize};

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Prefix of every problem type URI.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:pd:problem:";

/// An error body (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// Stable identifier of the kind of problem, `urn:pd:problem:<slug>`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^urn:pd:problem:[a-z0-9-]+$"))]
    pub kind: String,
    /// Short human summary of the kind of problem.
    pub title: String,
    /// HTTP status code.
    #[cfg_attr(feature = "openapi", schema(minimum = 100, maximum = 599))]
    pub status: u16,
    /// Human explanation of this occurrence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

macro_rules! problem_types {
    ($($variant:ident => ($slug:literal, $status:literal, $title:literal),)*) => {
        /// Every problem type the API returns. The slug and status of a variant never change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ProblemType {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl ProblemType {
            /// All problem types, for documentation and tests.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant),*];

            /// The short name used in the type URI.
            pub fn slug(self) -> &'static str {
                match self { $(Self::$variant => $slug,)* }
            }

            /// The HTTP status that goes with this type.
            pub fn status(self) -> u16 {
                match self { $(Self::$variant => $status,)* }
            }

            /// The human title.
            pub fn title(self) -> &'static str {
                match self { $(Self::$variant => $title,)* }
            }

            /// Finds the type named by a type URI.
            pub fn from_uri(uri: &str) -> Option<Self> {
                let slug = uri.strip_prefix(PROBLEM_TYPE_PREFIX)?;
                match slug { $($slug => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

problem_types! {
    InvalidAddress => ("invalid-address", 400, "The address is malformed"),
    InvalidRequest => ("invalid-request", 400, "The request is malformed"),
    InvalidSignature => ("invalid-signature", 400, "The signature does not verify"),
    InvalidKey => ("invalid-key", 400, "The public key is invalid or weak"),
    InvalidRecord => ("invalid-record", 400, "The record's content is not acceptable"),
    StaleRequest => ("stale-request", 400, "The request is dated outside the allowed clock skew"),
    WrongDomain => ("wrong-domain", 400, "The address does not belong to this node"),
    Unauthenticated => ("unauthenticated", 401, "A valid session token is required"),
    InvalidNodeSignature => ("invalid-node-signature", 401, "The node-to-node request signature is missing or invalid"),
    RefusedByPolicy => ("refused-by-policy", 403, "This node does not federate with that domain"),
    RemoteRefused => ("remote-refused", 403, "The remote node does not accept requests from this node"),
    RegistrationClosed => ("registration-closed", 403, "This node does not accept registrations"),
    InviteRequired => ("invite-required", 403, "A valid invite token is required"),
    NotFound => ("not-found", 404, "No such resource"),
    UnknownUser => ("unknown-user", 404, "No such user"),
    NotCached => ("not-cached", 404, "No cached answer for that address"),
    MethodNotAllowed => ("method-not-allowed", 405, "Method not allowed"),
    NotAcceptable => ("not-acceptable", 406, "Not acceptable"),
    NameTaken => ("name-taken", 409, "The name is already registered"),
    Replayed => ("replayed", 409, "The sequence number is not above the stored one"),
    PayloadTooLarge => ("payload-too-large", 413, "The request body is too large"),
    UriTooLong => ("uri-too-long", 414, "The request URI is too long"),
    UnsupportedMediaType => ("unsupported-media-type", 415, "The request body must be application/json"),
    RateLimited => ("rate-limited", 429, "Too many requests"),
    HeadersTooLarge => ("headers-too-large", 431, "The request header fields are too large"),
    Internal => ("internal", 500, "Internal error"),
    NotImplemented => ("not-implemented", 501, "Not implemented by this node"),
    NoPdNode => ("no-pd-node", 502, "The domain has no PD node"),
    BadRemoteAnswer => ("bad-remote-answer", 502, "The remote node gave an invalid answer"),
    RemoteUnreachable => ("remote-unreachable", 504, "The remote node is unreachable or timed out"),
    Unavailable => ("unavailable", 503, "The node is temporarily unavailable"),
    Timeout => ("timeout", 503, "The request took too long"),
}

impl ProblemType {
    /// The full type URI.
    pub fn uri(self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.slug())
    }

    /// Builds a problem of this type with a detail message.
    pub fn with_detail(self, detail: impl Into<String>) -> Problem {
        Problem {
            kind: self.uri(),
            title: self.title().to_owned(),
            status: self.status(),
            detail: detail.into(),
        }
    }
}

impl Problem {
    /// The known problem type, if the type URI names one.
    pub fn problem_type(&self) -> Option<ProblemType> {
        ProblemType::from_uri(&self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_uri() {
        for t in ProblemType::ALL {
            assert_eq!(ProblemType::from_uri(&t.uri()), Some(*t));
            assert!((400..600).contains(&t.status()));
        }
        assert_eq!(ProblemType::from_uri("about:blank"), None);
    }

    #[test]
    fn problem_json_shape() {
        let p = ProblemType::UnknownUser.with_detail("no user bob@a.example");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["type"], "urn:pd:problem:unknown-user");
        assert_eq!(json["status"], 404);
        assert_eq!(json["title"], "No such user");
    }
}
