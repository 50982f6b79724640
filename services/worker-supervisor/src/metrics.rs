//! The supervisor's metrics (the bus counts its consumers): jobs waiting for a slot here and
//! running here, jobs finished by how they ended, and what agents used — tokens by kind and
//! dollars, as the agent's result line reports them.

/// Held while a job is in one state (`mainloop_jobs_queued`, `mainloop_jobs_running`).
pub struct InState(&'static str);

impl InState {
    pub fn queued() -> Self {
        Self::enter("mainloop_jobs_queued")
    }

    pub fn running() -> Self {
        Self::enter("mainloop_jobs_running")
    }

    fn enter(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        InState(name)
    }
}

impl Drop for InState {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// A job ended here: `succeeded`, `failed` or `cancelled`.
pub fn finished(state: &'static str) {
    metrics::counter!("mainloop_jobs_finished_total", "state" => state).increment(1);
}

/// What one agent run used.
pub fn agent_used(usage: crate::agent::protocol::Usage) {
    metrics::counter!("mainloop_agent_tokens_total", "kind" => "input").increment(usage.input_tokens);
    metrics::counter!("mainloop_agent_tokens_total", "kind" => "output").increment(usage.output_tokens);
    if usage.cost_usd.is_finite() && usage.cost_usd > 0.0 {
        // Counters are whole numbers: cost is kept in micro-dollars.
        metrics::counter!("mainloop_agent_cost_microdollars_total")
            .increment((usage.cost_usd * 1e6).round() as u64);
    }
}
