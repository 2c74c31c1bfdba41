//! Logs, and traces of the reconciles: `tracing` with JSON output when stderr is not a terminal;
//! spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
//! OpenTelemetry variables configure the exporter; `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` the sampler, parent-based ratio by default, a bad value refused;
//! `OTEL_SERVICE_NAME` defaults to `order-operator`).

use std::io::IsTerminal;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use platform_resources::sampling::Sampling;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes exported spans when dropped (at the end of `main`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("flushing traces failed: {error}");
            }
        }
    }
}

/// Installs the global subscriber; logs go to stderr.
pub fn init(log_level: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(log_level)
        .with_context(|| format!("invalid log filter {log_level:?}"))?;
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => Some(otlp_provider(Sampling::from_env()?)?),
        _ => None,
    };
    // Spans are traced at info whatever the log level: quiet logs must not cut traces.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("order-operator"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let logs = if std::io::stderr().is_terminal() {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init()?;
    Ok(Telemetry { provider })
}

/// The SDK's sampler for `sampling`.
pub fn sampler(sampling: Sampling) -> Sampler {
    match sampling {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
        Sampling::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Sampling::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Sampling::ParentBasedRatio(ratio) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

fn otlp_provider(sampling: Sampling) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("configuring the OTLP exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "order-operator".into()),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_sampler(sampler(sampling))
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
