//! How a call travels to a worker and its reply back. `local` runs workers on this machine:
//! copies of this program, started and reaped by a pool, each talking over two pipes.

pub(crate) mod local;
