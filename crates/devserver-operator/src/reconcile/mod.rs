//! Orchestration of each kind: observe -> validate -> build -> apply ->
//! status. The controllers' wiring is in [`crate::controllers`].

pub mod devserver;
pub mod user;
