//! A revision: what the service pods run, as one unit. The image, the configuration it was
//! validated with (a ConfigMap named after its content) and the database it was migrated
//! against move together, so a new configuration or database never reaches the old image
//! first, and a new image never runs before its migrations.

use k8s_openapi::api::apps::v1::Deployment;

use super::{short_hash, CONTAINER_NAME, DATABASE_ENV};
use crate::crd::{OrderPlatform, SecretKeyRef};

/// Annotation on an OrderPlatform whose value is part of the migration's identity: setting a
/// new value re-runs a failed migration without changing the image.
pub const RETRY_MIGRATIONS_ANNOTATION: &str = "platform.orders.dev/retry-migrations";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub image: String,
    /// The immutable ConfigMap the pods read their environment from.
    pub config_map: String,
    /// The Secret key holding the PostgreSQL URL.
    pub database: SecretKeyRef,
}

impl Revision {
    /// The revision the spec asks for, with its configuration in `config_map`.
    pub fn desired(platform: &OrderPlatform, config_map: String) -> Self {
        Self {
            image: platform.spec.image.clone(),
            config_map,
            database: platform.spec.database.secret_ref.clone(),
        }
    }

    /// The revision a Deployment built by [`super::build_deployment`] runs; `None` for one
    /// that does not look like ours (then nothing is kept from it).
    pub fn running(deployment: &Deployment) -> Option<Self> {
        let pod = deployment.spec.as_ref()?.template.spec.as_ref()?;
        let container = pod.containers.iter().find(|c| c.name == CONTAINER_NAME)?;
        let config_map = container
            .env_from
            .iter()
            .flatten()
            .find_map(|e| e.config_map_ref.as_ref())?
            .name
            .clone();
        let database = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == DATABASE_ENV)?
            .value_from
            .as_ref()?
            .secret_key_ref
            .as_ref()?;
        Some(Self {
            image: container.image.clone()?,
            config_map,
            database: SecretKeyRef {
                name: database.name.clone(),
                key: database.key.clone(),
            },
        })
    }

    /// What migrations are validated for: see [`migration_key`].
    pub fn migration_key(&self, platform: &OrderPlatform) -> String {
        migration_key(platform, &self.image, &self.database)
    }
}

/// The identity of a migration: the image, the database, and the platform's retry
/// annotation. The configuration is not part of it: migrations do not read it.
pub fn migration_key(platform: &OrderPlatform, image: &str, database: &SecretKeyRef) -> String {
    let retry = platform
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RETRY_MIGRATIONS_ANNOTATION))
        .map(String::as_str)
        .unwrap_or_default();
    let identity = serde_json::json!([image, database.name, database.key, retry]);
    short_hash(identity.to_string().as_bytes(), 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::build::{build_config_map, build_deployment};

    fn revision(platform: &OrderPlatform) -> Revision {
        let config = build_config_map(platform);
        Revision::desired(platform, config.metadata.name.unwrap())
    }

    #[test]
    fn a_built_deployment_reads_back_as_its_revision() {
        let platform = OrderPlatform::test();
        let wanted = revision(&platform);
        let deployment = build_deployment(&platform, &wanted);
        assert_eq!(Revision::running(&deployment), Some(wanted));
        assert_eq!(Revision::running(&Deployment::default()), None);
    }

    #[test]
    fn the_migration_key_follows_image_database_and_retry_but_not_configuration() {
        let platform = OrderPlatform::test();
        let key = revision(&platform).migration_key(&platform);
        assert_eq!(key.len(), 10);

        let mut config = platform.clone();
        config.spec.dynamodb.history_retention_days = 7;
        assert_ne!(revision(&config), revision(&platform), "a new ConfigMap");
        assert_eq!(revision(&config).migration_key(&config), key);

        let image = platform.clone().with_image("img:9");
        assert_ne!(revision(&image).migration_key(&image), key);

        let mut database = platform.clone();
        database.spec.database.secret_ref.name = "orders-db-2".into();
        assert_ne!(revision(&database).migration_key(&database), key);
        let mut db_key = platform.clone();
        db_key.spec.database.secret_ref.key = "URL".into();
        assert_ne!(revision(&db_key).migration_key(&db_key), key);

        let mut retried = platform.clone();
        retried
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(RETRY_MIGRATIONS_ANNOTATION.into(), "1".into());
        let retried_key = revision(&retried).migration_key(&retried);
        assert_ne!(retried_key, key);
        retried
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(RETRY_MIGRATIONS_ANNOTATION.into(), "2".into());
        assert_ne!(revision(&retried).migration_key(&retried), retried_key);
    }
}
