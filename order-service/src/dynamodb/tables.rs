//! Creating the tables when missing: for the local stack and tests only. In a cluster the
//! operator provisions them (with key-schema checks this function does not make).

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use platform_resources::{AttributeType, TableDefinition, TABLES};

use super::{describe, DynamoDbConfig};

fn scalar(attribute_type: AttributeType) -> ScalarAttributeType {
    match attribute_type {
        AttributeType::String => ScalarAttributeType::S,
        AttributeType::Number => ScalarAttributeType::N,
    }
}

/// Creates both tables (on-demand billing, TTL on) unless they exist, and waits until ACTIVE.
pub async fn ensure_tables(
    client: &aws_sdk_dynamodb::Client,
    config: &DynamoDbConfig,
) -> Result<(), String> {
    for definition in TABLES {
        let name = definition.table_name(&config.dynamodb_table_prefix);
        if client
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .is_err()
        {
            create(client, &name, &definition).await?;
        }
        wait_active(client, &name).await?;
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(definition.ttl_attribute)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                // Enabling TTL twice is refused with a ValidationException; that is fine here.
                let text = describe(&e);
                if text.contains("TimeToLive is already enabled") {
                    Ok(())
                } else {
                    Err(text)
                }
            })?;
    }
    Ok(())
}

async fn create(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    definition: &TableDefinition,
) -> Result<(), String> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (key, key_type) in [
        (definition.partition_key, KeyType::Hash),
        (definition.sort_key, KeyType::Range),
    ] {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key.name)
                    .attribute_type(scalar(key.attribute_type))
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key.name)
                    .key_type(key_type)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) if describe(&e).contains("ResourceInUseException") => Ok(()),
        Err(e) => Err(describe(&e)),
    }
}

async fn wait_active(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| describe(&e))?
            .table()
            .and_then(|t| t.table_status().cloned());
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "table {name} is not ACTIVE after 60 s (status {status:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
