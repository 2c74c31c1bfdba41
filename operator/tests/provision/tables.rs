//! DynamoDB tables against moto: create, adopt, correct drift, refuse a key-schema conflict,
//! delete only with the intent to.

use std::collections::BTreeMap;

use order_operator::provision::dynamodb::{
    Billing, DesiredTable, DynamoDbTarget, TableAction, TableProvisioner, Ttl,
};
use order_operator::provision::Intent;

use crate::support::{self, create_foreign_table, table_keys, unique, TIMEOUT};

fn desired(prefix: &str, billing: Billing) -> Vec<DesiredTable> {
    DesiredTable::all(
        prefix,
        billing,
        BTreeMap::from([("orders.dev/owner".to_owned(), "tests/shop".to_owned())]),
    )
}

async fn provisioner() -> TableProvisioner {
    TableProvisioner::connect(&DynamoDbTarget {
        region: "us-east-1".into(),
        endpoint: Some(support::dynamodb_endpoint()),
        credentials: None,
        timeout: TIMEOUT,
    })
    .await
}

fn action_count(plans: &[order_operator::provision::dynamodb::TablePlan]) -> usize {
    plans.iter().map(|p| p.actions.len()).sum()
}

#[tokio::test]
async fn first_converge_creates_both_tables_with_ttl_and_tags_then_nothing_is_left_to_do() {
    let p = provisioner().await;
    let tables = desired(&format!("t{}", unique()), Billing::PayPerRequest);
    let before = p.plan(&tables, Intent::Present).await.expect("plan");
    assert_eq!(action_count(&before), 6, "{before:?}");

    p.converge(&tables).await.expect("converge");
    for table in &tables {
        let observed = p
            .observe(&table.name)
            .await
            .expect("observe")
            .expect("exists");
        assert_eq!(observed.status, "ACTIVE");
        assert_eq!(observed.keys, table.keys());
        assert_eq!(observed.ttl, Ttl::On("expires_at".into()));
        assert_eq!(
            observed.tags.expect("moto tags")["orders.dev/owner"],
            "tests/shop"
        );
    }
    let after = p.plan(&tables, Intent::Present).await.expect("plan");
    assert_eq!(action_count(&after), 0, "{after:?}");
}

#[tokio::test]
async fn a_table_deleted_out_of_band_is_created_again() {
    let p = provisioner().await;
    let tables = desired(&format!("t{}", unique()), Billing::PayPerRequest);
    p.converge(&tables).await.expect("converge");
    let raw = support::dynamodb().await;
    raw.delete_table()
        .table_name(&tables[0].name)
        .send()
        .await
        .expect("delete by hand");

    let plans = p.plan(&tables, Intent::Present).await.expect("plan");
    assert!(
        matches!(plans[0].actions[0], TableAction::Create { .. }),
        "{plans:?}"
    );
    assert!(plans[1].actions.is_empty());
    p.converge(&tables).await.expect("converge");
    assert!(table_keys(&raw, &tables[0].name).await.is_some());
}

#[tokio::test]
async fn a_billing_mode_change_in_the_spec_is_applied() {
    let p = provisioner().await;
    let prefix = format!("t{}", unique());
    p.converge(&desired(&prefix, Billing::PayPerRequest))
        .await
        .expect("converge");
    let provisioned = desired(&prefix, Billing::Provisioned { read: 3, write: 4 });
    let plans = p.plan(&provisioned, Intent::Present).await.expect("plan");
    assert!(
        matches!(plans[0].actions[..], [TableAction::SetBilling { .. }]),
        "{plans:?}"
    );
    p.converge(&provisioned).await.expect("converge");
    let observed = p
        .observe(&provisioned[0].name)
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(observed.billing, Billing::Provisioned { read: 3, write: 4 });
}

#[tokio::test]
async fn a_table_with_other_keys_is_refused_and_left_untouched() {
    let p = provisioner().await;
    let tables = desired(&format!("t{}", unique()), Billing::PayPerRequest);
    let raw = support::dynamodb().await;
    create_foreign_table(&raw, &tables[0].name, "id").await;

    let plans = p.plan(&tables, Intent::Present).await.expect("plan");
    let refusal = plans[0].refusal.clone().expect("refused");
    assert_eq!(refusal.reason, "KeySchemaConflict");
    assert!(refusal.message.contains("id S HASH"), "{refusal}");
    assert!(plans[0].actions.is_empty());
    let error = p.converge(&tables).await.expect_err("refused");
    assert_eq!(error.reason(), "KeySchemaConflict");
    assert_eq!(
        table_keys(&raw, &tables[0].name).await,
        Some(vec!["id".to_owned()])
    );
    // Removing the platform does not delete a table that is not its own either.
    let removal = p.plan(&tables, Intent::Absent).await.expect("plan");
    assert!(removal[0].actions.is_empty(), "{removal:?}");
}

#[tokio::test]
async fn removal_deletes_the_platforms_tables() {
    let p = provisioner().await;
    let tables = desired(&format!("t{}", unique()), Billing::PayPerRequest);
    p.converge(&tables).await.expect("converge");
    let plans = p.plan(&tables, Intent::Absent).await.expect("plan");
    for (table, plan) in tables.iter().zip(&plans) {
        assert_eq!(plan.actions, [TableAction::Delete]);
        p.apply(table, &plan.actions[0]).await.expect("delete");
    }
    let raw = support::dynamodb().await;
    for table in &tables {
        assert_eq!(table_keys(&raw, &table.name).await, None, "{}", table.name);
    }
}
