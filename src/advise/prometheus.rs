//! `advise`, the thin HTTP part: instant queries against a Prometheus HTTP API.
//!
//! Queries go as `POST <url>/api/v1/query` with a form body (no URL length limit), over
//! hyper's client, which the Kubernetes client already brings. Every way a query can fail
//! (no connection, an HTTP or Prometheus error, an answer that is not Prometheus JSON) is
//! one [`PrometheusError`] whose message fits on one line.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::usage::{Sample, Series};

/// Why a query gave no data.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The URL is not one we can query.
    #[error("--prometheus {url:?} is not usable: {reason} (example: http://127.0.0.1:9090)")]
    BadUrl {
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No answer.
    #[error("Prometheus at {url} is unreachable: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The connection error, on one line.
        reason: String,
    },
    /// An answer that is an error.
    #[error("Prometheus at {url} answered {status} to {query}: {message}")]
    Answered {
        /// The base URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The query sent.
        query: String,
        /// Prometheus' `error`, or the start of the body.
        message: String,
    },
}

/// A Prometheus HTTP API at one base URL.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<AnswerData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerData {
    result_type: String,
    result: Vec<AnswerSeries>,
}

#[derive(Debug, Deserialize)]
struct AnswerSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(300).collect()
}

impl Prometheus {
    /// A client for `url` (`http://host:port`, optionally with a path prefix).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, PrometheusError> {
        let bad = |reason: &str| PrometheusError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// is supported (for TLS, use kubectl port-forward)")),
            None => return Err(bad("no http:// scheme")),
        }
        if uri.query().is_some() {
            return Err(bad("it has a query string"));
        }
        Ok(Prometheus {
            base: url.trim_end_matches('/').to_string(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Runs `query` as an instant query at `time` (Unix seconds); a range-vector query
    /// gives each series' raw samples, an instant one a single sample per series.
    pub async fn query(&self, query: &str, time: f64) -> Result<Vec<Series>, PrometheusError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .append_pair("time", &format!("{time:.3}"))
            .finish();
        let unreachable = |reason: String| PrometheusError::Unreachable {
            url: self.base.clone(),
            reason: one_line(&reason),
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/api/v1/query", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let mut reason = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    reason = format!("{reason}: {cause}");
                    source = cause.source();
                }
                unreachable(reason)
            })?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, PrometheusError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        let answered = |message: String| PrometheusError::Answered {
            url: self.base.clone(),
            status,
            query: query.to_string(),
            message: one_line(&message),
        };
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| {
            answered(format!(
                "not a Prometheus API answer: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        if answer.status != "success" || !(200..300).contains(&status) {
            return Err(answered(
                answer.error.unwrap_or_else(|| format!("status {}", answer.status)),
            ));
        }
        let data = answer.data.ok_or_else(|| answered("no data in the answer".into()))?;
        if data.result_type != "matrix" && data.result_type != "vector" {
            return Err(answered(format!("unexpected result type {}", data.result_type)));
        }
        let parse = |(time, value): (f64, String)| -> Option<Sample> {
            Some(Sample {
                time,
                value: value.parse().ok().filter(|v: &f64| v.is_finite())?,
            })
        };
        Ok(data
            .result
            .into_iter()
            .map(|series| Series {
                labels: series.metric,
                samples: series
                    .values
                    .into_iter()
                    .chain(series.value)
                    .filter_map(parse)
                    .collect(),
            })
            .collect())
    }
}
