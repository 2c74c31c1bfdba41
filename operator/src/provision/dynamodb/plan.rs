//! DynamoDB tables: desired vs observed → actions and refusals. Pure: no client.

use std::collections::BTreeMap;
use std::fmt;

use platform_resources::{TableDefinition, TABLES};
use serde::Serialize;

use crate::provision::{Intent, Refusal};

/// How a table is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Billing {
    PayPerRequest,
    Provisioned { read: i64, write: i64 },
}

impl fmt::Display for Billing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PayPerRequest => f.write_str("PAY_PER_REQUEST"),
            Self::Provisioned { read, write } => {
                write!(f, "PROVISIONED ({read} RCU, {write} WCU)")
            }
        }
    }
}

/// A table the platform needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredTable {
    pub name: String,
    pub definition: TableDefinition,
    pub billing: Billing,
    pub tags: BTreeMap<String, String>,
}

impl DesiredTable {
    /// Every table of the platform (the shared definitions), named from `prefix`.
    pub fn all(prefix: &str, billing: Billing, tags: BTreeMap<String, String>) -> Vec<Self> {
        TABLES
            .iter()
            .map(|definition| Self {
                name: definition.table_name(prefix),
                definition: *definition,
                billing,
                tags: tags.clone(),
            })
            .collect()
    }

    /// The key schema as `(attribute, HASH|RANGE, S|N)`, the form observed tables are read in.
    pub fn keys(&self) -> Vec<KeyElement> {
        let d = &self.definition;
        vec![
            KeyElement::new(
                d.partition_key.name,
                "HASH",
                d.partition_key.attribute_type.code(),
            ),
            KeyElement::new(d.sort_key.name, "RANGE", d.sort_key.attribute_type.code()),
        ]
    }
}

/// One key attribute as DynamoDB describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KeyElement {
    pub attribute: String,
    pub key_type: String,
    pub attribute_type: String,
}

impl KeyElement {
    pub fn new(attribute: &str, key_type: &str, attribute_type: &str) -> Self {
        Self {
            attribute: attribute.into(),
            key_type: key_type.into(),
            attribute_type: attribute_type.into(),
        }
    }
}

impl fmt::Display for KeyElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.attribute, self.attribute_type, self.key_type
        )
    }
}

/// DynamoDB's TTL setting of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ttl {
    /// `ENABLED` or `ENABLING`, on this attribute.
    On(String),
    /// `DISABLED` or `DISABLING`.
    Off,
}

/// A table as it exists.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedTable {
    pub keys: Vec<KeyElement>,
    /// `ACTIVE`, `CREATING`, `UPDATING`, …
    pub status: String,
    pub billing: Billing,
    pub ttl: Ttl,
    /// `Err`: the endpoint does not support listing tags (DynamoDB Local).
    pub tags: Result<BTreeMap<String, String>, String>,
}

/// One step on one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum TableAction {
    Create { billing: Billing },
    WaitActive { status: String },
    SetBilling { from: Billing, to: Billing },
    EnableTtl { attribute: String },
    Tag { tags: BTreeMap<String, String> },
    Delete,
}

impl TableAction {
    /// `+` creates, `~` changes, `-` deletes: the CLI's plan output.
    pub fn symbol(&self) -> char {
        match self {
            Self::Create { .. } => '+',
            Self::Delete => '-',
            _ => '~',
        }
    }
}

impl fmt::Display for TableAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create { billing } => write!(f, "create ({billing})"),
            Self::WaitActive { status } => write!(f, "wait until ACTIVE (now {status})"),
            Self::SetBilling { from, to } => write!(f, "billing mode {from} → {to}"),
            Self::EnableTtl { attribute } => write!(f, "enable TTL on `{attribute}`"),
            Self::Tag { tags } => {
                let tags: Vec<_> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "tag {}", tags.join(", "))
            }
            Self::Delete => f.write_str("delete (deletionPolicy: Delete)"),
        }
    }
}

/// What to do to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TablePlan {
    pub name: String,
    pub actions: Vec<TableAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Things worth saying that are not failures (an endpoint without tagging).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Plans one table. A key schema that differs is refused with no actions at all: adopting the
