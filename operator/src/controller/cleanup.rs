//! Deletion of a platform: what happens to its tables and topics, bounded in time.

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::context::Context;
use super::error::Error;
use super::execute::publish;
use super::external;
use crate::crd::{DeletionPolicy, OrderPlatform};
use crate::provision::Intent;

/// Annotation that releases a platform whose `deletionPolicy: Delete` cleanup keeps failing,
/// leaving its tables and topics behind.
pub const ABANDON_ANNOTATION: &str = "platform.orders.dev/abandon-external";

/// Deletion: children go with their owner (garbage collection); external data follows the
/// deletion policy. With `Delete`, a failed call keeps the finalizer and is retried with
/// backoff, with a Warning; after `cleanup_timeout` since the deletion (or at once with
/// [`ABANDON_ANNOTATION`]) the platform is released anyway, and a Warning names what was left
/// behind: a namespace being deleted (which takes the credentials Secret with it) never hangs.
pub(crate) async fn cleanup(platform: &OrderPlatform, ctx: &Context) -> Result<Action, Error> {
    let note = match platform.spec.deletion_policy {
        DeletionPolicy::Retain => {
            "deletionPolicy Retain: DynamoDB tables and Kafka topics are kept".to_owned()
        }
        DeletionPolicy::Delete => {
            let (tables, topics) = external::provision(platform, ctx, Intent::Absent).await;
            let outcomes: Vec<_> = tables.into_iter().chain(topics).collect();
            let deleted: Vec<_> = outcomes.iter().flat_map(|o| o.applied.clone()).collect();
            let kept: Vec<_> = outcomes.iter().flat_map(|o| o.notes.clone()).collect();
            if let Some((reason, message)) = outcomes.iter().find_map(|o| o.error.clone()) {
                let failed: Vec<&str> = outcomes
                    .iter()
                    .filter(|o| o.error.is_some())
                    .map(|o| o.name.as_str())
                    .collect();
                match release(platform, ctx) {
                    None => {
                        if ctx.first_warning(platform, "Cleanup", reason) {
                            let note = format!(
                                "deleting {} failed ({reason}: {message}); retrying with backoff. After {} since the deletion, or at once with the annotation {ABANDON_ANNOTATION}=true, the platform is released and they are left behind",
                                failed.join(", "),
                                humantime::format_duration(ctx.cleanup_timeout),
                            );
                            publish(ctx, platform, EventType::Warning, "CleanupFailed", note).await;
                        }
                        return Err(Error::Cleanup { reason, message });
                    }
                    Some(why) => {
                        let note = format!(
                            "released {why}: left behind {} ({reason}: {message}); delete them by hand",
                            failed.join(", ")
                        );
                        publish(ctx, platform, EventType::Warning, "CleanupAbandoned", note).await;
                        ctx.forget(platform);
                        return Ok(Action::await_change());
                    }
                }
            }
            let mut note = if deleted.is_empty() {
                "deletionPolicy Delete: no tables or topics were deleted".to_owned()
            } else {
                format!("deletionPolicy Delete: {}", deleted.join("; "))
            };
            if !kept.is_empty() {
                note.push_str("; ");
                note.push_str(&kept.join("; "));
            }
            note
        }
    };
    publish(ctx, platform, EventType::Normal, "Deleted", note).await;
    ctx.forget(platform);
    Ok(Action::await_change())
}

/// Why a failing cleanup may stop retrying, if it may: the annotation, or the time bound.
fn release(platform: &OrderPlatform, ctx: &Context) -> Option<String> {
    if platform
        .annotations()
        .get(ABANDON_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        return Some(format!("by the annotation {ABANDON_ANNOTATION}"));
    }
    let since = platform.metadata.deletion_timestamp.as_ref()?.0;
    let deleting_for = k8s_openapi::jiff::Timestamp::now().duration_since(since);
    let bound = k8s_openapi::jiff::SignedDuration::try_from(ctx.cleanup_timeout).ok()?;
    (deleting_for >= bound).then(|| {
        format!(
            "after {} of failed cleanup",
            humantime::format_duration(ctx.cleanup_timeout)
        )
    })
}
