//! DynamoDB tables: desired vs observed → actions and refusals. Pure: no client.

use std::collections::BTreeMap;
use std::fmt;

use platform_resources::{TableDefinition, TABLES};
use serde::Serialize;

use crate::provision::{Intent, Origin, Refusal};

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

/// Tag on every table a platform holds: the OrderPlatform (`namespace/name`) it belongs to.
pub const OWNER_TAG: &str = "orders.dev/owner";
/// Tag beside the owner: `Created` or `Adopted` ([`Origin`]).
pub const ORIGIN_TAG: &str = "orders.dev/origin";

/// A table the platform needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredTable {
    pub name: String,
    pub definition: TableDefinition,
    pub billing: Billing,
    /// The platform (`namespace/name`) that holds it: the value of [`OWNER_TAG`].
    pub owner: String,
    /// The spec allows adopting a compatible table that no platform owns
    /// (`dynamodb.adoptExisting`).
    pub adopt: bool,
}

impl DesiredTable {
    /// Every table of the platform (the shared definitions), named from `prefix`.
    pub fn all(prefix: &str, billing: Billing, owner: &str, adopt: bool) -> Vec<Self> {
        TABLES
            .iter()
            .map(|definition| Self {
                name: definition.table_name(prefix),
                definition: *definition,
                billing,
                owner: owner.to_owned(),
                adopt,
            })
            .collect()
    }

