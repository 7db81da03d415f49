//! Looking at the node from outside: a minimal HTTP/1.1 GET (for `/metrics`
//! and `/api/conferences`) and CPU time from `/proc`. No HTTP crate: one GET
//! with `Connection: close` is a few lines, and the loadtest stays lean.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// `GET base + path` → (status, body). `base` is `http://host:port`.
pub async fn http_get(base: &str, path: &str) -> Result<(u16, String)> {
    http_request(base, "GET", path, None).await
}

/// `POST base + path` with a JSON body → (status, body): the node's API
/// commands (e.g. a conference's layout).
pub async fn http_post_json(base: &str, path: &str, json: &str) -> Result<(u16, String)> {
    http_request(base, "POST", path, Some(json)).await
}

async fn http_request(
    base: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String)> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| Error::Config(format!("{base}: only http:// URLs are supported")))?
        .trim_end_matches('/');
    let body = match json {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => "\r\n".to_owned(),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: tandem-loadtest\r\nAccept: */*\r\n{body}"
    );
    let fetch = async {
        let mut stream = TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| Error::Timeout {
            what: "HTTP request",
            after: Duration::from_secs(10),
        })??;
    parse_http_response(&raw)
}

/// Splits a whole HTTP/1.1 response into status and body (de-chunked).
pub fn parse_http_response(raw: &[u8]) -> Result<(u16, String)> {
    let bad = |d: &str| Error::parse("HTTP response", d.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let mut body = &raw[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
            if name.eq_ignore_ascii_case("content-length")
                && let Ok(n) = value.parse::<usize>()
            {
                body = &body[..n.min(body.len())];
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let bad = || Error::parse("HTTP chunked body", "bad chunk");
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_line = std::str::from_utf8(&data[..eol]).map_err(|_| bad())?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad())?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or_else(bad)?);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// The value of a metric in Prometheus text format: the sum over all its
/// series (`name` alone or `name{...}`). `None` when absent.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None // a longer name with this prefix
        };
        if let Some(v) = value
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Linux reports process times in USER_HZ, which the kernel ABI fixes at 100.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of a process, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> Result<f64> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// Our own CPU seconds.
pub fn own_cpu_seconds() -> Result<f64> {
    parse_proc_stat(&std::fs::read_to_string("/proc/self/stat")?)
}

fn parse_proc_stat(stat: &str) -> Result<f64> {
    // The command name may hold spaces and parentheses: fields restart after
    // the last ')'. utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| Error::parse("/proc stat", "no ')'"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / USER_HZ)
            .ok_or_else(|| Error::parse("/proc stat", format!("field {}", i + 3)))
    };
    Ok(tick(11)? + tick(12)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_reads_plain_and_labelled_series() {
        let text = "# HELP process_cpu_seconds_total CPU\n# TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.5\n\
                    process_cpu_seconds_total_extra 99\n\
                    tandem_rtp_packets_total{dir=\"in\"} 10\n\
                    tandem_rtp_packets_total{dir=\"out\"} 5\n";
        assert_eq!(metric_value(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(metric_value(text, "tandem_rtp_packets_total"), Some(15.0));
        assert_eq!(metric_value(text, "absent"), None);
    }

    #[test]
    fn http_response_plain_and_chunked() {
        let (s, b) = parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]junk")
            .expect("parse");
        assert_eq!((s, b.as_str()), (200, "[]"));
        let (s, b) = parse_http_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5;x=y\r\nfound\r\n0\r\n\r\n",
        )
        .expect("parse");
        assert_eq!((s, b.as_str()), (404, "not found"));
        assert!(parse_http_response(b"garbage").is_err());
    }

    #[test]
    fn proc_stat_with_awkward_command_name() {
        let stat =
            "1234 (tandem (up) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert!((parse_proc_stat(stat).expect("parse") - 3.0).abs() < 1e-9);
        assert!(own_cpu_seconds().is_ok());
    }
}
