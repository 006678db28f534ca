//! The catalogue of condition fields: names, types, attribution and the slot each one reads.

use std::fmt;

/// What kind of value a field holds, which decides the operators it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Free text such as `utm_source`; `country` compares case-insensitively.
    Text,
    /// A true/false ad-network flag such as `isFromGoogleAds`.
    Flag,
    /// A number such as `revenue`.
    Number,
    /// An identifier such as `linkId`: text that may also be written as an integer literal.
    Id,
}

impl FieldType {
    /// The word a person reads in a diagnostic.
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::Text => "a text field",
            FieldType::Flag => "a flag (true/false)",
            FieldType::Number => "a number",
            FieldType::Id => "an identifier",
        }
    }
}

/// Which click a field reads: the visitor's first interaction or their most recent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribution {
    /// The visitor's first click (`first.FIELD`).
    First,
    /// The visitor's last click before the event (`last.FIELD`, and a bare attributable field).
    Last,
}

impl Attribution {
    /// `first` or `last`, as written in rules.
    pub fn keyword(self) -> &'static str {
        match self {
            Attribution::First => "first",
            Attribution::Last => "last",
        }
    }

    /// The phrase used in explanations: "first click" or "last click".
    pub fn phrase(self) -> &'static str {
        match self {
            Attribution::First => "first click",
            Attribution::Last => "last click",
        }
    }
}

/// A field read from a click (first or last): the attributable fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClickField {
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmContent,
    UtmTerm,
    Country,
    DeviceType,
    Referrer,
    /// The tracker's own click id (`cid`, `subid`, `{clickid}`).
    ClickId,
    /// The traffic source's click id (`gclid`, `fbclid`, `ttclid`, a network's `{externalid}`).
    ExternalId,
}

impl ClickField {
    /// Every click field, in slot order.
    pub const ALL: [ClickField; 10] = [
        ClickField::UtmSource,
        ClickField::UtmMedium,
        ClickField::UtmCampaign,
        ClickField::UtmContent,
        ClickField::UtmTerm,
        ClickField::Country,
        ClickField::DeviceType,
        ClickField::Referrer,
        ClickField::ClickId,
        ClickField::ExternalId,
    ];

    /// The slot this field occupies in a [`crate::event::Click`].
    #[inline]
    pub fn slot(self) -> usize {
        self as usize
    }

    /// Whether text in this field compares ignoring ASCII case: only `country` does.
    #[inline]
    pub fn ignores_case(self) -> bool {
        self == ClickField::Country
    }

    /// The field's name in rules and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ClickField::UtmSource => "utm_source",
            ClickField::UtmMedium => "utm_medium",
            ClickField::UtmCampaign => "utm_campaign",
            ClickField::UtmContent => "utm_content",
            ClickField::UtmTerm => "utm_term",
            ClickField::Country => "country",
            ClickField::DeviceType => "deviceType",
            ClickField::Referrer => "referrer",
            ClickField::ClickId => "clickId",
            ClickField::ExternalId => "externalId",
        }
    }
}

/// A numeric field of the event itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NumberField {
    Revenue,
    QualityScore,
    ConversionCount,
    EventCount,
    EventNumber,
}

impl NumberField {
    /// Every number field, in slot order.
    pub const ALL: [NumberField; 5] = [
        NumberField::Revenue,
        NumberField::QualityScore,
        NumberField::ConversionCount,
        NumberField::EventCount,
        NumberField::EventNumber,
    ];

    /// The slot this field occupies in [`crate::event::Event::numbers`].
    #[inline]
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The field's name in rules and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            NumberField::Revenue => "revenue",
            NumberField::QualityScore => "qualityScore",
            NumberField::ConversionCount => "conversionCount",
            NumberField::EventCount => "eventCount",
            NumberField::EventNumber => "eventNumber",
        }
    }
}

/// An ad-network flag of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagField {
    IsFromGoogleAds,
    IsFromFacebookAds,
    IsFromTikTokAds,
}

impl FlagField {
    /// Every flag field, in slot order.
    pub const ALL: [FlagField; 3] = [
        FlagField::IsFromGoogleAds,
        FlagField::IsFromFacebookAds,
        FlagField::IsFromTikTokAds,
    ];

    /// The slot this field occupies in [`crate::event::Event::flags`].
    #[inline]
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The field's name in rules and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            FlagField::IsFromGoogleAds => "isFromGoogleAds",
            FlagField::IsFromFacebookAds => "isFromFacebookAds",
            FlagField::IsFromTikTokAds => "isFromTikTokAds",
        }
    }
}

/// An identifier field of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdField {
    LinkId,
    TargetId,
}

impl IdField {
    /// Every id field, in slot order.
    pub const ALL: [IdField; 2] = [IdField::LinkId, IdField::TargetId];

