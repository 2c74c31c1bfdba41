//! Trace sampling from the standard OpenTelemetry variables `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`, for the service and the operator alike. Plain data: each binary
//! turns it into its SDK's sampler. (The SDK reads these variables too, but takes a value it
//! does not know, or a ratio that does not parse, for "sample everything"; here either is an
//! error at startup.)

use std::fmt;

/// A sampler, as the OpenTelemetry specification names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// `always_on`
    AlwaysOn,
    /// `always_off`
    AlwaysOff,
    /// `traceidratio`: this share of traces, whatever the caller decided.
    Ratio(f64),
    /// `parentbased_always_on`
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: the caller's decision when there is one, else this share.
    ParentBasedRatio(f64),
}

/// Without `OTEL_TRACES_SAMPLER`: follow the caller, and sample new traces at
/// `OTEL_TRACES_SAMPLER_ARG` (1.0 when unset, as the specification says).
pub const DEFAULT_RATIO: f64 = 1.0;

/// A value of the variables that names no sampler or no ratio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingError(String);

impl fmt::Display for SamplingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SamplingError {}

const SAMPLERS: &str = "always_on, always_off, traceidratio, parentbased_always_on, \
                        parentbased_always_off, parentbased_traceidratio";

impl Sampling {
    /// From the process environment.
    pub fn from_env() -> Result<Self, SamplingError> {
        let sampler = std::env::var("OTEL_TRACES_SAMPLER").ok();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        Self::parse(sampler.as_deref(), arg.as_deref())
    }

    /// From the two variables' values; unset or empty is the default (parent-based ratio).
    pub fn parse(sampler: Option<&str>, arg: Option<&str>) -> Result<Self, SamplingError> {
        let arg = arg.map(str::trim).filter(|a| !a.is_empty());
        let ratio = || match arg {
            None => Ok(DEFAULT_RATIO),
            Some(text) => match text.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(SamplingError(format!(
                    "OTEL_TRACES_SAMPLER_ARG={text:?} is not a sampling ratio: give a number \
                     from 0 (no trace) to 1 (every trace)"
                ))),
            },
        };
        match sampler.map(str::trim).unwrap_or("") {
            "" | "parentbased_traceidratio" => Ok(Self::ParentBasedRatio(ratio()?)),
            "traceidratio" => Ok(Self::Ratio(ratio()?)),
            "always_on" => Ok(Self::AlwaysOn),
            "always_off" => Ok(Self::AlwaysOff),
            "parentbased_always_on" => Ok(Self::ParentBasedAlwaysOn),
            "parentbased_always_off" => Ok(Self::ParentBasedAlwaysOff),
            other => Err(SamplingError(format!(
                "OTEL_TRACES_SAMPLER={other:?} is not a sampler this binary supports: use one \
                 of {SAMPLERS}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_the_callers_decision_is_followed_and_new_traces_are_all_sampled() {
        assert_eq!(
            Sampling::parse(None, None),
            Ok(Sampling::ParentBasedRatio(1.0))
        );
        assert_eq!(
            Sampling::parse(Some(""), Some("0.25")),
            Ok(Sampling::ParentBasedRatio(0.25))
        );
    }

    #[test]
    fn every_sampler_of_the_specification_parses() {
        let cases = [
            ("always_on", None, Sampling::AlwaysOn),
            ("always_off", None, Sampling::AlwaysOff),
            ("traceidratio", Some("0.1"), Sampling::Ratio(0.1)),
            ("traceidratio", None, Sampling::Ratio(1.0)),
            ("parentbased_always_on", None, Sampling::ParentBasedAlwaysOn),
            (
                "parentbased_always_off",
                None,
                Sampling::ParentBasedAlwaysOff,
            ),
            (
                "parentbased_traceidratio",
                Some(" 0 "),
                Sampling::ParentBasedRatio(0.0),
            ),
            // The argument means nothing to the samplers without a ratio.
            ("always_on", Some("0.5"), Sampling::AlwaysOn),
        ];
        for (sampler, arg, expected) in cases {
            assert_eq!(
                Sampling::parse(Some(sampler), arg),
                Ok(expected),
                "{sampler} {arg:?}"
            );
        }
    }

    #[test]
    fn an_unknown_sampler_or_a_bad_ratio_is_an_error_that_says_what_is_allowed() {
        let error = Sampling::parse(Some("sometimes"), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"sometimes\"") && error.contains("parentbased_traceidratio"),
            "{error}"
        );
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let error = Sampling::parse(Some("traceidratio"), Some(bad))
                .unwrap_err()
                .to_string();
            assert!(error.contains("from 0") && error.contains(bad), "{error}");
            assert!(Sampling::parse(None, Some(bad)).is_err(), "{bad}");
        }
    }
}
