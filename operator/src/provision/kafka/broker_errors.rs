//! The last error librdkafka reported about the brokers. Its call results only say "transport
//! failure" or "timed out"; the reason (a wrong password, a certificate the CA does not sign, a
//! plaintext client on a TLS listener) arrives separately, as error events and `FAIL` log
//! lines on the client's queue.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::ProducerContext;

/// Why the brokers could not be used, as a stable condition reason and librdkafka's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerFailure {
    pub reason: &'static str,
    pub message: String,
}

const AUTHENTICATION: &str = "KafkaAuthenticationFailed";
const TLS: &str = "KafkaTlsFailed";
const UNREACHABLE: &str = "KafkaUnreachable";

/// Maps a librdkafka error code to the reason a person acts on.
pub fn classify(code: RDKafkaErrorCode) -> Option<&'static str> {
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some(AUTHENTICATION)
        }
        RDKafkaErrorCode::SSL => Some(TLS),
        RDKafkaErrorCode::BrokerTransportFailure
        | RDKafkaErrorCode::AllBrokersDown
        | RDKafkaErrorCode::Resolve => Some(UNREACHABLE),
        _ => None,
    }
}

/// The same for a `FAIL` log line, which has no code (librdkafka's wording since 1.x).
fn classify_line(line: &str) -> &'static str {
    if line.contains("SASL authentication") || line.contains("Authentication failed") {
        AUTHENTICATION
    } else if line.contains("SSL handshake failed") || line.contains("certificate verify failed") {
        TLS
    } else {
        UNREACHABLE
    }
}

/// How much a failure says: a cause beats a symptom ("all brokers are down" says least).
fn weight(failure: &BrokerFailure, summary: bool) -> u8 {
    match (failure.reason, summary) {
        (_, true) => 0,
        (UNREACHABLE, false) => 1,
        _ => 2,
    }
}

const PROTOCOL_HINT: &str = "; the broker closed the connection before answering: does security.protocol match the listener (a plaintext client on a TLS listener)?";

/// One failure episode lasts this long: within it a vaguer report does not hide a cause.
const EPISODE: Duration = Duration::from_secs(5);

/// The client context of the operator's metadata client: logs like the default one and keeps
/// the most telling recent broker failure for the error a call returns.
#[derive(Default)]
pub struct BrokerErrors {
    last: Mutex<Option<(Instant, u8, BrokerFailure)>>,
}

impl BrokerErrors {
    /// The last failure, if it is newer than `within` (older ones belong to earlier calls).
    pub fn recent(&self, within: Duration) -> Option<BrokerFailure> {
        let last = self.last.lock().ok()?;
        last.as_ref()
            .filter(|(at, _, _)| at.elapsed() <= within)
            .map(|(_, _, failure)| failure.clone())
    }

    fn record(&self, failure: BrokerFailure, summary: bool) {
        let weight = weight(&failure, summary);
        if let Ok(mut last) = self.last.lock() {
            let hidden = last
                .as_ref()
                .is_some_and(|(at, held, _)| at.elapsed() < EPISODE && *held > weight);
            if !hidden {
                *last = Some((Instant::now(), weight, failure));
            }
        }
    }
}

impl ClientContext for BrokerErrors {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, line: &str) {
        tracing::debug!(?level, fac, line, "librdkafka");
        if fac == "FAIL" {
            let reason = classify_line(line);
            let mut message = line.to_owned();
            // Closed before the first answer: the broker expected another protocol.
            if reason == UNREACHABLE && line.contains("in state APIVERSION_QUERY") {
                message.push_str(PROTOCOL_HINT);
            }
            let failure = BrokerFailure { reason, message };
            self.record(failure, false);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Debug: the cause reaches the condition or the CLI error; a retry loop would repeat it.
        tracing::debug!(%error, reason, "librdkafka");
        let code = error.rdkafka_error_code();
        if let Some(kind) = code.and_then(classify) {
            let failure = BrokerFailure {
                reason: kind,
                message: reason.to_owned(),
            };
            self.record(failure, code == Some(RDKafkaErrorCode::AllBrokersDown));
        }
    }
}

/// Only for the metadata client, which never sends: deliveries do not happen.
impl ProducerContext for BrokerErrors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(errors: &BrokerErrors, code: RDKafkaErrorCode, reason: &str) {
        errors.error(KafkaError::Global(code), reason);
    }

    #[test]
    fn a_cause_is_kept_over_the_vaguer_reports_that_follow() {
        let errors = BrokerErrors::default();
        assert_eq!(errors.recent(Duration::from_secs(60)), None);
        event(
            &errors,
            RDKafkaErrorCode::Authentication,
            "SASL authentication error: bad password",
        );
        errors.log(
            RDKafkaLogLevel::Error,
            "FAIL",
            "b/bootstrap: Disconnected (after 2ms)",
        );
        event(
            &errors,
            RDKafkaErrorCode::AllBrokersDown,
            "1/1 brokers are down",
        );
        let failure = errors.recent(Duration::from_secs(60)).unwrap();
        assert_eq!(failure.reason, AUTHENTICATION);
        assert!(failure.message.contains("bad password"));

        event(
            &errors,
            RDKafkaErrorCode::SSL,
            "SSL handshake failed: certificate verify failed",
        );
        assert_eq!(errors.recent(Duration::from_secs(60)).unwrap().reason, TLS);
        event(
            &errors,
            RDKafkaErrorCode::MessageTimedOut,
            "not about brokers",
        );
        assert_eq!(errors.recent(Duration::from_secs(60)).unwrap().reason, TLS);
        assert_eq!(errors.recent(Duration::ZERO), None, "too old for this call");
    }

    #[test]
    fn a_fail_line_names_the_cause_when_no_event_does() {
        let errors = BrokerErrors::default();
        event(
            &errors,
            RDKafkaErrorCode::AllBrokersDown,
            "1/1 brokers are down",
        );
        errors.log(RDKafkaLogLevel::Debug, "CONNECT", "not a failure");
        let line = "b/bootstrap: Disconnected: connection closed by peer (after 2ms in state APIVERSION_QUERY)";
        errors.log(RDKafkaLogLevel::Info, "FAIL", line);
        event(
            &errors,
            RDKafkaErrorCode::AllBrokersDown,
            "1/1 brokers are down",
        );
        let failure = errors.recent(Duration::from_secs(60)).unwrap();
        assert_eq!(failure.reason, UNREACHABLE);
        assert_eq!(failure.message, format!("{line}{PROTOCOL_HINT}"));
        let refused = "b: Connect to ipv4#127.0.0.1:1 failed: Connection refused";
        errors.log(RDKafkaLogLevel::Info, "FAIL", refused);
        assert_eq!(
            errors.recent(Duration::from_secs(60)).unwrap().message,
            refused,
            "no hint for a refused connection"
        );
        errors.log(
            RDKafkaLogLevel::Info,
            "STATE",
            "a state change, not a failure",
        );
        assert_eq!(
            errors.recent(Duration::from_secs(60)).unwrap().message,
            refused
        );
        assert_eq!(
            classify(RDKafkaErrorCode::BrokerTransportFailure),
            Some(UNREACHABLE)
        );
        assert_eq!(classify(RDKafkaErrorCode::Resolve), Some(UNREACHABLE));
        assert_eq!(classify_line("SSL handshake failed: x"), TLS);
        assert_eq!(
            classify_line("SASL authentication error: x"),
            AUTHENTICATION
        );
        assert_eq!(classify(RDKafkaErrorCode::UnknownTopicOrPartition), None);
    }
}
