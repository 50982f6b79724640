//! Coding agents. Claude Code first, in its headless SDK mode: `protocol` is the only place that
//! knows its wire format, `policy` answers its permission prompts, `process_tree` finds every
//! process a run started, and `run` drives one run.

pub mod policy;
pub mod process_tree;
pub mod protocol;
pub mod run;

pub use run::{AgentConfig, AgentOutcome, AgentRun, run_agent};
