//! A tiny in-process registry speaking just enough of the distribution API to test what the real
//! `docker-registry` cannot easily do: bearer-token auth (anonymous, basic-at-token-endpoint, OAuth2 refresh
//! tokens), throttled blobs (to interrupt a pull midway) and a request log (to prove a host was never contacted).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::Result;
use crate::image::{Image, Index};

/// How the fake registry authenticates.
#[derive(Clone, Debug, Default)]
pub struct FakeAuth {
    /// Demand `Authorization: Bearer <token>`; the token endpoint hands it out.
    pub bearer: bool,
    /// The token endpoint wants these basic credentials (otherwise it serves anyone: anonymous bearer).
    pub basic: Option<(String, String)>,
    /// A refresh token the token endpoint accepts via `POST grant_type=refresh_token`.
    pub refresh_token: Option<String>,
}

pub const FAKE_TOKEN: &str = "fake-registry-token";

#[derive(Default)]
struct State {
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    log: Vec<String>,
}

/// An in-process registry on a free loopback port; stops on drop.
pub struct FakeRegistry {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    throttle: Arc<Mutex<Option<Duration>>>,
}

impl FakeRegistry {
    pub fn start(auth: FakeAuth) -> Result<FakeRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let throttle = Arc::new(Mutex::new(None));
        let (st, sp, th) = (state.clone(), stop.clone(), throttle.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, th, auth) = (st.clone(), th.clone(), auth.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, port, &st, &th, &auth);
                });
            }
        });
        Ok(FakeRegistry {
            port,
            state,
            stop,
            throttle,
        })
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends blobs in 16 KiB pieces with this pause between them (None: full speed).
    pub fn throttle(&self, pause: Option<Duration>) {
        *self.throttle.lock().unwrap_or_else(|p| p.into_inner()) = pause;
    }

    /// Serves `image` as `repo:tag` (and by digest).
    pub fn add_image(&self, repo: &str, tag: &str, image: &Image) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (d, b) in image.blobs() {
            s.blobs.insert(d, b.to_vec());
        }
        let m = (
            image.manifest.media_type.clone(),
            image.manifest.bytes.clone(),
        );
        s.manifests
            .insert((repo.into(), image.digest().into()), m.clone());
        s.manifests.insert((repo.into(), tag.into()), m);
    }

    pub fn add_index(&self, repo: &str, tag: &str, index: &Index) {
        for img in &index.images {
            self.add_image(repo, img.digest(), img);
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let m = (
            index.manifest.media_type.clone(),
            index.manifest.bytes.clone(),
        );
        s.manifests
            .insert((repo.into(), index.digest().into()), m.clone());
        s.manifests.insert((repo.into(), tag.into()), m);
    }

    /// `METHOD /path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log
            .clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)
}

fn serve(
    mut conn: TcpStream,
    port: u16,
    state: &Mutex<State>,
    throttle: &Mutex<Option<Duration>>,
    auth: &FakeAuth,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = vec![
        0u8;
        headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    ];
    reader.read_exact(&mut body)?;
    state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .log
        .push(format!("{method} {target}"));
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));

    if path == "/token" {
        let basic_ok = match &auth.basic {
            None => true,
            Some((u, p)) => {
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                );
                headers.get("authorization") == Some(&want)
            }
        };
        let form = String::from_utf8_lossy(&body).to_string();
        let refresh_ok = method == "POST"
            && auth
                .refresh_token
                .as_ref()
                .is_some_and(|t| form.split('&').any(|kv| kv == format!("refresh_token={t}")));
        if method == "POST" && !refresh_ok {
            return respond(&mut conn, "401 Unauthorized", &[], b"{}");
        }
        if method == "GET" && !basic_ok {
            return respond(&mut conn, "401 Unauthorized", &[], b"{}");
        }
        let _ = query;
        let json = format!(r#"{{"token":"{FAKE_TOKEN}","access_token":"{FAKE_TOKEN}"}}"#);
        return respond(
            &mut conn,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            json.as_bytes(),
        );
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return respond(&mut conn, "404 Not Found", &[], b"");
    };
    let (repo, kind, reference) = match (rest.rfind("/manifests/"), rest.rfind("/blobs/")) {
        (Some(i), _) => (&rest[..i], "manifests", &rest[i + "/manifests/".len()..]),
        (None, Some(i)) => (&rest[..i], "blobs", &rest[i + "/blobs/".len()..]),
        _ => ("", "", ""),
    };
    if auth.bearer
        && headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {FAKE_TOKEN}"))
    {
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake-registry",scope="repository:{repo}:pull""#
        );
        return respond(
            &mut conn,
            "401 Unauthorized",
            &[("WWW-Authenticate", challenge)],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        );
    }
    if rest.is_empty() {
        return respond(&mut conn, "200 OK", &[], b"{}");
    }
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    match kind {
        "manifests" => match s.manifests.get(&(repo.to_string(), reference.to_string())) {
            Some((mt, bytes)) => {
                let (mt, bytes) = (mt.clone(), bytes.clone());
                drop(s);
                let digest = crate::image::sha256_digest(&bytes);
                let hdrs = [("Content-Type", mt), ("Docker-Content-Digest", digest)];
                respond(
                    &mut conn,
                    "200 OK",
                    &hdrs,
                    if method == "HEAD" { &[] } else { &bytes },
                )
            }
            None => respond(
                &mut conn,
                "404 Not Found",
                &[],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#,
            ),
        },
        "blobs" => match s.blobs.get(reference).cloned() {
            Some(bytes) => {
                drop(s);
                let pause = *throttle.lock().unwrap_or_else(|p| p.into_inner());
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                );
                conn.write_all(head.as_bytes())?;
                match pause {
                    None => conn.write_all(&bytes),
                    Some(p) => {
                        for chunk in bytes.chunks(16 << 10) {
                            conn.write_all(chunk)?;
                            conn.flush()?;
                            std::thread::sleep(p);
                        }
                        Ok(())
                    }
                }
            }
            None => respond(
                &mut conn,
                "404 Not Found",
                &[],
                br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#,
            ),
        },
        _ => respond(&mut conn, "404 Not Found", &[], b""),
    }
}
