//! Shared mechanics for the operators: runtime, apply/prune, conditions,
//! builders, time and cron, metrics. Domain logic stays in the operators.

pub mod apply;
pub mod builders;
pub mod cel;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod cron;
pub mod duration;
pub mod events;
pub mod http;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod quantity;
pub mod runtime;
pub mod status;

pub use runtime::{Operator, Runtime};
