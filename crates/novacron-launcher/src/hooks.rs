//! Lifecycle hooks (`preStart`, `preStop`): an exec command or an HTTP GET,
//! each bounded by its timeout. The result is a message for status/events.

use std::process::Stdio;
use std::time::Duration;

use crate::config::HookConfig;

/// Runs a hook; `Ok` carries a short success message, `Err` the failure.
pub async fn run(hook: &HookConfig) -> Result<String, String> {
    let timeout = Duration::from_secs(hook.timeout_seconds.max(1));
    let work = async {
        if let Some(exec) = &hook.exec {
            run_exec(&exec.command).await
        } else if let Some(get) = &hook.http_get {
            run_http(&get.url()).await
        } else {
            Err("hook has neither exec nor httpGet".to_string())
        }
    };
    // Dropping the future on timeout kills the child (kill_on_drop).
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

async fn run_exec(command: &[String]) -> Result<String, String> {
    let (program, args) = command.split_first().ok_or("exec.command is empty")?;
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    if out.status.success() {
        Ok(format!("{program} exited 0"))
    } else {
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            tail(&out.stderr)
        ))
    }
}

async fn run_http(url: &str) -> Result<String, String> {
    let response = crate::http_get::get(url).await?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(format!("GET {url}: {status}"))
    } else {
        Err(format!("GET {url}: {status}"))
    }
}

/// The last 500 bytes of a command's output, for messages.
fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let start = s.len().saturating_sub(500);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExecHook;

    fn exec(cmd: &[&str], timeout: u64) -> HookConfig {
        HookConfig {
            exec: Some(ExecHook {
                command: cmd.iter().map(|s| s.to_string()).collect(),
            }),
            http_get: None,
            timeout_seconds: timeout,
        }
    }

    #[tokio::test]
    async fn exec_hook_success_failure_and_timeout() {
        assert!(run(&exec(&["true"], 5)).await.is_ok());
        let err = run(&exec(&["sh", "-c", "echo boom >&2; exit 3"], 5))
            .await
            .unwrap_err();
        assert!(err.contains("boom") && err.contains("3"), "{err}");
        let started = std::time::Instant::now();
        let err = run(&exec(&["sleep", "30"], 1)).await.unwrap_err();
        assert!(err.contains("timed out after 1s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = run(&exec(&["/nonexistent/hook"], 1)).await.unwrap_err();
        assert!(err.contains("cannot run"), "{err}");
    }

    /// Answers every request with `status` on a local port.
    async fn http_server(status: u16) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_hook_success_and_failure_status() {
        let hook = |port| HookConfig {
            exec: None,
            http_get: Some(crate::config::HttpGetHook {
                host: None,
                port,
                path: "/hook".into(),
                scheme: "http".into(),
            }),
            timeout_seconds: 5,
        };
        let ok = run(&hook(http_server(200).await)).await.unwrap();
        assert!(ok.contains("200"), "{ok}");
        let err = run(&hook(http_server(500).await)).await.unwrap_err();
        assert!(err.contains("500"), "{err}");
    }
}
