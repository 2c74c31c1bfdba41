//! Every metric that a panel of the chart's Grafana dashboards or one of its alerting rules
//! queries is one the binaries export, so a rename cannot silently blank a panel or mute an
//! alert. Names are read out of the PromQL with a real parser (promql-parser) and compared with
//! the `# TYPE` lines that a running service's `/metrics` and the operator's `/metrics` endpoint
//! (its own router over its registry) print: a family counts as exported once its `# TYPE` line
//! is there, even before it has a sample, and each type's sample names are derived as the
//! exposition format defines them (`_total` for counters, `_bucket`/`_sum`/`_count` for
//! histograms). Names of recording rules (`level:metric:operation`) must be recorded by the
//! rules file itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use promql_parser::parser::{self, Expr};

use crate::helpers::{spawn_app_with, Options};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The sample names a `/metrics` text exports, from its `# TYPE` lines.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            panic!("a malformed TYPE line: {line}");
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            "info" => &["_info"],
            "stateset" | "gauge" | "unknown" => &[""],
            other => panic!("an unknown metric type {other} in: {line}"),
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// Every metric name `expr` selects.
fn selected(expr: &Expr, names: &mut BTreeSet<String>) {
    match expr {
        Expr::VectorSelector(vs) => {
            let name = vs.name.clone().unwrap_or_else(|| {
                panic!("a selector without a metric name: {vs}");
            });
            names.insert(name);
        }
        Expr::MatrixSelector(ms) => selected(&Expr::VectorSelector(ms.vs.clone()), names),
        Expr::Aggregate(a) => {
            selected(&a.expr, names);
            if let Some(param) = &a.param {
                selected(param, names);
            }
        }
        Expr::Unary(u) => selected(&u.expr, names),
        Expr::Binary(b) => {
            selected(&b.lhs, names);
            selected(&b.rhs, names);
        }
        Expr::Paren(p) => selected(&p.expr, names),
        Expr::Subquery(s) => selected(&s.expr, names),
        Expr::Call(call) => {
            for arg in &call.args.args {
                selected(arg, names);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// The metric names of one PromQL expression; Grafana's variables are given values first.
fn names_in(query: &str, origin: &str) -> BTreeSet<String> {
    let promql = query
        .replace("$__rate_interval", "5m")
        .replace("$__range", "6h")
        .replace("$__interval", "1m");
    let expr = parser::parse(&promql)
        .unwrap_or_else(|e| panic!("{origin}: PromQL that does not parse ({e}):\n{promql}"));
    let mut names = BTreeSet::new();
    selected(&expr, &mut names);
    assert!(!names.is_empty(), "{origin}: selects no metric:\n{promql}");
    names
}

/// Each panel's queries, by "dashboard / panel".
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = repo().join("charts/order-platform/files/dashboards");
    let mut queries = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the dashboards folder")
        .map(|e| e.expect("a dashboard file").path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let title = dashboard["title"].as_str().expect("a dashboard title");
        for panel in dashboard["panels"].as_array().expect("panels") {
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if panel["type"] != "row" {
                assert!(
                    !targets.is_empty(),
                    "{title} / {}: no query",
                    panel["title"]
                );
            }
            for target in targets {
                let expr = target["expr"].as_str().expect("a Prometheus query");
                queries.push((format!("{title} / {}", panel["title"]), expr.to_owned()));
            }
        }
    }
    queries
}

/// The alerting rules' expressions by alert name, and the names the rules file records.
fn rules() -> (Vec<(String, String)>, BTreeSet<String>) {
    let text =
        std::fs::read_to_string(repo().join("charts/order-platform/files/prometheus-rules.yaml"))
            .expect("read the rules file");
    let file: serde_json::Value = serde_yaml::from_str(&text).expect("the rules file is YAML");
    let mut alerts = Vec::new();
    let mut recorded = BTreeSet::new();
    for group in file["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr").to_owned();
            if let Some(name) = rule["record"].as_str() {
                recorded.insert(name.to_owned());
                alerts.push((format!("recording rule {name}"), expr));
            } else {
                let name = rule["alert"].as_str().expect("alert or record");
                alerts.push((format!("alert {name}"), expr));
            }
        }
    }
    (alerts, recorded)
}

async fn operator_metrics() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let probes = order_operator::http::Probes {
        metrics: Arc::new(order_operator::metrics::Metrics::default()),
        ready: Arc::new(AtomicBool::new(true)),
    };
    let server =
        tokio::spawn(
            async move { axum::serve(listener, order_operator::http::router(probes)).await },
        );
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("the operator's /metrics")
        .text()
        .await
        .expect("text");
    server.abort();
    text
}

#[tokio::test]
async fn every_metric_a_dashboard_or_an_alert_queries_is_exported() {
    // Configured with a read replica (one that does not answer: its gauges are registered
    // all the same), so the replica's series are among those exported.
    let app = spawn_app_with(Options {
        extra_args: vec![
            "--database-read-url".into(),
            "postgres://postgres@127.0.0.1:1/orders".into(),
        ],
        ..Options::default()
    })
    .await;
    let service = app.get("/metrics").await.text().await.expect("text");
    let operator = operator_metrics().await;
    let mut exported = exported(&service);
    exported.extend(self::exported(&operator));
    // The sample the extraction must see, or it reads nothing.
    assert!(
        exported.contains("order_service_http_requests_total"),
        "{service}"
    );
    assert!(
        exported.contains("order_operator_reconcile_duration_seconds_bucket"),
        "{operator}"
    );

    let (rules, recorded) = rules();
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for (origin, query) in dashboard_queries().into_iter().chain(rules) {
        for name in names_in(&query, &origin) {
            checked += 1;
            let known = if name.contains(':') {
                recorded.contains(&name)
            } else {
                exported.contains(&name)
            };
            if !known {
                missing.entry(name).or_default().push(origin.clone());
            }
        }
    }
    assert!(checked > 50, "only {checked} names read");
    assert!(
        missing.is_empty(),
        "metrics queried but not exported (renamed? never registered?): {missing:#?}"
    );
}

#[test]
fn the_extraction_reads_names_through_functions_operators_and_ranges() {
    let names = names_in(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="1"}[5m]))) / on() group_left b_total unless (c > 1) + max_over_time(d[$__range:1m])"#,
        "test",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_bucket", "b_total", "c", "d"]
    );
    let text = "# TYPE a counter\n# TYPE b histogram\n# TYPE c gauge\nc 1\n";
    let names = exported(text);
    assert!(names.contains("a_total") && !names.contains("a"));
    assert!(names.contains("b_bucket") && names.contains("b_count") && !names.contains("b"));
    assert!(names.contains("c"));
}
