//! DynamoDB tables against moto: create, adopt, correct drift, refuse a key-schema conflict,
//! delete only with the intent to.

use order_operator::provision::dynamodb::{
    Billing, DesiredTable, DynamoDbTarget, TableAction, TableProvisioner, Ttl, ORIGIN_TAG,
    OWNER_TAG,
};
use order_operator::provision::{Intent, Origin};

use crate::support::{self, create_foreign_table, table_keys, unique, TIMEOUT};

fn desired(prefix: &str, billing: Billing) -> Vec<DesiredTable> {
    DesiredTable::all(prefix, billing, "tests/shop", false)
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
    let before = p
        .plan(&tables, |_| None, Intent::Present)
        .await
        .expect("plan");
    assert_eq!(action_count(&before), 4, "{before:?}");

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
        let tags = observed.tags.expect("moto tags");
        assert_eq!(tags[OWNER_TAG], "tests/shop");
        assert_eq!(tags[ORIGIN_TAG], "Created");
    }
    let after = p
        .plan(&tables, |_| None, Intent::Present)
        .await
        .expect("plan");
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

    let plans = p
        .plan(&tables, |_| None, Intent::Present)
        .await
        .expect("plan");
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
    let plans = p
        .plan(&provisioned, |_| None, Intent::Present)
        .await
        .expect("plan");
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

    let plans = p
        .plan(&tables, |_| None, Intent::Present)
        .await
        .expect("plan");
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
    let removal = p
        .plan(&tables, |_| None, Intent::Absent)
        .await
        .expect("plan");
    assert!(removal[0].actions.is_empty(), "{removal:?}");
}

#[tokio::test]
async fn removal_deletes_the_platforms_tables() {
    let p = provisioner().await;
    let tables = desired(&format!("t{}", unique()), Billing::PayPerRequest);
    p.converge(&tables).await.expect("converge");
    let plans = p
        .plan(&tables, |_| None, Intent::Absent)
        .await
        .expect("plan");
    for (table, plan) in tables.iter().zip(&plans) {
        assert_eq!(plan.actions, [TableAction::Delete]);
        p.apply(table, &plan.actions[0]).await.expect("delete");
    }
    let raw = support::dynamodb().await;
    for table in &tables {
        assert_eq!(table_keys(&raw, &table.name).await, None, "{}", table.name);
    }
}

#[tokio::test]
async fn another_platforms_table_is_refused_never_retagged_and_never_deleted() {
    let p = provisioner().await;
    let prefix = format!("t{}", unique());
    let theirs = DesiredTable::all(&prefix, Billing::PayPerRequest, "other/shop", false);
    p.converge(&theirs)
        .await
        .expect("the other platform's tables");
    let mine = DesiredTable {
        adopt: true,
        ..desired(&prefix, Billing::PayPerRequest).remove(0)
    };

    let plans = p
        .plan(std::slice::from_ref(&mine), |_| None, Intent::Present)
        .await
        .expect("plan");
    let refusal = plans[0].refusal.clone().expect("refused");
    assert_eq!(refusal.reason, "OwnerConflict");
    assert!(refusal.message.contains("other/shop"), "{refusal}");
    assert!(plans[0].actions.is_empty());
    let error = p
        .converge(std::slice::from_ref(&mine))
        .await
        .expect_err("refused even by converge, which adopts");
    assert_eq!(error.reason(), "OwnerConflict");
    let removal = p
        .plan(
            std::slice::from_ref(&mine),
            |_| Some(Origin::Created),
            Intent::Absent,
        )
        .await
        .expect("plan");
    assert!(removal[0].actions.is_empty(), "{removal:?}");
    let tags = p
        .observe(&mine.name)
        .await
        .expect("observe")
        .expect("still there")
        .tags
        .expect("moto tags");
    assert_eq!(tags[OWNER_TAG], "other/shop", "not re-tagged");
}

#[tokio::test]
async fn an_unowned_table_is_adopted_only_when_the_spec_says_so_and_then_reads_as_adopted() {
    let p = provisioner().await;
    let tables = desired(&format!("t{}", unique()), Billing::PayPerRequest);
    // A table with the service's keys that nobody tagged (made by hand, or by a tool).
    let raw = support::dynamodb().await;
    p.apply(
        &tables[0],
        &TableAction::Create {
            billing: Billing::PayPerRequest,
            tags: Default::default(),
        },
    )
    .await
    .expect("an untagged table");

    let plans = p
        .plan(&tables[..1], |_| None, Intent::Present)
        .await
        .expect("plan");
    assert_eq!(
        plans[0].refusal.as_ref().map(|r| r.reason),
        Some("AdoptionRequired")
    );
    assert!(plans[0].actions.is_empty());
    let removal = p
        .plan(&tables[..1], |_| None, Intent::Absent)
        .await
        .expect("plan");
    assert!(
        removal[0].actions.is_empty(),
        "never deleted unless adopted"
    );

    let adopting = vec![DesiredTable {
        adopt: true,
        ..tables[0].clone()
    }];
    let plans = p
        .plan(&adopting, |_| None, Intent::Present)
        .await
        .expect("plan");
    assert_eq!(plans[0].origin, Some(Origin::Adopted));
    for action in &plans[0].actions {
        p.apply(&adopting[0], action).await.expect("adopt");
    }
    let after = p
        .plan(&tables[..1], |_| None, Intent::Present)
        .await
        .expect("plan");
    assert_eq!(
        (after[0].refusal.clone(), after[0].origin),
        (None, Some(Origin::Adopted))
    );
    assert!(after[0].actions.is_empty(), "{after:?}");
    let removal = p
        .plan(&tables[..1], |_| None, Intent::Absent)
        .await
        .expect("plan");
    assert_eq!(removal[0].actions, [TableAction::Delete]);
    assert!(table_keys(&raw, &tables[0].name).await.is_some());
}
