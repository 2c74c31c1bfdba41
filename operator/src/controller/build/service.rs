//! The Service in front of the service pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{child_meta, selector_labels};
use crate::crd::OrderPlatform;

pub fn build_service(platform: &OrderPlatform) -> Service {
    let spec = &platform.spec.service;
    Service {
        metadata: child_meta(platform, platform.name_any(), "api"),
        spec: Some(ServiceSpec {
            type_: Some(spec.type_.as_str().into()),
            selector: Some(selector_labels(platform)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: spec.port,
                node_port: spec.node_port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceType;

    #[test]
    fn the_service_exposes_the_spec_port_and_type() {
        let mut platform = OrderPlatform::test();
        platform.spec.service.port = 80;
        platform.spec.service.type_ = ServiceType::NodePort;
        platform.spec.service.node_port = Some(30080);
        let spec = build_service(&platform).spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.port, port.node_port), (80, Some(30080)));
        assert_eq!(spec.selector.unwrap()["app.kubernetes.io/instance"], "shop");
    }
}
