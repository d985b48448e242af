//! Proximity alerts ("roam", as Tile38 calls them): a rule watches devices against other
//! devices and says when a pair comes within a radius (`near`) and when it separates again
//! (`apart`, past a hysteresis margin).
//!
//! - [`rule`]: the rules and the registry every server keeps;
//! - [`state`]: the near pairs and the incremental step that updates them from the live index;
//! - [`store`]: the rule table, and the stored near pairs a new evaluator starts from.
//!
//! The evaluator task that runs the step on the live index's changes and commits its alerts
//! with the pair states lives with the other evaluators (`alerts::roam`).

pub mod rule;
pub mod state;
pub mod store;

pub use rule::{ProximityRule, RuleError, RuleSet, Rules};
pub use state::{Meeting, PairKey, RoamState, Transition};

#[cfg(test)]
mod tests;
