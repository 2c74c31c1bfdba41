//! The versioned event envelope every sink receives, and the events an order change produces.
//!
//! Pure: no database, no SDKs. `docs/events.md` is the catalogue; within a schema version only
//! optional fields are ever added.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Order, OrderStatus};

/// The schema version this build writes, and the only one it can publish.
pub const SCHEMA_VERSION: i32 = 1;

/// Who made a change through the HTTP API with authentication disabled; with it on, the
/// actor is the caller's subject (the token's `sub`).
pub const ACTOR_API: &str = "api";
/// Who made a change as the fulfilment saga's outcome.
pub const ACTOR_SAGA: &str = "saga";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.status_changed")]
    OrderStatusChanged,
    #[serde(rename = "order.confirmed")]
    OrderConfirmed,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    /// The saga's steps: the order itself is unchanged (same version and status).
    #[serde(rename = "inventory.reserved")]
    InventoryReserved,
    #[serde(rename = "inventory.released")]
    InventoryReleased,
    #[serde(rename = "payment.authorized")]
    PaymentAuthorized,
    #[serde(rename = "payment.voided")]
    PaymentVoided,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        Self::OrderCreated,
        Self::OrderStatusChanged,
        Self::OrderConfirmed,
        Self::OrderCancelled,
        Self::InventoryReserved,
        Self::InventoryReleased,
        Self::PaymentAuthorized,
        Self::PaymentVoided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderCreated => "order.created",
            Self::OrderStatusChanged => "order.status_changed",
            Self::OrderConfirmed => "order.confirmed",
            Self::OrderCancelled => "order.cancelled",
            Self::InventoryReserved => "inventory.reserved",
            Self::InventoryReleased => "inventory.released",
            Self::PaymentAuthorized => "payment.authorized",
            Self::PaymentVoided => "payment.voided",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// The event of a change to `status`: confirmations and cancellations have their own.
    pub fn for_status(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Cancelled => Self::OrderCancelled,
            OrderStatus::Confirmed => Self::OrderConfirmed,
            _ => Self::OrderStatusChanged,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What changed. The same shape for every event type of schema version 1; `order` is set on
/// `order.created` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayload {
    /// The status the order is in after this change.
    pub status: OrderStatus,
    /// The status before; absent on `order.created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<OrderStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who made the change: the caller's subject (the token's `sub`), `api` with
    /// authentication disabled, or `saga`.
    pub actor: String,
    pub customer_id: String,
    pub currency: String,
    pub total_minor: i64,
    /// The whole order as created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Box<Order>>,
    /// The inventory service's reservation, on `inventory.reserved` and `inventory.released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    /// The payment service's authorization, on `payment.authorized` and `payment.voided`
    /// (its id only: card data never reaches this service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_id: Option<String>,
}

/// One event as published to every sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub schema_version: i32,
    pub order_id: Uuid,
    pub order_version: i64,
    pub occurred_at: DateTime<Utc>,
    /// The `x-request-id` of the API request that made the change (absent for the saga's own
    /// changes), for finding it in the service's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the change (also a Kafka header), when it was traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub payload: EventPayload,
}

impl EventEnvelope {
    /// `order.created`, for a freshly inserted order, created by `actor`.
    pub fn order_created(order: &Order, actor: &str, request_id: Option<String>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: EventType::OrderCreated,
            schema_version: SCHEMA_VERSION,
            order_id: order.id,
            order_version: order.version,
            occurred_at: order.created_at,
            request_id,
            traceparent: None,
            payload: EventPayload {
                status: order.status,
                previous_status: None,
                reason: None,
                actor: actor.to_owned(),
                customer_id: order.customer_id.clone(),
                currency: order.currency.clone(),
                total_minor: order.total_minor,
                order: Some(Box::new(order.clone())),
                reservation_id: None,
                authorization_id: None,
            },
        }
    }

    /// With the W3C trace context of the change.
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// `order.confirmed` or `order.cancelled` when the order moved to CONFIRMED or CANCELLED,
    /// else `order.status_changed`.
    pub fn status_changed(
        order: &Order,
        previous: OrderStatus,
        actor: &str,
        request_id: Option<String>,
    ) -> Self {
        let event_type = EventType::for_status(order.status);
        Self {
            event_id: Uuid::now_v7(),
            event_type,
            schema_version: SCHEMA_VERSION,
            order_id: order.id,
            order_version: order.version,
            occurred_at: order.updated_at,
            request_id,
            traceparent: None,
            payload: EventPayload {
                status: order.status,
                previous_status: Some(previous),
                reason: order.status_reason.clone(),
                actor: actor.to_owned(),
                customer_id: order.customer_id.clone(),
                currency: order.currency.clone(),
                total_minor: order.total_minor,
                order: None,
                reservation_id: None,
                authorization_id: None,
            },
        }
    }

    /// A saga step's event (`inventory.*`, `payment.*`, actor `saga`): `order` as the saga
    /// read it, at its current `status` and `version` (the step changes neither).
    pub fn saga_step(
        order: &Order,
        status: OrderStatus,
        version: i64,
        step: SagaStepEvent,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        let (event_type, reservation_id, authorization_id) = match step {
            SagaStepEvent::InventoryReserved(id) => (EventType::InventoryReserved, Some(id), None),
            SagaStepEvent::InventoryReleased(id) => (EventType::InventoryReleased, Some(id), None),
            SagaStepEvent::PaymentAuthorized(id) => (EventType::PaymentAuthorized, None, Some(id)),
            SagaStepEvent::PaymentVoided(id) => (EventType::PaymentVoided, None, Some(id)),
        };
        Self {
            event_id: Uuid::now_v7(),
            event_type,
            schema_version: SCHEMA_VERSION,
            order_id: order.id,
            order_version: version,
            occurred_at,
            request_id: None,
            traceparent: None,
            payload: EventPayload {
                status,
                previous_status: None,
                reason: None,
                actor: ACTOR_SAGA.to_owned(),
                customer_id: order.customer_id.clone(),
                currency: order.currency.clone(),
                total_minor: order.total_minor,
                order: None,
                reservation_id,
                authorization_id,
            },
        }
    }
}

/// What a saga step did, with the participant's id of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaStepEvent {
    InventoryReserved(String),
    InventoryReleased(String),
    PaymentAuthorized(String),
    PaymentVoided(String),
}

/// The hour bucket of a time, `YYYY-MM-DDTHH` in UTC: the sort key of the status counters.
pub fn hour_bucket(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_through_their_wire_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(EventType::parse("order.deleted"), None);
    }

    #[test]
    fn hour_buckets_are_utc_hours() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T23:59:59.999+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(hour_bucket(at), "2026-11-22T21");
    }
}
