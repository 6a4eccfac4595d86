//! One module per subcommand. Each exposes an `Args` struct (clap) and a `run` function.

pub mod bench;
pub mod bench_reference;
pub mod compare;
pub mod example;
pub mod report;
pub mod reproduce;
pub mod simple;
pub mod train;
