//! # baton-supervise: restart, probe and fail over components
//!
//! The policy around baton's failover mechanism, the way Sun Cluster's process monitor (PMF)
//! and fault monitor, and SA-Forum AMF, do it (see `docs/supervise.md`): a supervisor runs
//! components, follows each one's whole process tree, probes it (scores 0, 50, 100, or 201 for
//! an immediate failover, summed over `retry_interval`), restarts it in place up to
//! `retry_count` times in that window, then fails it over to a standby of its redundancy set
//! (the standby, waiting on the queue's owner lock, takes the queue over with every message),
//! and past `failover_limit` failovers gives over, running an action.
//!
//! **Status (issue 18, in progress).** See `docs/supervise.md` for what is built.

pub mod config;
pub mod policy;
pub mod process;
pub mod supervisor;

pub use config::{Component, Config, ConfigError, Probe};
pub use supervisor::{read_state, Report, State, SuperviseError, Supervisor};
