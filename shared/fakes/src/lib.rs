//! Fakes of the services mainloop talks to, each speaking the real wire protocol so the real
//! client code runs against it: a `claude` CLI that replays the recorded stream-json protocol and
//! makes real git commits; a stateful GitHub REST server whose repositories are real bare git
//! repositories (so pushes are real) with a control API for tests. Used by tests and, clearly labelled, by `mainloop up --demo`.

pub mod claude;
pub mod github;