/// table would make the service write items it cannot read back, and fixing it means
/// recreating the table, which loses data.
pub fn plan_table(
    desired: &DesiredTable,
    observed: Option<&ObservedTable>,
    intent: Intent,
) -> TablePlan {
    let mut plan = TablePlan {
        name: desired.name.clone(),
        actions: Vec::new(),
        refusal: None,
        notes: Vec::new(),
    };
    let ttl_attribute = desired.definition.ttl_attribute;
    let Some(observed) = observed else {
        if intent == Intent::Present {
            plan.actions = vec![
                TableAction::Create {
                    billing: desired.billing,
                },
                TableAction::EnableTtl {
                    attribute: ttl_attribute.into(),
                },
            ];
            if !desired.tags.is_empty() {
                plan.actions.push(TableAction::Tag {
                    tags: desired.tags.clone(),
                });
            }
        }
        return plan;
    };
    let mut want = desired.keys();
    let mut have = observed.keys.clone();
    want.sort();
    have.sort();
    if intent == Intent::Absent {
        // Only a table that is recognisably the platform's is deleted.
        let owned_by_other = observed.tags.as_ref().is_ok_and(|tags| {
            desired
                .tags
                .iter()
                .any(|(k, v)| tags.get(k).is_some_and(|have| have != v))
        });
        if want != have || owned_by_other {
            plan.notes.push(format!(
                "table {} is kept: its key schema or owner tag is not this platform's",
                desired.name
            ));
        } else {
            plan.actions.push(TableAction::Delete);
        }
        return plan;
    }
    if want != have {
        plan.refusal = Some(Refusal::new(
            &desired.name,
            "KeySchemaConflict",
            format!(
                "table {} exists with key schema [{}], the service needs [{}]; it is left untouched (rename or remove the existing table)",
                desired.name,
                join(&have),
                join(&want)
            ),
        ));
        return plan;
    }
    if let Ttl::On(attribute) = &observed.ttl {
        if attribute != ttl_attribute {
            plan.refusal = Some(Refusal::new(
                &desired.name,
                "TtlAttributeConflict",
                format!(
                    "table {} expires items by `{attribute}`, the service writes `{ttl_attribute}`; disable its TTL to let the operator set it",
                    desired.name
                ),
            ));
            return plan;
        }
    }

    if observed.status != "ACTIVE" {
        plan.actions.push(TableAction::WaitActive {
            status: observed.status.clone(),
        });
    }
    if observed.billing != desired.billing {
        plan.actions.push(TableAction::SetBilling {
            from: observed.billing,
            to: desired.billing,
        });
    }
    if observed.ttl == Ttl::Off {
        plan.actions.push(TableAction::EnableTtl {
            attribute: ttl_attribute.into(),
        });
    }
    match &observed.tags {
        Ok(tags) => {
            let missing: BTreeMap<_, _> = desired
                .tags
                .iter()
                .filter(|(k, v)| tags.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !missing.is_empty() {
                plan.actions.push(TableAction::Tag { tags: missing });
            }
        }
        Err(why) => plan.notes.push(format!(
            "tags not managed: this endpoint does not support them ({why})"
        )),
    }
    plan
}

fn join(keys: &[KeyElement]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredTable {
        DesiredTable::all(
            "shop",
            Billing::PayPerRequest,
            BTreeMap::from([("orders.dev/owner".into(), "ns/shop".into())]),
        )
        .remove(0)
    }

    fn matching() -> ObservedTable {
        ObservedTable {
            keys: desired().keys(),
            status: "ACTIVE".into(),
            billing: Billing::PayPerRequest,
            ttl: Ttl::On("expires_at".into()),
            tags: Ok(desired().tags),
        }
    }

    fn plan(observed: Option<&ObservedTable>) -> TablePlan {
        plan_table(&desired(), observed, Intent::Present)
    }

    #[test]
    fn table_plans() {
        let provisioned = Billing::Provisioned { read: 5, write: 5 };
        let cases: Vec<(&str, Option<ObservedTable>, Vec<TableAction>)> = vec![
            (
                "missing: create, then TTL and tags",
                None,
                vec![
                    TableAction::Create {
                        billing: Billing::PayPerRequest,
                    },
                    TableAction::EnableTtl {
                        attribute: "expires_at".into(),
                    },
                    TableAction::Tag {
                        tags: desired().tags,
                    },
                ],
            ),
            ("in shape: nothing", Some(matching()), vec![]),
            (
                "creating: wait",
                Some(ObservedTable {
                    status: "CREATING".into(),
                    ..matching()
                }),
                vec![TableAction::WaitActive {
                    status: "CREATING".into(),
                }],
            ),
            (
                "billing changed in the spec",
                Some(ObservedTable {
                    billing: provisioned,
                    ..matching()
                }),
                vec![TableAction::SetBilling {
                    from: provisioned,
                    to: Billing::PayPerRequest,
                }],
            ),
            (
                "TTL off (drift)",
                Some(ObservedTable {
                    ttl: Ttl::Off,
                    ..matching()
                }),
                vec![TableAction::EnableTtl {
                    attribute: "expires_at".into(),
                }],
            ),
            (
                "untagged: adopt and tag",
                Some(ObservedTable {
                    tags: Ok(BTreeMap::from([("team".into(), "a".into())])),
                    ..matching()
                }),
                vec![TableAction::Tag {
                    tags: desired().tags,
                }],
            ),
        ];
        for (name, observed, actions) in cases {
            let plan = plan(observed.as_ref());
            assert_eq!(plan.actions, actions, "{name}");
            assert_eq!(plan.refusal, None, "{name}");
        }
    }

    #[test]
    fn a_different_key_schema_is_refused_and_nothing_is_planned() {
        for keys in [
            // Same names, wrong sort key type.
            vec![
                KeyElement::new("order_id", "HASH", "S"),
                KeyElement::new("order_version", "RANGE", "S"),
            ],
            // No sort key.
            vec![KeyElement::new("order_id", "HASH", "S")],
            // Another partition key.
            vec![
                KeyElement::new("id", "HASH", "S"),
                KeyElement::new("order_version", "RANGE", "N"),
            ],
        ] {
            let observed = ObservedTable {
                keys,
                ttl: Ttl::Off,
                billing: Billing::Provisioned { read: 1, write: 1 },
                ..matching()
            };
            let plan = plan(Some(&observed));
            assert!(plan.actions.is_empty(), "{plan:?}");
            let refusal = plan.refusal.expect("refused");
            assert_eq!(refusal.reason, "KeySchemaConflict");
            assert!(
                refusal.message.contains("order_version N RANGE"),
                "{refusal}"
            );
        }
    }

    #[test]
    fn key_order_as_listed_does_not_matter() {
        let mut observed = matching();
        observed.keys.reverse();
        assert_eq!(plan(Some(&observed)), plan(Some(&matching())));
    }

    #[test]
    fn ttl_on_another_attribute_is_refused() {
        let observed = ObservedTable {
            ttl: Ttl::On("ttl".into()),
            ..matching()
        };
        let plan = plan(Some(&observed));
        assert_eq!(
            plan.refusal.expect("refused").reason,
            "TtlAttributeConflict"
        );
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn an_endpoint_without_tagging_is_a_note_not_a_change() {
        let observed = ObservedTable {
            tags: Err("UnknownOperationException".into()),
            ..matching()
        };
        let plan = plan(Some(&observed));
        assert!(plan.actions.is_empty());
        assert!(
            plan.notes[0].contains("does not support"),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn removal_deletes_what_exists_and_nothing_else() {
        let absent = |observed: Option<&ObservedTable>| {
            plan_table(&desired(), observed, Intent::Absent).actions
        };
        assert_eq!(absent(Some(&matching())), vec![TableAction::Delete]);
        assert_eq!(absent(None), vec![]);
        let foreign = ObservedTable {
            keys: vec![KeyElement::new("id", "HASH", "S")],
            ..matching()
        };
        assert_eq!(absent(Some(&foreign)), vec![]);
        let others = ObservedTable {
            tags: Ok(BTreeMap::from([(
                "orders.dev/owner".into(),
                "ns/other".into(),
            )])),
            ..matching()
        };
        assert_eq!(absent(Some(&others)), vec![]);
    }
}
