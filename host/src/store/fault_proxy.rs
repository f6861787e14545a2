//! Test support: an HTTP proxy on 127.0.0.1 between compactor and a real S3-compatible server
//! that injects faults by rule: throttling and server-error answers, dropped connections,
//! delays, and DeleteObjects answers that report keys as not deleted. Requests no rule picks
//! pass through untouched, headers included, so signatures still verify upstream.
//!
//! The binary under test is not changed in any way: it is pointed at the proxy's endpoint and
//! meets the faults on the wire, through the AWS SDK's real retry logic.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;
type Upstream = Client<HttpConnector, Body>;

/// What a rule does to a request it picks.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with an S3 error document, e.g. 503 `SlowDown` or 500 `InternalError`.
    Error { status: u16, code: &'static str },
    /// Close the connection without an answer.
    Reset,
    /// Wait, then pass the request through.
    Delay(Duration),
    /// Answer a DeleteObjects request with 200 and every key listed as not deleted
    /// (`InternalError`), deleting nothing: S3's partial failure.
    DeleteKeysFail,
}

impl Fault {
    pub fn slow_down() -> Fault {
        Fault::Error {
            status: 503,
            code: "SlowDown",
        }
    }

    /// What S3 answers a request the caller's policy does not allow.
    pub fn access_denied() -> Fault {
        Fault::Error {
            status: 403,
            code: "AccessDenied",
        }
    }
}

/// Picks requests by method, path and query (substrings), lets the first `skip` matches
/// through, then faults the next `times` of them (all of them when `times` is `None`).
#[derive(Debug, Clone)]
pub struct Rule {
    method: Option<&'static str>,
    path: Option<String>,
    query: Option<&'static str>,
    skip: usize,
    times: Option<usize>,
    fault: Fault,
    matched: usize,
}

impl Rule {
    pub fn new(fault: Fault) -> Rule {
        Rule {
            method: None,
            path: None,
            query: None,
            skip: 0,
            times: None,
            fault,
            matched: 0,
        }
    }
    pub fn method(mut self, method: &'static str) -> Rule {
        self.method = Some(method);
        self
    }
    /// Requests whose path contains `part` (bucket and key, URL-encoded as sent).
    pub fn path(mut self, part: impl Into<String>) -> Rule {
        self.path = Some(part.into());
        self
    }
    /// Requests whose query string contains `part`, e.g. `delete`, `uploadId`, `list-type`.
    pub fn query(mut self, part: &'static str) -> Rule {
        self.query = Some(part);
        self
    }
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }

    /// Whether this request gets the fault; counts matches as it goes.
    fn picks(&mut self, method: &str, path: &str, query: &str) -> bool {
        let matches = self.method.is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| path.contains(p))
            && self.query.is_none_or(|q| query.contains(q));
        if !matches {
            return false;
        }
        self.matched += 1;
        let n = self.matched - 1;
        n >= self.skip && self.times.is_none_or(|t| n < self.skip + t)
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Every fault injected, as `METHOD path?query: fault`.
    injected: Vec<String>,
    /// Every request seen, as `METHOD path?query`.
    seen: Vec<String>,
    /// Requests being answered now, and the most there ever were at once, by method.
    in_flight: HashMap<String, usize>,
    peak_in_flight: HashMap<String, usize>,
}

/// Counts a request as in flight until the answer's headers are out (or it failed).
struct InFlight {
    state: Arc<Mutex<State>>,
    method: String,
}

