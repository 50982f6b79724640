use mainloop_gateway::{Config, NAME, run};

fn main() -> anyhow::Result<()> {
    mainloop_runtime::service::main(NAME, Config::health, run)
}
