//! The contract between rrocker and `rrocker-init`, PID 1 of every task: the report records
//! init and the engine's own child write on the pipe they inherit as fd 3 ([`report`]),
//! init's argv ([`plan`]), the set-up steps it names when one fails ([`step`]), the
//! capabilities it keeps ([`capabilities`]), the seccomp filters it installs ([`filters`]), a
//! task's terminal size ([`terminal`]) and what the daemon tells a running init ([`control`]).
//!
//! The init program itself is this crate's binary (`main.rs` and its modules). The crate has
//! no dependencies so that rrockerd's build script can compile it with rustc alone into the
//! small static executable every task starts with: exec'ing the daemon's own 50 MB dynamic
//! binary instead cost about 2 ms per task in dynamic linking and relocations.

pub mod capabilities;
pub mod control;
pub mod filters;
pub mod plan;
pub mod report;
pub mod step;
pub mod terminal;
