//! The runtime against real Postgres and NATS.

mod crash_between_handling_and_ack;
mod db;
