//! Fakes of the services mainloop talks to, each speaking the real wire protocol so the real
//! client code runs against it: a `claude` CLI that replays the recorded stream-json protocol and
//! makes real git commits; a stateful GitHub REST server whose repositories are real bare git
//! repositories (so pushes are real) with a control API for tests; an Anthropic Messages API that
//! plays a main thread which asks before it spawns; a Messages API whose model follows a script,
//! streaming, for running the real Claude Code CLI in tests; a Web Push service that checks VAPID
//! and decrypts what it receives; a Kubernetes API server for Jobs, pods and their logs. Used by tests and, clearly labelled,
//! by `mainloop up --demo`.

// Handlers answer `Result<Response, Response>`: both sides are HTTP answers, and boxing the
// error side would only add noise to a test double.
#![allow(clippy::result_large_err)]

pub mod anthropic;
mod anthropic_stream;
pub mod claude;
mod claude_chat;
pub mod github;
pub mod kubernetes;
pub mod openai;
pub mod push_service;
pub mod scripted_model;
mod serving;
