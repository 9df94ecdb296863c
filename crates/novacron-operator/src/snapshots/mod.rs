//! Scheduled snapshots (`snapshotPolicy`): CSI VolumeSnapshots of every disk
//! of a VM on a cron schedule, made consistent, listed in
//! `status.snapshots`, pruned by retention.
//!
//! - [`plan`]: which tick is due now (one catch-up after downtime) and when
//!   to look again;
//! - [`volume_snapshot`]: the VolumeSnapshot objects and how their status
//!   reads as one VM snapshot;
//! - [`retention`]: which snapshots go (failed ones never push ready ones
//!   out).

pub mod plan;
pub mod retention;
pub mod sync;
pub mod volume_snapshot;
