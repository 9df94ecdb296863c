//! Scheduled snapshots (`snapshotPolicy`): CSI VolumeSnapshots of every disk
//! of a VM on a cron schedule, made consistent, listed in
//! `status.snapshots`, pruned by retention.
//!
//! - [`plan`]: which tick is due now (one catch-up after downtime) and when
//!   to look again;
//! - [`volume_snapshot`]: the VolumeSnapshot objects and how their status
//!   reads as one VM snapshot;
//! - [`retention`]: which snapshots go (failed ones never push ready ones
//!   out);
//! - [`sync`]: one pass for one VM (read, take the due tick quiesced,
//!   prune);
//! - [`vm`]: the pass inside the VM reconcile (status, events, when to run);
//! - [`restore`]: which VolumeSnapshot `snapshot://NAME` starts a new VM
//!   from.

pub mod plan;
pub mod restore;
pub mod retention;
pub mod sync;
pub mod vm;
pub mod volume_snapshot;

pub use vm::reconcile_vm;
