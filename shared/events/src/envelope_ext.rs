use std::time::SystemTime;

use prost::Message;
use uuid::Uuid;

use crate::{Envelope, EventError, Payload};

/// An event id: a UUIDv7 string, so ids sort by creation time.
pub type EventId = String;

/// A fresh UUIDv7.
pub fn new_event_id() -> EventId {
    Uuid::now_v7().to_string()
}

/// The current time as a protobuf timestamp.
pub fn now() -> pbjson_types::Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

impl Envelope {
    /// A new event about `correlation_id` (a task or conversation) belonging to `user_id`.
    pub fn new(user_id: impl Into<String>, correlation_id: impl Into<String>, payload: Payload) -> Self {
        Envelope {
            id: new_event_id(),
            r#type: payload.type_name().to_string(),
            occurred_at: Some(now()),
            user_id: user_id.into(),
            correlation_id: correlation_id.into(),
            causation_id: String::new(),
            payload: Some(payload),
        }
    }

    /// Records which event or command caused this one.
    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = causation_id.into();
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Decodes and checks the invariants every reader relies on: an id, a payload, and a `type`
    /// that names that payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EventError> {
        let envelope = Envelope::decode(bytes)?;
        envelope.validate()?;
        Ok(envelope)
    }

    pub fn validate(&self) -> Result<(), EventError> {
        if self.id.is_empty() {
            return Err(EventError::MissingId);
        }
        let Some(payload) = &self.payload else {
            return Err(EventError::MissingPayload { id: self.id.clone() });
        };
        let actual = payload.type_name();
        if self.r#type != actual {
            return Err(EventError::TypeMismatch {
                id: self.id.clone(),
                declared: self.r#type.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Canonical protobuf JSON (camelCase fields, RFC 3339 timestamps), as `events tail` prints.
    pub fn to_json(&self) -> Result<serde_json::Value, EventError> {
        Ok(serde_json::to_value(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{CiFailed, TaskSpawned};

    fn spawned() -> Payload {
        Payload::TaskSpawned(TaskSpawned {
            task_id: "t1".into(),
            description: "add a README".into(),
            ..Default::default()
        })
    }

    #[test]
    fn new_envelope_names_its_payload_and_round_trips() {
        let event = Envelope::new("u1", "t1", spawned()).caused_by("c1");
        assert_eq!(event.r#type, "TaskSpawned");
        assert_eq!(
            Uuid::parse_str(&event.id).map(|u| u.get_version_num()).ok(),
            Some(7)
        );
        let decoded = Envelope::from_bytes(&event.to_bytes());
        assert!(matches!(decoded, Ok(ref d) if *d == event), "{decoded:?}");
    }

    #[test]
    fn acronym_types_keep_their_schema_names() {
        let event = Envelope::new("u1", "t1", Payload::CiFailed(CiFailed::default()));
        assert_eq!(event.r#type, "CIFailed");
    }

    #[test]
    fn a_type_that_disagrees_with_the_payload_is_rejected() {
        let mut event = Envelope::new("u1", "t1", spawned());
        event.r#type = "TaskCancelled".into();
        let err = Envelope::from_bytes(&event.to_bytes());
        assert!(
            matches!(
                err,
                Err(EventError::TypeMismatch {
                    actual: "TaskSpawned",
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_and_empty_envelopes_are_rejected() {
        assert!(matches!(
            Envelope::from_bytes(&[0xff, 0xff, 0xff]),
            Err(EventError::Decode(_))
        ));
        assert!(matches!(Envelope::from_bytes(&[]), Err(EventError::MissingId)));
        let mut event = Envelope::new("u1", "t1", spawned());
        event.payload = None;
        assert!(matches!(
            Envelope::from_bytes(&event.to_bytes()),
            Err(EventError::MissingPayload { .. })
        ));
    }

    #[test]
    fn json_is_canonical_protobuf_json() -> Result<(), EventError> {
        let event = Envelope::new("u1", "t1", spawned());
        let json = event.to_json()?;
        assert_eq!(json["type"], "TaskSpawned");
        assert_eq!(json["userId"], "u1");
        assert_eq!(json["taskSpawned"]["description"], "add a README");
        assert!(
            json["occurredAt"]
                .as_str()
                .is_some_and(|t| t.ends_with("+00:00") || t.ends_with('Z')),
            "{json}"
        );
        Ok(())
    }

    #[test]
    fn every_catalogue_name_is_unique() {
        let mut names = crate::ALL_EVENT_TYPES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), crate::ALL_EVENT_TYPES.len());
        for required in ["TaskSpawned", "WorkerLog", "CIFailed", "NeedsApproval"] {
            assert!(crate::ALL_EVENT_TYPES.contains(&required), "{required} missing");
        }
    }
}
