//! `mcp-relay <socket>`: what the Claude Code CLI starts as mainloop's MCP server. It connects to
//! the socket the chat turn listens on and copies bytes both ways — stdin to the socket, the
//! socket to stdout — until either side ends; the protocol itself is spoken by the conversation
//! service (`mcp`), where the person's turn and its tools are.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// Runs the relay with `args` (after `mcp-relay`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let [socket] = args else {
        eprintln!("usage: mcp-relay <socket>");
        return 2;
    };
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(err) => {
            eprintln!("mcp-relay: {socket}: {err}");
            return 1;
        }
    };
    let Ok(mut to_socket) = stream.try_clone() else {
        eprintln!("mcp-relay: the socket could not be shared");
        return 1;
    };
    std::thread::spawn(move || {
        pass_on(&mut std::io::stdin().lock(), &mut to_socket);
        let _ = to_socket.shutdown(std::net::Shutdown::Write);
    });
    let mut from_socket = stream;
    pass_on(&mut from_socket, &mut std::io::stdout().lock());
    0
}

/// Copies whatever arrives at once, until the end. Not `std::io::copy`: on Linux it splices,
/// and a splice from a Unix socket into a pipe waits for far more than one message.
fn pass_on(from: &mut impl Read, to: &mut impl Write) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
