//! A scripted HTTP/1.1 server on 127.0.0.1 for the download tests: one request
//! per connection, byte ranges (`Range: bytes=N-`, `If-Range`), and replies
//! that fail on purpose (error statuses, bodies cut short of Content-Length).

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// How the server answers one request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// The body (200), or from the requested offset (206) when `ranges`, sent
    /// only up to `cut` bytes of this response before the connection closes.
    Body { ranges: bool, cut: Option<usize> },
    /// This status with a short text body.
    Status(u16),
    /// No answer: the connection stays silent for this many milliseconds, then closes.
    Silence(u64),
    /// A broken server: 206 with the whole body labelled `bytes 0-...`, whatever was asked.
    WrongRange,
}

impl Reply {
    /// The whole body, honouring ranges.
    pub const FULL: Self = Self::Body { ranges: true, cut: None };
    /// The whole body, ignoring any `Range` header (always 200).
    pub const NO_RANGES: Self = Self::Body { ranges: false, cut: None };

    /// A range-aware reply that closes the connection after `n` body bytes.
    pub fn cut(n: usize) -> Self {
        Self::Body { ranges: true, cut: Some(n) }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request line's target (`/name.zip`).
    pub path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A running server; its thread lives until the test process exits.
pub struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// What the server serves.
struct Resource {
    body: Vec<u8>,
    etag: Option<String>,
    script: Vec<Reply>,
}

impl Server {
    /// Serves `body` at every path; request `i` gets `script[i]`, and the last
    /// reply repeats. `etag` is sent with bodies and checked against `If-Range`.
    pub fn start(body: Vec<u8>, etag: Option<&str>, script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let resource = Resource { body, etag: etag.map(str::to_owned), script };
        let seen = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let request = read_request(&stream);
                let index = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(request.clone());
                    seen.len() - 1
                };
                let reply = resource.script[index.min(resource.script.len() - 1)];
                let _ = answer(stream, &request, &resource, reply);
            }
        });
        Self { port, requests }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads the request line and headers (requests have no body).
fn read_request(stream: &TcpStream) -> Request {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap_or_default();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Request { path, headers }
}

/// Writes the reply for `request`, then closes the connection.
fn answer(mut stream: TcpStream, request: &Request, resource: &Resource, reply: Reply) -> std::io::Result<()> {
    let (ranges, cut) = match reply {
        Reply::Status(code) => return write_status(&mut stream, code, ""),
        Reply::WrongRange => {
            let len = resource.body.len();
            let head = format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{len}\r\n", len - 1);
            write!(stream, "{head}Content-Length: {len}\r\nConnection: close\r\n\r\n")?;
            stream.write_all(&resource.body)?;
            return stream.shutdown(Shutdown::Both);
        }
        Reply::Silence(ms) => {
            thread::sleep(std::time::Duration::from_millis(ms));
            return stream.shutdown(Shutdown::Both);
        }
        Reply::Body { ranges, cut } => (ranges, cut),
    };
    let len = resource.body.len();
    let same_version = match (request.header("If-Range"), &resource.etag) {
        (Some(asked), Some(etag)) => asked == etag,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let start = request.header("Range").and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
    let head = match start.filter(|_| ranges && same_version) {
        Some(start) if start >= len => {
            return write_status(&mut stream, 416, &format!("Content-Range: bytes */{len}\r\n"))
        }
        Some(start) => format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n", len - 1),
        None => "HTTP/1.1 200 OK\r\n".to_owned(),
    };
    let body = &resource.body[start.filter(|_| head.contains("206")).unwrap_or(0)..];
    let etag = resource.etag.as_ref().map_or_else(String::new, |e| format!("ETag: {e}\r\n"));
    let accept = if ranges { "bytes" } else { "none" };
    write!(
        stream,
        "{head}{etag}Accept-Ranges: {accept}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body[..cut.unwrap_or(body.len()).min(body.len())])?;
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

/// Writes a bodiless-in-spirit status reply with `extra` headers.
fn write_status(stream: &mut TcpStream, code: u16, extra: &str) -> std::io::Result<()> {
    let text = format!("status {code}\n");
    write!(
        stream,
        "HTTP/1.1 {code} Status\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}
