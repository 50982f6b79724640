//! Coding agents. Claude Code first, in its headless SDK mode; the protocol module is the only
//! place that knows its wire format.

pub mod protocol;
pub mod run;

pub use run::{AgentConfig, AgentOutcome, AgentRun, run_agent};
