//! The registry of diagnostic codes: stable names, never reused for another meaning.

/// Every diagnostic whc reports. The code string (`whc::...`) is part of the public interface:
/// CI scripts match on it, so a code is never renamed or given another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    // Errors.
    Syntax,
    UnknownField,
    UnknownEvent,
    UnknownOperator,
    UnknownToken,
    UnknownClause,
    Attribution,
    OperatorType,
    LiteralType,
    MissingValue,
    EventNumberRange,
    InvalidRegex,
    InvalidUrl,
    TokenInHost,
    DuplicateWebhook,
    MissingOn,
    MissingUrl,
    RepeatedClause,
    InvalidDuration,
    InvalidRetries,
    SecretLiteral,
    InvalidHeader,
    ReadFile,
    DuplicateSource,
    DuplicateRoute,
    MissingRoute,
    InvalidRoute,
    EmptyValueMap,
    ValueMapField,
    // Warnings.
    InsecureUrl,
    NeverFires,
    DuplicateCondition,
    EventNumberOutsideEvent,
    CountryCode,
    EnvUnset,
    DuplicateEvent,
    NoRules,
    SkippedLink,
    CredentialLiteral,
    CurrencyCode,
    MissingSecret,
    MissingId,
}

impl Code {
    /// The stable code string shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "whc::syntax",
            Code::UnknownField => "whc::unknown_field",
            Code::UnknownEvent => "whc::unknown_event",
            Code::UnknownOperator => "whc::unknown_operator",
            Code::UnknownToken => "whc::unknown_token",
            Code::UnknownClause => "whc::unknown_clause",
            Code::Attribution => "whc::attribution",
            Code::OperatorType => "whc::operator_type",
            Code::LiteralType => "whc::literal_type",
            Code::MissingValue => "whc::missing_value",
            Code::EventNumberRange => "whc::event_number_range",
            Code::InvalidRegex => "whc::invalid_regex",
            Code::InvalidUrl => "whc::invalid_url",
            Code::TokenInHost => "whc::token_in_host",
            Code::DuplicateWebhook => "whc::duplicate_webhook",
            Code::MissingOn => "whc::missing_on",
            Code::MissingUrl => "whc::missing_url",
            Code::RepeatedClause => "whc::repeated_clause",
            Code::InvalidDuration => "whc::invalid_duration",
            Code::InvalidRetries => "whc::invalid_retries",
            Code::SecretLiteral => "whc::secret_literal",
            Code::InvalidHeader => "whc::invalid_header",
            Code::ReadFile => "whc::read_file",
            Code::InsecureUrl => "whc::insecure_url",
            Code::NeverFires => "whc::never_fires",
            Code::DuplicateCondition => "whc::duplicate_condition",
            Code::EventNumberOutsideEvent => "whc::event_number_outside_event",
            Code::CountryCode => "whc::country_code",
            Code::EnvUnset => "whc::env_unset",
            Code::DuplicateEvent => "whc::duplicate_event",
            Code::NoRules => "whc::no_rules",
            Code::SkippedLink => "whc::skipped_link",
            Code::CredentialLiteral => "whc::credential_literal",
            Code::CurrencyCode => "whc::currency_code",
            Code::DuplicateSource => "whc::duplicate_source",
            Code::DuplicateRoute => "whc::duplicate_route",
            Code::MissingRoute => "whc::missing_route",
            Code::InvalidRoute => "whc::invalid_route",
            Code::EmptyValueMap => "whc::empty_value_map",
            Code::ValueMapField => "whc::value_map_field",
            Code::MissingSecret => "whc::missing_secret",
            Code::MissingId => "whc::missing_id",
        }
    }

    /// Whether this code is a warning (the rules still load) rather than an error.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Code::InsecureUrl
                | Code::NeverFires
                | Code::DuplicateCondition
                | Code::EventNumberOutsideEvent
                | Code::CountryCode
                | Code::EnvUnset
                | Code::DuplicateEvent
                | Code::NoRules
                | Code::SkippedLink
                | Code::CredentialLiteral
                | Code::CurrencyCode
                | Code::MissingSecret
                | Code::MissingId
        )
    }
}
