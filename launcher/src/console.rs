//! Lines for the person at the terminal. A stdout that went away (a closed terminal, `| head`, a
//! parent that stopped reading) must never stop mainloop, so write errors are ignored, where
//! `println!` would panic.

macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub(crate) use say;
