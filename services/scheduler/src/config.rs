use mainloop_runtime::{CommonConfig, Health};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    #[command(flatten)]
    pub scheduling: SchedulingSettings,
}

/// How the scheduler paces retries; `mainloop up` takes the same flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulingSettings {
    /// Wait before a failed job's second attempt; doubles per attempt (±20 % jitter).
    #[arg(long, env = "JOB_RETRY_BASE_MS", default_value_t = 30_000)]
    pub job_retry_base_ms: u64,
    /// The longest wait between two attempts of a job.
    #[arg(long, env = "JOB_RETRY_MAX_MS", default_value_t = 600_000)]
    pub job_retry_max_ms: u64,
    /// Rounds of review feedback a task takes up; later feedback is left to the person.
    #[arg(long, env = "MAX_FEEDBACK_ROUNDS", default_value_t = crate::task::MAX_FEEDBACK_ROUNDS)]
    pub max_feedback_rounds: u32,
    /// A question or plan review waiting this long is surfaced again in the inbox (and again
    /// each time as long); 0: never.
    #[arg(long, env = "REMIND_AFTER_SECS", default_value_t = 86_400)]
    pub remind_after_secs: u64,
    /// A question or plan review waiting this long cancels the task, with a note on GitHub;
    /// 0: never.
    #[arg(long, env = "EXPIRE_AFTER_SECS", default_value_t = 0)]
    pub expire_after_secs: u64,
    /// Serve `cmd.scheduler.seed-task`: tasks put straight into a waiting state, for test
    /// suites (`mainloop up` turns it on with test mode). Never for real work.
    #[arg(long, env = "ACCEPT_TEST_SEEDS", default_value_t = false)]
    pub accept_test_seeds: bool,
}

impl Default for SchedulingSettings {
    fn default() -> Self {
        SchedulingSettings {
            job_retry_base_ms: 30_000,
            job_retry_max_ms: 600_000,
            max_feedback_rounds: crate::task::MAX_FEEDBACK_ROUNDS,
            remind_after_secs: 86_400,
            expire_after_secs: 0,
            accept_test_seeds: false,
        }
    }
}

impl SchedulingSettings {
    pub fn waits(&self) -> crate::timers::Waits {
        let after = |secs: u64| (secs > 0).then(|| std::time::Duration::from_secs(secs));
        crate::timers::Waits {
            remind_after: after(self.remind_after_secs),
            expire_after: after(self.expire_after_secs),
        }
    }

    pub fn backoff(&self) -> crate::task::Backoff {
        crate::task::Backoff {
            base: std::time::Duration::from_millis(self.job_retry_base_ms),
            max: std::time::Duration::from_millis(self.job_retry_max_ms.max(self.job_retry_base_ms)),
        }
    }
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
