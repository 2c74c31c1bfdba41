//! Logging and tracing: `tracing` with JSON output when not on a terminal; W3C trace context
//! (`traceparent`) from requests to the saga's participant calls and Kafka headers; spans
//! exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
//! OpenTelemetry variables configure the exporter; `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` the sampler, parent-based ratio by default, a bad value refused).

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use platform_resources::sampling::Sampling;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info,order_service=debug`).
    #[arg(long, env = "ORDER_SERVICE_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format: `json`, `text`, or `auto` (JSON unless stderr is a terminal).
    #[arg(long, env = "ORDER_SERVICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

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

/// Installs the global subscriber. Logs go to stderr; stdout is left to command output.
pub fn init(config: &LogConfig) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&config.log_level)
        .map_err(|e| anyhow::anyhow!("invalid log filter {:?}: {e}", config.log_level))?;
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => Some(otlp_provider(Sampling::from_env()?)?),
        _ => None,
    };
    // Spans are traced at info whatever the log level: quiet logs must not cut traces.
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("order-service"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
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
        .map_err(|e| anyhow::anyhow!("configuring the OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "order-service".into()),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_sampler(sampler(sampling))
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Makes `span` a child of the trace a `traceparent` names (no-op without tracing export).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` to send on from within `span`: the span's own context when traces are
/// recorded, else `fallback` (the incoming one, passed through unchanged).
pub fn traceparent_of(span: &tracing::Span, fallback: Option<&str>) -> Option<String> {
    let context = span.context();
    if context.span().span_context().is_valid() {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        if let Some(value) = carrier.remove("traceparent") {
            return Some(value);
        }
    }
    fallback.and_then(valid_traceparent)
}

/// The request's W3C `traceparent` header, when present and well-formed.
pub fn incoming_traceparent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("traceparent")?
        .to_str()
        .ok()
        .and_then(valid_traceparent)
}

/// A `traceparent` of the W3C form the propagator accepts (it checks the ids and flags but
/// parses hex leniently, so the field widths are checked here), normalised.
fn valid_traceparent(value: &str) -> Option<String> {
    let value = value.trim();
    let widths: Vec<usize> = value.split('-').map(str::len).collect();
    if widths != [2, 32, 16, 2] {
        return None;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The whole `source()` chain on one line, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_pass() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(valid_traceparent(good).as_deref(), Some(good));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(valid_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn without_a_recorded_span_the_incoming_context_passes_through() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracing::Span::none();
        assert_eq!(traceparent_of(&span, Some(good)).as_deref(), Some(good));
        assert_eq!(traceparent_of(&span, None), None);
    }

    #[test]
    fn the_sampler_follows_the_callers_decision_and_samples_new_traces_at_the_ratio() {
        use opentelemetry::trace::{
            SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState,
        };
        use opentelemetry::Context;
        use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let parent = |flags: TraceFlags| {
            Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                flags,
                true,
                TraceState::default(),
            ))
        };
        let decide = |sampling: Sampling, context: Option<&Context>| {
            sampler(sampling)
                .should_sample(context, trace_id, "span", &SpanKind::Server, &[], &[])
                .decision
        };
        let never = Sampling::ParentBasedRatio(0.0);
        assert_eq!(decide(never, None), SamplingDecision::Drop);
        assert_eq!(
            decide(never, Some(&parent(TraceFlags::SAMPLED))),
            SamplingDecision::RecordAndSample
        );
        let always = Sampling::ParentBasedRatio(1.0);
        assert_eq!(decide(always, None), SamplingDecision::RecordAndSample);
        assert_eq!(
            decide(always, Some(&parent(TraceFlags::default()))),
            SamplingDecision::Drop
        );
        // Not parent-based: the ratio decides whatever the caller said.
        assert_eq!(
            decide(Sampling::Ratio(0.0), Some(&parent(TraceFlags::SAMPLED))),
            SamplingDecision::Drop
        );
        assert_eq!(decide(Sampling::AlwaysOff, None), SamplingDecision::Drop);
    }
}
