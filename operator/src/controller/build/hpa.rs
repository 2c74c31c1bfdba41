//! The HorizontalPodAutoscaler, when autoscaling is on.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use kube::ResourceExt;

use super::child_meta;
use crate::crd::OrderPlatform;

/// `None` when autoscaling is off (the Deployment's replicas come from the spec then).
pub fn build_hpa(platform: &OrderPlatform) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = platform.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(platform, platform.name_any(), "api"),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: platform.name_any(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(autoscaling.target_cpu_utilization),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hpa_scales_the_deployment_on_cpu() {
        assert!(build_hpa(&OrderPlatform::test()).is_none());
        let spec = build_hpa(&OrderPlatform::test().with_autoscaling(2, 6))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 6));
        assert_eq!(spec.scale_target_ref.name, "shop");
        assert_eq!(
            spec.metrics.unwrap()[0]
                .resource
                .as_ref()
                .unwrap()
                .target
                .average_utilization,
            Some(70)
        );
    }
}
