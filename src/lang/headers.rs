//! The headers whc owns on every attempt: one table the checker refuses and the sender honours.

/// Who writes a reserved header, which says what the sender does with a rule's copy of it (the
/// checker refuses them all in rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The HTTP connection, from the URL and the body.
    Transport,
    /// whc's defaults for every attempt; a rule's copy would replace them.
    Default,
    /// The delivery's identity, signature or test marker; the sender drops a rule's copy.
    Delivery,
}

/// A header a rule may not set, and why whc owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedHeader {
    /// The name as whc sends it (compared ignoring case).
    pub name: &'static str,
    /// Who writes it.
    pub owner: Owner,
    /// Why a rule may not set it, as the end of a sentence in a diagnostic's help.
    pub why: &'static str,
}

/// Every header whc sets itself, in the order `whc check` lists them.
pub const RESERVED_HEADERS: &[ReservedHeader] = &[
    ReservedHeader {
        name: "Host",
        owner: Owner::Transport,
        why: "the connection takes it from the URL",
    },
    ReservedHeader {
        name: "Content-Length",
        owner: Owner::Transport,
        why: "the connection computes it from the body",
    },
    ReservedHeader {
        name: "Transfer-Encoding",
        owner: Owner::Transport,
        why: "the connection chooses it for the body",
    },
    ReservedHeader {
        name: "Content-Type",
        owner: Owner::Default,
        why: "the body is whc's JSON envelope, sent as `application/json`",
    },
    ReservedHeader {
        name: "User-Agent",
        owner: Owner::Default,
        why: "it names whc and its version, so endpoints can tell whc's requests apart",
    },
    ReservedHeader {
        name: "Idempotency-Key",
        owner: Owner::Delivery,
        why: "it carries the delivery's id, the same on every retry, so endpoints can drop repeats",
    },
    ReservedHeader {
        name: "webhook-id",
        owner: Owner::Delivery,
        why: "it is part of the Standard Webhooks signature made with the rule's `secret`",
    },
    ReservedHeader {
        name: "webhook-timestamp",
        owner: Owner::Delivery,
        why: "it is part of the Standard Webhooks signature made with the rule's `secret`",
    },
    ReservedHeader {
        name: "webhook-signature",
        owner: Owner::Delivery,
        why: "it is the Standard Webhooks signature made with the rule's `secret`",
    },
    ReservedHeader {
        name: "Whc-Test",
        owner: Owner::Delivery,
        why: "it marks test sends (`whc test`, the admin Test button), never real deliveries",
    },
];

/// The reserved header with this name (ignoring case), if it is one.
pub fn reserved(name: &str) -> Option<&'static ReservedHeader> {
    RESERVED_HEADERS
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
}

/// The reserved names as a list for help texts: `` `Host`, `Content-Length`, … ``.
pub fn reserved_names() -> String {
    RESERVED_HEADERS
        .iter()
        .map(|h| format!("`{}`", h.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(reserved("whc-test").map(|h| h.owner), Some(Owner::Delivery));
        assert_eq!(
            reserved("CONTENT-TYPE").map(|h| h.owner),
            Some(Owner::Default)
        );
        assert_eq!(reserved("X-Team"), None);
    }

    #[test]
    fn names_are_valid_and_unique() {
        for (i, h) in RESERVED_HEADERS.iter().enumerate() {
            assert!(
                http::HeaderName::from_bytes(h.name.as_bytes()).is_ok(),
                "{}",
                h.name
            );
            assert!(
                RESERVED_HEADERS[..i]
                    .iter()
                    .all(|other| !other.name.eq_ignore_ascii_case(h.name)),
                "{} twice",
                h.name
            );
        }
    }
}
