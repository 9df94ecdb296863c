//! Shared mechanics for the operators: runtime, apply/prune, conditions, builders, time and
//! cron, metrics.

pub mod builders;
pub mod conditions;
pub mod cron;
pub mod duration;
pub mod labels;
pub mod metrics;
