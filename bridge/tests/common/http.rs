//! HTTP/1.1 GET and POST over a std `TcpStream`, and Prometheus text parsing.
//! Enough for `/healthz`, `/metrics` and `/api/...` on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub body: String,
}

/// GET `path` from `addr` with `Connection: close`; handles Content-Length,
/// chunked and read-to-EOF bodies.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// POST a JSON `body` to `path` on `addr` (`Connection: close`), as an
/// operator's script would.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<Response> {
    request(addr, "POST", path, body)
}

/// Any method with a JSON `body` (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        let mut out = Vec::new();
        let mut p = rest;
        loop {
            let eol = p
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_txt = String::from_utf8_lossy(&p[..eol]);
            let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            p = &p[eol + 2..];
            if size == 0 {
                break;
            }
            if p.len() < size {
                return Err(bad("short chunk"));
            }
            out.extend_from_slice(&p[..size]);
            p = &p[size..];
            if p.starts_with(b"\r\n") {
                p = &p[2..];
            }
        }
        out
    } else if let Some(n) = length {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One sample line of Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses Prometheus text format (comments skipped, label values unescaped).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let name = line[..name_end].to_string();
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if rest.starts_with('{') {
            let mut chars = rest.char_indices().skip(1).peekable();
            let mut key = String::new();
            let mut val = String::new();
            let mut in_val = false;
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                if in_val {
                    match c {
                        '\\' => {
                            if let Some((_, e)) = chars.next() {
                                val.push(match e {
                                    'n' => '\n',
                                    other => other,
                                });
                            }
                        }
                        '"' => {
                            labels.push((key.trim().to_string(), std::mem::take(&mut val)));
                            key.clear();
                            in_val = false;
                        }
                        _ => val.push(c),
                    }
                } else {
                    match c {
                        '}' => {
                            end = i + 1;
                            break;
                        }
                        '=' => {
                            // expect the opening quote
                            if let Some((_, '"')) = chars.peek() {
                                chars.next();
                            }
                            in_val = true;
                        }
                        ',' => {}
                        _ => key.push(c),
                    }
                }
            }
            rest = &rest[end.min(rest.len())..];
        }
        let Some(v) = rest.split_whitespace().next() else {
            continue;
        };
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => match other.parse() {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// Sum of every series of `name` whose labels include all of `want`
/// (so `&[("protocol","sip")]` sums over every `kind`). None if no series
/// matches.
pub fn metric_sum(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for s in parse_prometheus(text) {
        if s.name != name {
            continue;
        }
        let all = want
            .iter()
            .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v));
        if all {
            *found.get_or_insert(0.0) += s.value;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_sums() {
        let t = "# HELP x y\n# TYPE tandem_malformed_total counter\n\
                 tandem_malformed_total{kind=\"garbage\",protocol=\"sip\"} 3\n\
                 tandem_malformed_total{kind=\"version\",protocol=\"rtp\"} 2\n\
                 tandem_malformed_total{kind=\"a,b=\\\"c\\\"\",protocol=\"sip\"} 4\n\
                 tandem_conferences 1\n";
        assert_eq!(
            metric_sum(t, "tandem_malformed_total", &[("protocol", "sip")]),
            Some(7.0)
        );
        assert_eq!(metric_sum(t, "tandem_malformed_total", &[]), Some(9.0));
        assert_eq!(metric_sum(t, "tandem_conferences", &[]), Some(1.0));
        assert_eq!(metric_sum(t, "tandem_participants", &[]), None);
    }

    #[test]
    fn parses_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw).expect("parse");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "abcde");
    }
}
