//! The sessions' path proxy configuration run for real: nginx (the Debian `nginx-light`
//! package, see hack/lib.sh) with the generated configuration in front of a stand-in for
//! RStudio that echoes what it receives. Proves the prefix is stripped, `X-RStudio-Root-Path`
//! is set, query strings and encoded characters pass untouched, WebSocket upgrades are
//! forwarded, and `/<id>` redirects to `/<id>/` with a relative Location.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use workshop_operator::build::proxy::nginx_conf;

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "nginx is missing: install the Debian package nginx-light (hack/test.sh does, see \
             TEST_PACKAGES in hack/lib.sh)",
        )
}

/// nginx running `conf` (the operator's `http`-level configuration) in `dir`.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, conf: &str) -> Self {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("default.conf"), conf).unwrap();
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\nerror_log stderr warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  \
             proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  \
             uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
             include {d}/default.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nginx");
        Nginx {
            child,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stand-in for RStudio: answers every request with its request line and headers.
async fn echo_upstream(listener: TcpListener) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            let head = head
                .split("\r\n\r\n")
                .next()
                .unwrap_or_default()
                .to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                head.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        });
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request line the upstream received.
    fn upstream_request_line(&self) -> &str {
        self.body.lines().next().unwrap_or_default()
    }

    /// A header the upstream received.
    fn upstream_header(&self, name: &str) -> Option<&str> {
        self.body.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn get(port: u16, target: &str, extra_headers: &str) -> Response {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: ws.example.com\r\nConnection: close\r\n{extra_headers}\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut raw))
        .await
        .expect("nginx answered")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

#[tokio::test]
async fn the_path_proxy_strips_the_prefix_and_sets_the_root_path_header() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    tokio::spawn(echo_upstream(upstream));
    let port = envtest::process::free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("ws-path-proxy-{}", std::process::id()));
    let _nginx = Nginx::start(&dir, &nginx_conf(port, upstream_port));
    envtest::eventually("nginx to listen", Duration::from_secs(15), || async {
        TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;

    // The participant's root: RStudio sees `/` and learns its prefix.
    let r = get(port, "/user1/", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_request_line(), "GET / HTTP/1.1");
    assert_eq!(r.upstream_header("X-RStudio-Root-Path"), Some("/user1"));
    assert_eq!(r.upstream_header("Host"), Some("ws.example.com"));

    // Deeper paths, query strings and encoded characters pass unchanged.
    let r = get(port, "/ada-l/rpc/client_init?a=1&b=x%20y", "").await;
    assert_eq!(
        r.upstream_request_line(),
        "GET /rpc/client_init?a=1&b=x%20y HTTP/1.1"
    );
    assert_eq!(r.upstream_header("X-RStudio-Root-Path"), Some("/ada-l"));
    let r = get(port, "/user1/files/my%2Fdata.csv", "").await;
    assert_eq!(
        r.upstream_request_line(),
        "GET /files/my%2Fdata.csv HTTP/1.1"
    );

    // WebSocket upgrades (RStudio's terminal) are forwarded as upgrades.
    let r = get(
        port,
        "/user1/p/terminal",
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
    )
    .await;
    assert_eq!(r.upstream_header("Upgrade"), Some("websocket"));
    assert_eq!(r.upstream_header("Connection"), Some("upgrade"));

    // The bare prefix redirects to the participant's root, relative to whatever host and
    // scheme the user came through.
    let r = get(port, "/user1", "").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/user1/"));
    let r = get(port, "/user1?x=1", "").await;
    assert_eq!((r.status, r.header("Location")), (301, Some("/user1/")));

    // Nothing is served outside a participant's prefix.
    assert_eq!(get(port, "/", "").await.status, 404);
}
