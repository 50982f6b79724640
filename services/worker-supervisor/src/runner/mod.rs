//! Where an agent runs. A job's run (its checkout, the agent, and delivering what the agent
//! committed) happens in one place chosen by configuration (`AGENT_RUNNER`): `local`, processes
//! on this machine, or `kubernetes`, one locked-down Job per job. Each is one module behind
//! [`Runner`]; both take the same [`JobRun`] and end in one JobSucceeded / JobFailed /
//! JobCancelled payload. Around them the supervisor keeps the queue, the leases and the reports.

pub mod kubernetes;
pub mod local;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use mainloop_events::Payload;
use mainloop_events::v1::{JobFailed, JobMode, JobRequested, LogSource};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// Where the job's log lines go (published in order, redacted, by the supervisor), and how
/// many have gone there, counting from the job's first line.
#[derive(Clone)]
pub struct Lines {
    sender: UnboundedSender<(LogSource, String)>,
    sent: Arc<AtomicU64>,
}

impl Lines {
    /// Lines numbered from `after + 1`.
    pub fn new(sender: UnboundedSender<(LogSource, String)>, after: u64) -> Self {
        Lines {
            sender,
            sent: Arc::new(AtomicU64::new(after)),
        }
    }

    pub fn send(&self, source: LogSource, line: String) {
        if self.sender.send((source, line)).is_ok() {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The number of the last line sent.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Where the repository lives, as GitHub says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub clone_url: String,
    pub default_branch: String,
}

/// One job, ready to run: the request, whose it is, and where its repository lives.
pub struct JobRun {
    pub user_id: String,
    pub task_id: String,
    pub job: JobRequested,
    pub remote: Remote,
    pub lines: Lines,
    /// Cancelled when the supervisor itself stops (not the job): what runs outside this process
    /// (a Kubernetes Job) is left running then, to be followed again after the restart.
    pub stopping: CancellationToken,
}

impl JobRun {
    /// The branch a code job works on; planning has none (it stays on the default branch).
    pub fn branch(&self) -> Option<&str> {
        (self.job.mode() != JobMode::Plan)
            .then_some(self.job.branch_name.as_str())
            .filter(|b| !b.is_empty())
    }

    /// What the agent is asked: the prompt and the context the scheduler gathered.
    pub fn prompt(&self) -> String {
        if self.job.context.is_empty() {
            self.job.prompt.clone()
        } else {
            format!("{}\n\n{}", self.job.prompt, self.job.context)
        }
    }

    /// Marks everything of this attempt (processes, Kubernetes objects).
    pub fn run_id(&self) -> String {
        format!("{}:{}", self.job.job_id, self.job.attempt)
    }

    pub fn log(&self, line: impl Into<String>) {
        self.lines.send(LogSource::System, line.into());
    }

    pub fn failed(&self, error: impl Into<String>, retryable: bool) -> Payload {
        failed(&self.job, error.into(), retryable)
    }
}

pub fn failed(job: &JobRequested, error: String, retryable: bool) -> Payload {
    Payload::JobFailed(JobFailed {
        job_id: job.job_id.clone(),
        attempt: job.attempt,
        mode: job.mode,
        error,
        retryable,
    })
}

/// A place agents run.
pub trait Runner: Send + Sync {
    /// As reported in JobStarted (`local`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Runs the job to its end, or until `cancel`, and says how it ended.
    fn run<'a>(&'a self, run: &'a JobRun, cancel: &'a CancellationToken) -> BoxFuture<'a, Payload>;

    /// A job whose supervisor stopped while it ran (this one before a restart, or another
    /// replica whose lease ran out): its end, as far as this runner can still learn it. A local
    /// run died with its supervisor; a Kubernetes Job ran on and is followed again.
    fn recover<'a>(&'a self, run: &'a JobRun, cancel: &'a CancellationToken) -> BoxFuture<'a, Payload>;
}
