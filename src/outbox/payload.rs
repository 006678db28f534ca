//! Delivery bodies as the store holds them: bytes stored as they are, or the choice of the
//! envelope, which `deliver` renders from the stored event when it sends, so an event is stored
//! once however many webhooks it fires.

/// What a new delivery sends as its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// No body (a GET).
    Empty,
    /// These bytes, stored with the delivery.
    Bytes(Vec<u8>),
    /// The envelope around the delivery's event. Only the choice is stored; the body is
    /// rendered from the event's stored JSON each time the delivery is sent, byte for byte the
    /// same on every attempt.
    Envelope,
}

/// A stored delivery's body as read back: what `deliver` needs to produce the bytes it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredBody {
    /// No body (a GET).
    Empty,
    /// The bytes stored with the delivery.
    Bytes(Vec<u8>),
    /// The envelope around the delivery's event, rendered at send time.
    Envelope(StoredEvent),
}

/// The stored event an envelope wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event type on the wire: `conversion`, `refund`, `event1`..`event10`.
    pub kind: String,
    /// The event's `occurredAt`.
    pub occurred_at: Option<String>,
    /// The event as stored, JSON text in the wire format.
    pub json: String,
}
