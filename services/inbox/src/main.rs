use mainloop_inbox::{Config, NAME, run};

fn main() -> anyhow::Result<()> {
    mainloop_runtime::service::main(NAME, Config::health, run)
}