impl InFlight {
    fn enter(state: &Arc<Mutex<State>>, method: &str) -> InFlight {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.in_flight.entry(method.to_string()).or_default();
        *now += 1;
        let now = *now;
        let peak = s.peak_in_flight.entry(method.to_string()).or_default();
        *peak = (*peak).max(now);
        InFlight {
            state: state.clone(),
            method: method.to_string(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.in_flight.get_mut(&self.method) {
            *n = n.saturating_sub(1);
        }
    }
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Result<FaultProxy, String> {
        let upstream = upstream
            .strip_prefix("http://")
            .ok_or("the upstream must be an http:// endpoint")?
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(serve(listener, upstream, shared, rx));
        });
        Ok(FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn add(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule: from now on everything passes through.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Every request seen so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().seen.clone()
    }

    /// The most requests of `method` (`GET`, `PUT`, ...) that were ever in flight at once.
    pub fn peak_in_flight(&self, method: &str) -> usize {
        self.lock().peak_in_flight.get(method).copied().unwrap_or(0)
    }

    /// The faults injected so far, one line each.
    pub fn injected(&self) -> Vec<String> {
        self.lock().injected.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    upstream: String,
    state: Arc<Mutex<State>>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let (client, upstream, state) = (client.clone(), upstream.clone(), state.clone());
        let service = hyper::service::service_fn(move |req| {
            handle(req, client.clone(), upstream.clone(), state.clone())
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    req: Request<Incoming>,
    client: Upstream,
    upstream: String,
    state: Arc<Mutex<State>>,
) -> Result<Response<Body>, BoxError> {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let query = req.uri().query().unwrap_or_default().to_string();
    let _in_flight = InFlight::enter(&state, &method);
    let fault = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.seen.push(format!("{method} {path}?{query}"));
        let fault = state
            .rules
            .iter_mut()
            .find_map(|r| r.picks(&method, &path, &query).then(|| r.fault.clone()));
        if let Some(f) = &fault {
            state
                .injected
                .push(format!("{method} {path}?{query}: {f:?}"));
        }
        fault
    };
    match fault {
        Some(Fault::Error { status, code }) => Ok(answer(
            status,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
            ),
        )),
        Some(Fault::Reset) => Err("injected: connection dropped".into()),
        Some(Fault::DeleteKeysFail) => {
            let body = req.into_body().collect().await?.to_bytes();
            let errors: String = keys_in(&String::from_utf8_lossy(&body))
                .map(|k| {
                    format!(
                        "<Error><Key>{k}</Key><Code>InternalError</Code>\
                         <Message>injected by the test proxy</Message></Error>"
                    )
                })
                .collect();
            Ok(answer(
                200,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult \
                     xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{errors}</DeleteResult>"
                ),
            ))
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(req, &client, &upstream).await
        }
        None => forward(req, &client, &upstream).await,
    }
}

async fn forward(
    req: Request<Incoming>,
    client: &Upstream,
    upstream: &str,
) -> Result<Response<Body>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{upstream}{path}").parse()?;
    let answer = client
        .request(Request::from_parts(parts, body.boxed()))
        .await?;
    Ok(answer.map(BodyExt::boxed))
}

fn answer(status: u16, xml: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(xml))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// The `<Key>` values of a DeleteObjects request body.
fn keys_in(xml: &str) -> impl Iterator<Item = &str> {
    xml.split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_skip_then_fault_a_number_of_times() {
        let mut rule = Rule::new(Fault::Reset).method("GET").skip(1).times(2);
        let picks: Vec<bool> = (0..5).map(|_| rule.picks("GET", "/b/k", "")).collect();
        assert_eq!(picks, [false, true, true, false, false]);
        assert!(!rule.picks("PUT", "/b/k", ""));
        let mut by_query = Rule::new(Fault::Reset).query("delete");
        assert!(by_query.picks("POST", "/b", "delete"));
        assert!(!by_query.picks("POST", "/b", "uploads"));
    }

    #[test]
    fn delete_bodies_give_their_keys() {
        let xml = "<Delete><Quiet>true</Quiet><Object><Key>a/b.parquet</Key></Object>\
                   <Object><Key>c.parquet</Key></Object></Delete>";
        assert_eq!(
            keys_in(xml).collect::<Vec<_>>(),
            ["a/b.parquet", "c.parquet"]
        );
    }
}
