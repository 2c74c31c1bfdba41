//! The PodDisruptionBudget of the service pods.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{child_meta, selector_labels};
use crate::crd::OrderPlatform;

/// `None` when the spec asks for no budget.
pub fn build_pdb(platform: &OrderPlatform) -> Option<PodDisruptionBudget> {
    let budget = platform.spec.pod_disruption_budget.as_ref()?;
    Some(PodDisruptionBudget {
        metadata: child_meta(platform, platform.name_any(), "api"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(budget.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(platform)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PodDisruptionBudgetSpec as Budget;

    #[test]
    fn a_budget_only_when_asked_for() {
        let mut platform = OrderPlatform::test();
        assert!(build_pdb(&platform).is_none());
        platform.spec.pod_disruption_budget = Some(Budget { max_unavailable: 1 });
        let spec = build_pdb(&platform).unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    }
}
