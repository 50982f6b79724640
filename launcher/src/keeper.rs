//! `mainloop up` keeps its nats-server and Postgres alive: when one exits (crashed, killed), the
//! health registry says so (`/health` answers 503) and it is started again on the same port and
//! data, after the old one is fully gone; the services reconnect by themselves. Servers are
//! restarted from the thread that started them, which their parent-death signal is bound to.

use crate::console::say;
use mainloop_local_servers::{NatsOptions, NatsServer, Postgres, PostgresOptions};
use mainloop_runtime::Health;
use mainloop_runtime::health::Readiness;

/// A server we started, with what it takes to start it again and its line in `/health`.
struct Kept<S, O> {
    server: S,
    options: O,
    readiness: Option<Readiness>,
}

pub struct Servers {
    nats: Option<Kept<NatsServer, NatsOptions>>,
    postgres: Option<Kept<Postgres, PostgresOptions>>,
}

impl Servers {
    pub fn new(
        nats: Option<(NatsServer, NatsOptions)>,
        postgres: Option<(Postgres, PostgresOptions)>,
    ) -> Self {
        Servers {
            nats: nats.map(|(server, options)| Kept {
                options: NatsOptions {
                    port: server.port(),
                    ..options
                },
                server,
                readiness: None,
            }),
            postgres: postgres.map(|(server, options)| Kept {
                options: PostgresOptions {
                    port: server.port(),
                    ..options
                },
                server,
                readiness: None,
            }),
        }
    }

    /// From now on the servers have their lines in `health` (registered only once the services
    /// are ready, so that two ready servers never make a system of starting services "healthy").
    pub fn report_to(&mut self, health: &Health) {
        let ready = |name: &str| {
            let readiness = health.register(name);
            readiness.ready();
            Some(readiness)
        };
        if let Some(kept) = &mut self.nats {
            kept.readiness = ready("nats-server");
        }
        if let Some(kept) = &mut self.postgres {
            kept.readiness = ready("postgres");
        }
    }

    /// Starts again whichever server has exited. Blocks while it starts.
    pub fn keep_alive(&mut self) {
        if let Some(kept) = &mut self.nats
            && let Some(status) = kept.server.exited()
        {
            kept.readiness.iter().for_each(Readiness::not_ready);
            tracing::error!(%status, "nats-server exited; starting it again");
            match NatsServer::start(&kept.options) {
                Ok(server) => {
                    say!(
                        "NATS:      nats-server exited ({status}); started again (pid {})",
                        server.pid()
                    );
                    kept.server = server;
                    kept.readiness.iter().for_each(Readiness::ready);
                }
                Err(err) => tracing::error!(error = %err, "nats-server did not start again; will retry"),
            }
        }
        if let Some(kept) = &mut self.postgres
            && let Some(status) = kept.server.exited()
        {
            kept.readiness.iter().for_each(Readiness::not_ready);
            tracing::error!(%status, "postgres exited; starting it again");
            match Postgres::start(&kept.options) {
                Ok(server) => {
                    say!(
                        "Postgres:  postgres exited ({status}); started again (pid {})",
                        server.pid()
                    );
                    kept.server = server;
                    kept.readiness.iter().for_each(Readiness::ready);
                }
                Err(err) => tracing::error!(error = %err, "postgres did not start again; will retry"),
            }
        }
    }

    /// Stops Postgres, then NATS (after every service let go of them).
    pub fn stop(self) {
        if let Some(kept) = self.postgres {
            kept.server.stop();
        }
        if let Some(kept) = self.nats {
            kept.server.stop();
        }
    }
}
