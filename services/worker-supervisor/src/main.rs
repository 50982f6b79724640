use mainloop_worker_supervisor::{Config, NAME, run};

fn main() -> anyhow::Result<()> {
    // Inside a Kubernetes Job, the same binary runs the Job's steps (see `pod`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("pod-step", rest)) = args.split_first().map(|(a, r)| (a.as_str(), r)) {
        std::process::exit(mainloop_worker_supervisor::pod::main(rest));
    }
    mainloop_runtime::service::main(NAME, Config::health, run)
}
