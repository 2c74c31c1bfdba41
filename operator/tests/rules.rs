//! The chart's alerting rules (`charts/order-platform/files/prometheus-rules.yaml`, the
//! PrometheusRule's spec as shipped): `promtool test rules` fires each alert on series made for
//! it and not on those beside them (`tests/rules/prometheus-rules.test.yaml`), and every alert
//! carries a severity, a summary and a runbook that `docs/runbooks.md` has.
//!
//! promtool comes from `ORDER_PLATFORM_PROMTOOL` (`scripts/test.sh` builds it:
//! `scripts/promtool.sh path`); without it the test fails saying so, never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

const RUNBOOKS: &str = "https://github.com/example/order-platform/blob/main/docs/runbooks.md#";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn rules_file() -> PathBuf {
    repo().join("charts/order-platform/files/prometheus-rules.yaml")
}

fn promtool() -> PathBuf {
    match std::env::var_os("ORDER_PLATFORM_PROMTOOL") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "ORDER_PLATFORM_PROMTOOL is not set: run `make test`, or \
             `export ORDER_PLATFORM_PROMTOOL=$(scripts/promtool.sh path)` first"
        ),
    }
}

/// Every alerting rule of the file, as YAML mappings.
fn alerts() -> Vec<serde_yaml::Mapping> {
    let text = std::fs::read_to_string(rules_file()).expect("read the rules file");
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("the rules file is YAML");
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules").iter())
        .filter(|rule| rule.get("alert").is_some())
        .map(|rule| rule.as_mapping().expect("a rule is a mapping").clone())
        .collect()
}

fn field<'a>(rule: &'a serde_yaml::Mapping, path: &[&str]) -> Option<&'a str> {
    let mut value = rule.get(path[0])?;
    for key in &path[1..] {
        value = value.get(*key)?;
    }
    value.as_str()
}

#[test]
fn promtool_fires_each_alert_on_its_series_and_not_on_the_others() {
    let output = Command::new(promtool())
        .args(["test", "rules", "prometheus-rules.test.yaml"])
        .current_dir(repo().join("operator/tests/rules"))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{text}"
    );
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn the_rules_file_passes_promtools_checks() {
    let output = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(rules_file())
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_alert_is_tested_and_has_a_severity_a_summary_and_a_runbook() {
    let tests =
        std::fs::read_to_string(repo().join("operator/tests/rules/prometheus-rules.test.yaml"))
            .expect("read the rule tests");
    let runbooks =
        std::fs::read_to_string(repo().join("docs/runbooks.md")).expect("read the runbooks");
    let alerts = alerts();
    assert!(alerts.len() >= 14, "{} alerts", alerts.len());
    for rule in &alerts {
        let name = field(rule, &["alert"]).expect("alert name");
        let severity = field(rule, &["labels", "severity"]);
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity {severity:?}"
        );
        assert!(
            field(rule, &["annotations", "summary"]).is_some_and(|s| !s.is_empty()),
            "{name}: no summary"
        );
        let url = field(rule, &["annotations", "runbook_url"]).unwrap_or_default();
        let anchor = url.strip_prefix(RUNBOOKS).unwrap_or_else(|| {
            panic!("{name}: runbook_url {url:?} is not in docs/runbooks.md ({RUNBOOKS}…)")
        });
        assert_eq!(anchor, name.to_lowercase(), "{name}: anchor");
        assert!(
            runbooks.lines().any(|line| line == format!("## {name}")),
            "docs/runbooks.md has no section `## {name}`"
        );
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no promtool test"
        );
    }
}
