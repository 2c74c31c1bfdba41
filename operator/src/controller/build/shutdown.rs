//! How a service pod stops without failing a request: the timings the Deployment and the
//! service's configuration share.
//!
//! On deletion kubelet runs the preStop hook, then sends SIGTERM, then SIGKILL once the grace
//! period is over. Endpoint removal runs in parallel with the hook: the endpointslice controller
//! and every node's kube-proxy take a moment to stop sending new connections to the pod, so the
//! hook waits first ([`PRE_STOP_SECONDS`]) while the pod still serves. Then the service stops
//! within [`DRAIN_SECONDS`] (`ORDER_SERVICE_SHUTDOWN_TIMEOUT`): in-flight requests drain while
//! saga steps and relay batches finish, all concurrently inside that one bound. The grace period
//! covers both with a margin for the process to exit, so SIGKILL never cuts a drain.

use k8s_openapi::api::core::v1::{Lifecycle, LifecycleHandler, SleepAction};

/// The preStop pause: longer than endpoint propagation (about a second on a small cluster,
/// a few on a large or busy one: on the local cluster's real node, starved by a test run on two
/// cores, 5 s was sometimes not enough and a new connection met the closing listener).
pub const PRE_STOP_SECONDS: i64 = 10;

/// The service's whole stop on SIGTERM (requests, saga steps and relay batches at once).
pub const DRAIN_SECONDS: i64 = 20;

/// Left for the process to flush logs and exit after the drain.
const EXIT_MARGIN_SECONDS: i64 = 5;

/// The pod's `terminationGracePeriodSeconds`: the hook, the drain and the margin.
pub fn termination_grace_period_seconds() -> i64 {
    PRE_STOP_SECONDS + DRAIN_SECONDS + EXIT_MARGIN_SECONDS
}

/// A preStop hook that sleeps in kubelet (the `sleep` action, GA in Kubernetes 1.34): the image
/// has no shell or `sleep` binary to exec.
pub fn pre_stop() -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: PRE_STOP_SECONDS,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_outlasts_the_hook_and_the_drain() {
        let grace = termination_grace_period_seconds();
        assert!(grace > PRE_STOP_SECONDS + DRAIN_SECONDS, "{grace}");
        assert_eq!(grace, 35);
        let hook = pre_stop().pre_stop.unwrap();
        assert_eq!(hook.sleep.unwrap().seconds, PRE_STOP_SECONDS);
        assert!(hook.exec.is_none() && hook.http_get.is_none());
    }
}