    /// The slot this field occupies in [`crate::event::Event::ids`].
    #[inline]
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The field's name in rules and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            IdField::LinkId => "linkId",
            IdField::TargetId => "targetId",
        }
    }
}

/// A text field of the event itself (not of a click).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TextField {
    /// The currency of `revenue`: an ISO 4217 code such as `USD`, compared ignoring case.
    Currency,
}

impl TextField {
    /// Every event text field, in slot order.
    pub const ALL: [TextField; 1] = [TextField::Currency];

    /// The slot this field occupies in [`crate::event::Event::texts`].
    #[inline]
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The field's name in rules and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            TextField::Currency => "currency",
        }
    }
}

/// A standard whose codes a text field holds, so that literals compared with it are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeList {
    /// ISO 3166-1 alpha-2 countries (`country`).
    Country,
    /// ISO 4217 currencies (`currency`).
    Currency,
}

/// A condition field as named in a rule, before attribution is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Click(ClickField),
    Text(TextField),
    Number(NumberField),
    Flag(FlagField),
    Id(IdField),
}

impl Field {
    /// Every field, in the order the product page lists them.
    pub fn all() -> impl Iterator<Item = Field> {
        ClickField::ALL
            .into_iter()
            .map(Field::Click)
            .chain(TextField::ALL.into_iter().map(Field::Text))
            .chain(FlagField::ALL.into_iter().map(Field::Flag))
            .chain(NumberField::ALL.into_iter().map(Field::Number))
            .chain(IdField::ALL.into_iter().map(Field::Id))
    }

    /// Looks a field up by its exact (case-sensitive) name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::all().find(|f| f.name() == name)
    }

    /// The field's name in rules and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Field::Click(f) => f.name(),
            Field::Text(f) => f.name(),
            Field::Number(f) => f.name(),
            Field::Flag(f) => f.name(),
            Field::Id(f) => f.name(),
        }
    }

    /// The type of value the field holds.
    pub fn ty(self) -> FieldType {
        match self {
            Field::Click(_) | Field::Text(_) => FieldType::Text,
            Field::Number(_) => FieldType::Number,
            Field::Flag(_) => FieldType::Flag,
            Field::Id(_) => FieldType::Id,
        }
    }

    /// Whether `first.`/`last.` may be written before this field.
    pub fn is_attributable(self) -> bool {
        matches!(self, Field::Click(_))
    }

    /// Names of every attributable field, for help texts.
    pub fn attributable_names() -> Vec<&'static str> {
        ClickField::ALL.iter().map(|f| f.name()).collect()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field together with the click it reads: the exact slot a compiled condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldRef {
    /// An attributable field read from the first or last click.
    Click(Attribution, ClickField),
    Text(TextField),
    Number(NumberField),
    Flag(FlagField),
    Id(IdField),
}

impl FieldRef {
    /// Resolves a field with an optional attribution; a bare attributable field reads the last click.
    /// Returns `None` when an attribution is given for a field that has none.
    pub fn resolve(field: Field, attribution: Option<Attribution>) -> Option<FieldRef> {
        match (field, attribution) {
            (Field::Click(c), a) => Some(FieldRef::Click(a.unwrap_or(Attribution::Last), c)),
            (_, Some(_)) => None,
            (Field::Text(t), None) => Some(FieldRef::Text(t)),
            (Field::Number(n), None) => Some(FieldRef::Number(n)),
            (Field::Flag(f), None) => Some(FieldRef::Flag(f)),
            (Field::Id(i), None) => Some(FieldRef::Id(i)),
        }
    }

    /// The field without its attribution.
    pub fn field(self) -> Field {
        match self {
            FieldRef::Click(_, c) => Field::Click(c),
            FieldRef::Text(t) => Field::Text(t),
            FieldRef::Number(n) => Field::Number(n),
            FieldRef::Flag(f) => Field::Flag(f),
            FieldRef::Id(i) => Field::Id(i),
        }
    }

    /// Whether text read here compares ignoring ASCII case (`country`, first or last click,
    /// and `currency`).
    pub fn ignores_case(self) -> bool {
        self.code_list().is_some()
    }

    /// The standard whose codes this field holds, when it holds codes.
    pub fn code_list(self) -> Option<CodeList> {
        match self {
            FieldRef::Click(_, c) if c.ignores_case() => Some(CodeList::Country),
            FieldRef::Text(TextField::Currency) => Some(CodeList::Currency),
            _ => None,
        }
    }

    /// The click this field reads, when it reads one.
    pub fn attribution(self) -> Option<Attribution> {
        match self {
            FieldRef::Click(a, _) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldRef::Click(a, c) => write!(f, "{}.{}", a.keyword(), c.name()),
            other => f.write_str(other.field().name()),
        }
    }
}
