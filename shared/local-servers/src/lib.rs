//! Private nats-server and Postgres processes on loopback, for `mainloop up` (data kept under
//! `./.mainloop/`) and for the test kit (data in temp dirs). Each server is a child process that
//! is stopped gracefully by [`NatsServer::stop`] / [`Postgres::stop`], killed when its handle is
//! dropped (also on panic), and sent a signal by the kernel if this process dies first, so no
//! server outlives the program that started it.

mod binaries;
mod child;
pub use child::is_root;
mod error;
mod nats;
mod placement;
mod postgres;

pub use binaries::{find_nats_server, find_postgres_bin_dir};
pub use child::{set_parent_death_signal, signal_group, signal_process};
pub use error::Error;
/// Signal numbers for [`signal_group`].
pub use libc::{SIGINT, SIGKILL, SIGTERM};
pub use nats::{NatsOptions, NatsServer};
pub use placement::{OUTSIDE_ROOT, postgres_dir, reachable_dir, user_ids};
pub use postgres::{Postgres, PostgresOptions, init_cluster};

/// Asks the kernel for a free loopback port. Another process could take it before the server
/// binds; the servers report that as a start failure rather than hanging.
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(Error::Io)?;
    Ok(listener.local_addr().map_err(Error::Io)?.port())
}