    /// The tags a table gets when this platform creates or adopts it.
    pub fn tags(&self, origin: Origin) -> BTreeMap<String, String> {
        BTreeMap::from([
            (OWNER_TAG.to_owned(), self.owner.clone()),
            (ORIGIN_TAG.to_owned(), origin.as_str().to_owned()),
        ])
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
    /// Created with its owner tags in the same call, so no other platform can claim it between
    /// the creation and the tagging.
    Create {
        billing: Billing,
        tags: BTreeMap<String, String>,
    },
    WaitActive {
        status: String,
    },
    SetBilling {
        from: Billing,
        to: Billing,
    },
    EnableTtl {
        attribute: String,
    },
    Tag {
        tags: BTreeMap<String, String>,
    },
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
            Self::Create { billing, .. } => write!(f, "create ({billing})"),
            Self::WaitActive { status } => write!(f, "wait until ACTIVE (now {status})"),
            Self::SetBilling { from, to } => write!(f, "billing mode {from} → {to}"),
            Self::EnableTtl { attribute } => write!(f, "enable TTL on `{attribute}`"),
            Self::Tag { tags } => {
                let adopting = tags.get(ORIGIN_TAG).map(String::as_str) == Some("Adopted");
                let tags: Vec<_> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let verb = if adopting { "adopt: tag" } else { "tag" };
                write!(f, "{verb} {}", tags.join(", "))
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
    /// How the platform holds the table once the actions ran; `None` when it does not (refused,
    /// absent, or kept on removal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Things worth saying that are not failures (an endpoint without tagging).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Who holds an existing table, as far as the endpoint tells.
enum Holder<'a> {
    /// This platform, since it was created or adopted.
    Us(Origin),
    /// Another platform's owner tag.
    Other(&'a str),
    /// No owner tag (or an endpoint without tags, and no record in the platform's status).
    Nobody,
}

/// Whose the table is: its owner tag, or, on an endpoint without tags (DynamoDB Local), what
/// the platform's status recorded.
fn holder<'a>(
    desired: &DesiredTable,
    observed: &'a ObservedTable,
    recorded: Option<Origin>,
) -> Holder<'a> {
    match &observed.tags {
        Ok(tags) => match tags.get(OWNER_TAG) {
            Some(owner) if *owner == desired.owner => Holder::Us(
                tags.get(ORIGIN_TAG)
                    .and_then(|o| Origin::parse(o))
                    .unwrap_or(Origin::Created),
            ),
            Some(owner) => Holder::Other(owner),
            None => Holder::Nobody,
        },
        Err(_) => recorded.map_or(Holder::Nobody, Holder::Us),
    }
}

/// Plans one table. Nothing is done to a table that is not the platform's: another platform's
/// is refused (`OwnerConflict`), one nobody owns is adopted only when the spec says so
/// (`AdoptionRequired` otherwise). A key schema that differs is refused with no actions at all:
/// adopting the table would make the service write items it cannot read back, and fixing it
/// means recreating the table, which loses data.
///
/// `recorded` is the origin the platform's status holds for the table, which stands in for
/// the tags on endpoints without them.
pub fn plan_table(
    desired: &DesiredTable,
    observed: Option<&ObservedTable>,
    recorded: Option<Origin>,
    intent: Intent,
) -> TablePlan {
    let mut plan = TablePlan {
        name: desired.name.clone(),
        actions: Vec::new(),
        refusal: None,
        origin: None,
        notes: Vec::new(),
    };
    let name = desired.name.as_str();
    let ttl_attribute = desired.definition.ttl_attribute;
    let Some(observed) = observed else {
        if intent == Intent::Present {
            plan.actions = vec![
                TableAction::Create {
                    billing: desired.billing,
                    tags: desired.tags(Origin::Created),
                },
                TableAction::EnableTtl {
                    attribute: ttl_attribute.into(),
                },
            ];
            plan.origin = Some(Origin::Created);
        }
        return plan;
    };
    let mut want = desired.keys();
    let mut have = observed.keys.clone();
    want.sort();
    have.sort();
    let holder = holder(desired, observed, recorded);
    if intent == Intent::Absent {
        // Only a table this platform created or adopted, with the service's keys, is deleted.
        match holder {
            Holder::Us(_) if want == have => plan.actions.push(TableAction::Delete),
            Holder::Us(_) => plan.notes.push(format!(
                "table {name} is kept: its key schema is not the service's"
            )),
            Holder::Other(owner) => plan.notes.push(format!(
                "table {name} is kept: it belongs to OrderPlatform {owner}"
            )),
            Holder::Nobody => plan.notes.push(format!(
                "table {name} is kept: this platform neither created nor adopted it"
            )),
        }
        return plan;
    }
    let origin = match holder {
        Holder::Other(owner) => {
            plan.refusal = Some(Refusal::new(
                name,
                "OwnerConflict",
                format!(
                    "table {name} belongs to OrderPlatform {owner} (tag {OWNER_TAG}); nothing was changed. Give this platform another dynamodb.tablePrefix"
                ),
            ));
            return plan;
        }
        Holder::Us(origin) => origin,
        Holder::Nobody => Origin::Adopted,
    };
    if want != have {
        plan.refusal = Some(Refusal::new(
            name,
            "KeySchemaConflict",
            format!(
                "table {name} exists with key schema [{}], the service needs [{}]; it is left untouched (rename or remove the existing table)",
                join(&have),
                join(&want)
            ),
        ));
        return plan;
    }
    if let Ttl::On(attribute) = &observed.ttl {
        if attribute != ttl_attribute {
            plan.refusal = Some(Refusal::new(
                name,
                "TtlAttributeConflict",
                format!(
                    "table {name} expires items by `{attribute}`, the service writes `{ttl_attribute}`; disable its TTL to let the operator set it"
                ),
            ));
            return plan;
        }
    }
    if matches!(holder, Holder::Nobody) && !desired.adopt {
        plan.refusal = Some(Refusal::new(
            name,
            "AdoptionRequired",
            format!(
                "table {name} exists and belongs to no OrderPlatform; nothing was changed. Set dynamodb.adoptExisting: true to adopt it (it is then tagged as this platform's, and deleted with it under deletionPolicy: Delete), or give this platform another dynamodb.tablePrefix"
            ),
        ));
        return plan;
    }
    plan.origin = Some(origin);

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
    match (&observed.tags, holder) {
        (Ok(_), Holder::Nobody) => plan.actions.push(TableAction::Tag {
            tags: desired.tags(Origin::Adopted),
        }),
        (Ok(_), _) => {}
        (Err(why), _) => plan.notes.push(format!(
            "tags not managed: this endpoint does not support them ({why}); ownership is recorded in the platform's status only"
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
        DesiredTable::all("shop", Billing::PayPerRequest, "ns/shop", false).remove(0)
    }

    fn tagged(owner: &str, origin: &str) -> Result<BTreeMap<String, String>, String> {
        Ok(BTreeMap::from([
            (OWNER_TAG.into(), owner.into()),
            (ORIGIN_TAG.into(), origin.into()),
            ("team".into(), "a".into()),
        ]))
    }

    fn matching() -> ObservedTable {
        ObservedTable {
            keys: desired().keys(),
            status: "ACTIVE".into(),
            billing: Billing::PayPerRequest,
            ttl: Ttl::On("expires_at".into()),
            tags: tagged("ns/shop", "Created"),
        }
    }

    fn unowned() -> ObservedTable {
        ObservedTable {
            tags: Ok(BTreeMap::from([("team".into(), "a".into())])),
            ..matching()
        }
    }

    fn plan(observed: Option<&ObservedTable>) -> TablePlan {
        plan_table(&desired(), observed, None, Intent::Present)
    }

    #[test]
    fn table_plans() {
        let provisioned = Billing::Provisioned { read: 5, write: 5 };
        let cases: Vec<(&str, Option<ObservedTable>, Vec<TableAction>)> = vec![
            (
                "missing: create with the owner tags, then TTL",
                None,
                vec![
                    TableAction::Create {
                        billing: Billing::PayPerRequest,
                        tags: BTreeMap::from([
                            (OWNER_TAG.into(), "ns/shop".into()),
                            (ORIGIN_TAG.into(), "Created".into()),
                        ]),
                    },
                    TableAction::EnableTtl {
                        attribute: "expires_at".into(),
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
        ];
        for (name, observed, actions) in cases {
            let plan = plan(observed.as_ref());
            assert_eq!(plan.actions, actions, "{name}");
            assert_eq!(plan.refusal, None, "{name}");
            assert_eq!(plan.origin, Some(Origin::Created), "{name}");
        }
    }

    #[test]
    fn another_platforms_table_is_refused_naming_the_owner_and_never_retagged() {
        for intent in [Intent::Present, Intent::Absent] {
            let observed = ObservedTable {
                tags: tagged("other/shop", "Created"),
                ttl: Ttl::Off,
                ..matching()
            };
            let plan = plan_table(&desired(), Some(&observed), None, intent);
            assert!(plan.actions.is_empty(), "{intent:?}: {:?}", plan.actions);
            assert_eq!(plan.origin, None);
            if intent == Intent::Present {
                let refusal = plan.refusal.expect("refused");
                assert_eq!(refusal.reason, "OwnerConflict");
                assert!(refusal.message.contains("other/shop"), "{refusal}");
            } else {
                assert!(plan.notes[0].contains("other/shop"), "{:?}", plan.notes);
            }
        }
    }

    #[test]
    fn an_unowned_table_needs_explicit_adoption() {
        let refused = plan(Some(&unowned()));
        assert!(refused.actions.is_empty());
        assert_eq!(refused.origin, None);
        let refusal = refused.refusal.expect("refused");
        assert_eq!(refusal.reason, "AdoptionRequired");
        assert!(refusal.message.contains("adoptExisting"), "{refusal}");

        let adopting = DesiredTable {
            adopt: true,
            ..desired()
        };
        let adopted = plan_table(&adopting, Some(&unowned()), None, Intent::Present);
        assert_eq!(adopted.refusal, None);
        assert_eq!(adopted.origin, Some(Origin::Adopted));
        assert_eq!(
            adopted.actions,
            vec![TableAction::Tag {
                tags: adopting.tags(Origin::Adopted)
            }]
        );
        assert!(adopted.actions[0].to_string().starts_with("adopt: tag"));
        // Once tagged, the table reads as adopted on every later plan.
        let after = ObservedTable {
            tags: tagged("ns/shop", "Adopted"),
            ..matching()
        };
        let later = plan_table(&desired(), Some(&after), None, Intent::Present);
        assert_eq!(
            (later.actions, later.origin),
            (vec![], Some(Origin::Adopted))
        );
    }

    #[test]
    fn adoption_never_overrides_a_key_schema_conflict() {
        let adopting = DesiredTable {
            adopt: true,
            ..desired()
        };
        let foreign = ObservedTable {
            keys: vec![KeyElement::new("id", "HASH", "S")],
            ..unowned()
        };
        let plan = plan_table(&adopting, Some(&foreign), None, Intent::Present);
        assert_eq!(plan.refusal.expect("refused").reason, "KeySchemaConflict");
        assert!(plan.actions.is_empty());
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
    fn without_tags_the_status_record_decides_ownership() {
        let untaggable = ObservedTable {
            tags: Err("UnknownOperationException".into()),
            ..matching()
        };
        let recorded = plan_table(
            &desired(),
            Some(&untaggable),
            Some(Origin::Created),
            Intent::Present,
        );
        assert!(recorded.actions.is_empty());
        assert_eq!(recorded.origin, Some(Origin::Created));
        assert!(
            recorded.notes[0].contains("does not support"),
            "{:?}",
            recorded.notes
        );
        let unrecorded = plan(Some(&untaggable));
        assert_eq!(
            unrecorded.refusal.expect("refused").reason,
            "AdoptionRequired"
        );
        let absent =
            |recorded| plan_table(&desired(), Some(&untaggable), recorded, Intent::Absent).actions;
        assert_eq!(absent(Some(Origin::Adopted)), vec![TableAction::Delete]);
        assert_eq!(absent(None), vec![]);
    }

    #[test]
    fn removal_deletes_only_what_this_platform_created_or_adopted() {
        let absent = |observed: Option<&ObservedTable>| {
            plan_table(&desired(), observed, None, Intent::Absent).actions
        };
        assert_eq!(absent(Some(&matching())), vec![TableAction::Delete]);
        let adopted = ObservedTable {
            tags: tagged("ns/shop", "Adopted"),
            ..matching()
        };
        assert_eq!(absent(Some(&adopted)), vec![TableAction::Delete]);
        assert_eq!(absent(None), vec![]);
        let foreign_keys = ObservedTable {
            keys: vec![KeyElement::new("id", "HASH", "S")],
            ..matching()
        };
        assert_eq!(absent(Some(&foreign_keys)), vec![]);
        assert_eq!(absent(Some(&unowned())), vec![]);
        let others = ObservedTable {
            tags: tagged("ns/other", "Created"),
            ..matching()
        };
        assert_eq!(absent(Some(&others)), vec![]);
    }
}
