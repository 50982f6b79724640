//! The runtime against real Postgres and NATS.

mod checkpoints;
mod crash_between_handling_and_ack;
mod db;
