//! End-to-end suites against the local control plane (`scripts/cluster.sh`): one test binary,
//! so the suites share `support` and run in parallel.

mod chart;
mod control_plane;
mod deletion;
mod external;
mod harness;
mod leader;
mod ownership;
mod rollout;
mod spec;
#[path = "../common/stack.rs"]
mod stack;
mod support;
#[path = "../common/tools.rs"]
mod tools;
mod traces;
