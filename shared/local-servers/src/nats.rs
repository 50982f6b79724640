use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::child::{ServerProcess, command};
use crate::error::log_tail;
use crate::{Error, find_nats_server, free_port};

#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// JetStream's store; kept across restarts when it is kept on disk.
    pub data_dir: PathBuf,
    /// Where the server's own log goes.
    pub log_file: PathBuf,
    /// 0 picks a free port.
    pub port: u16,
    /// The HTTP monitoring port (`/jsz`, `/connz`), when wanted; 0 picks a free one.
    pub monitor_port: Option<u16>,
}

/// A running `nats-server -js` on 127.0.0.1.
pub struct NatsServer {
    process: ServerProcess,
    port: u16,
    monitor_port: Option<u16>,
}

impl NatsServer {
    pub fn start(options: &NatsOptions) -> Result<Self, Error> {
        let binary = find_nats_server()?;
        std::fs::create_dir_all(&options.data_dir).map_err(Error::Io)?;
        let port = if options.port == 0 {
            free_port()?
        } else {
            options.port
        };
        let pid_file = options.data_dir.join("nats-server.pid");
        crate::child::wait_for_previous(&pid_file, Duration::from_secs(60));
        let mut cmd = command(&binary, None, &options.data_dir);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&options.data_dir)
            .arg("-P")
            .arg(&pid_file);
        let monitor_port = match options.monitor_port {
            Some(0) => Some(free_port()?),
            chosen => chosen,
        };
        if let Some(monitor) = monitor_port {
            cmd.args(["-m", &monitor.to_string()]);
        }
        let process = ServerProcess::spawn(cmd, options.log_file.clone(), libc::SIGTERM)?;
        let mut server = NatsServer {
            process,
            port,
            monitor_port,
        };
        server.wait_until_ready(Duration::from_secs(20))?;
        tracing::info!(pid = server.pid(), port, "nats-server started");
        Ok(server)
    }

    fn wait_until_ready(&mut self, limit: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.process.exited() {
                return Err(Error::Failed {
                    program: "nats-server".into(),
                    status,
                    log: self.process.log.clone(),
                    tail: log_tail(&self.process.log),
                });
            }
            // The server opens its client port only after JetStream has recovered its store.
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::NotReady {
            program: "nats-server",
            seconds: limit.as_secs(),
            log: self.process.log.clone(),
            tail: log_tail(&self.process.log),
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The monitoring endpoints' port (`/jsz`, `/connz`), when they were asked for.
    pub fn monitor_port(&self) -> Option<u16> {
        self.monitor_port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `Some(status)` once the server has exited (died, or was killed).
    pub fn exited(&mut self) -> Option<String> {
        self.process.exited()
    }

    /// Lets JetStream flush and close its files.
    pub fn stop(mut self) {
        self.process.stop(Duration::from_secs(10));
    }
}
