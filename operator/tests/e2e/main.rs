//! End-to-end suites against the local control plane (`scripts/cluster.sh`): one test binary,
//! so the suites share `support` and run in parallel.

mod chart;
mod control_plane;
mod deletion;
mod leader;
mod ownership;
mod reconcile;
#[path = "../common/stack.rs"]
mod stack;
mod support;
