//! Reading what the services answer: metrics and problems.

use serde_json::Value;

/// One series' value in Prometheus text: `series` is the name with its labels as printed
/// (`name{a="x",b="y"}`, labels in the order the service prints them), or the bare name.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of the series of metric `name` in Prometheus text whose labels include each of
/// `labels` (`key="value"`, as printed); with none, of all its series.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (printed, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let has = |wanted: &&str| printed.split(',').any(|label| label == *wanted);
            labels.iter().all(has).then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The status and JSON body of an answer. Every error answer of every test is checked to be an
/// RFC 9457 problem (`application/problem+json` with `type`, `title` and the same `status`).
pub async fn read_answer(request: &str, response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        assert_problem(request, status, &content_type, &body);
    }
    (status, body)
}

/// Panics unless `body` is an RFC 9457 problem for `status`.
pub fn assert_problem(request: &str, status: u16, content_type: &str, body: &Value) {
    assert_eq!(content_type, "application/problem+json", "{request}: {status} {body}");
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{request}: {body}");
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{request}: {body}");
}
