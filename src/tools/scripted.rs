//! The receiver's canned answers (`--script 503,429:2,sleep:40s`): failures served ahead of
//! normal service, to watch the forwarder's retries.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};

/// A canned answer, served in queue order before normal service resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// Answer this status without reading the payload.
    Status(u16),
    /// Answer this status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Wait this long, then serve normally (a receiver slower than the forwarder's timeout).
    Delay(Duration),
}

impl Scripted {
    /// The answer a status (with `Retry-After`) is served as; a delay is no answer, and a
    /// status the HTTP library cannot send becomes a 500.
    pub fn response(&self) -> Response {
        let (code, retry_after) = match self {
            Self::Status(code) => (*code, None),
            Self::RetryAfter(code, secs) => (*code, Some(*secs)),
            Self::Delay(_) => return StatusCode::OK.into_response(),
        };
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, format!("scripted {code}")).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl std::str::FromStr for Scripted {
    type Err = String;

    /// `503`, `429:2` (status with Retry-After seconds) or `sleep:5s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(d) = s.strip_prefix("sleep:") {
            return humantime::parse_duration(d)
                .map(Self::Delay)
                .map_err(|e| format!("{s:?}: {e}"));
        }
        let status = |t: &str| {
            t.parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    format!(
                        "{s:?}: expected an HTTP status (503), a status with Retry-After seconds \
                         (429:2) or a delay before serving (sleep:40s)"
                    )
                })
        };
        match s.split_once(':') {
            Some((code, secs)) => Ok(Self::RetryAfter(
                status(code)?,
                secs.parse()
                    .map_err(|_| format!("{s:?}: Retry-After must be whole seconds"))?,
            )),
            None => Ok(Self::Status(status(s)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_syntax() {
        assert_eq!("503".parse(), Ok(Scripted::Status(503)));
        assert_eq!("429:2".parse(), Ok(Scripted::RetryAfter(429, 2)));
        assert_eq!(
            "sleep:1500ms".parse(),
            Ok(Scripted::Delay(Duration::from_millis(1500)))
        );
        assert!("5033".parse::<Scripted>().is_err());
        assert!("429:x".parse::<Scripted>().is_err());
        assert!("sleep:forever".parse::<Scripted>().is_err());
    }
}
