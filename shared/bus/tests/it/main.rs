//! The bus against a real nats-server: one test binary, a server per test.

mod consumer;
mod helpers;
mod keyed;
mod publish;
mod request;
mod tail;
mod trace;
