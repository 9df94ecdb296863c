//! The QGA protocol handling against a local unix-socket peer that speaks
//! the guest agent's JSON protocol (sentinel byte, sync ids, `return` and
//! `error` replies, the freeze state), and the quiescer's choices against a
//! QMP peer. Real QEMU (no agent in the guest: pause) is tested in
//! `tests/quiesce.rs`.

use std::sync::Mutex as StdMutex;

use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;

use super::*;

/// What the agent peer does.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    /// Answers like qemu-ga, after a stale reply of an "earlier client".
    Agent,
    /// Accepts and never answers (no agent runs in the guest).
    Silent,
}

/// A guest agent peer; returns the commands it ran and whether the guest
/// is frozen.
fn agent_peer(path: &Path, mode: Peer) -> Arc<StdMutex<(Vec<String>, bool)>> {
    let listener = UnixListener::bind(path).unwrap();
    let seen = Arc::new(StdMutex::new((Vec::new(), false)));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = conn.into_split();
                if mode == Peer::Silent {
                    let mut sink = Vec::new();
                    let _ = r.read_to_end(&mut sink).await;
                    return;
                }
                // Stale data an earlier client left unread.
                w.write_all(b"{\"return\": 4242}\n{\"retu").await.unwrap();
                let mut pending = Vec::new();
                let mut buf = [0u8; 512];
                loop {
                    let Ok(n) = r.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    for &b in &buf[..n] {
                        match b {
                            // 0xFF resets the parser, as in qemu-ga.
                            0xFF => pending.clear(),
                            b'\n' => {
                                let req: Value = serde_json::from_slice(&pending).unwrap();
                                pending.clear();
                                let reply = answer(&req, &record);
                                w.write_all(&reply).await.unwrap();
                            }
                            _ => pending.push(b),
                        }
                    }
                }
            });
        }
    });
    seen
}

fn answer(req: &Value, record: &StdMutex<(Vec<String>, bool)>) -> Vec<u8> {
    let mut rec = record.lock().unwrap();
    let command = req["execute"].as_str().unwrap().to_string();
    rec.0.push(command.clone());
    let reply = match command.as_str() {
        "guest-sync-delimited" => {
            let mut out = vec![0xFF];
            out.extend_from_slice(
                json!({"return": req["arguments"]["id"]})
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'\n');
            return out;
        }
        "guest-ping" => json!({"return": {}}),
        "guest-fsfreeze-freeze" if rec.1 => json!({"error": {"class": "GenericError",
            "desc": "Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state"}}),
        "guest-fsfreeze-freeze" => {
            rec.1 = true;
            json!({"return": 2})
        }
        "guest-fsfreeze-thaw" => {
            let n = if rec.1 { 2 } else { 0 };
            rec.1 = false;
            json!({"return": n})
        }
        other => {
            json!({"error": {"class": "CommandNotFound", "desc": format!("The command {other} has not been found")}})
        }
    };
    let mut out = reply.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// A QMP peer: greeting, capabilities, `query-status`, `stop`, `cont`;
/// records the commands.
fn qmp_peer(path: &Path, initial: &str) -> Arc<StdMutex<(Vec<String>, String)>> {
    let listener = UnixListener::bind(path).unwrap();
    let seen = Arc::new(StdMutex::new((Vec::new(), initial.to_string())));
    let record = seen.clone();
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        let (r, mut w) = conn.into_split();
        w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"major\": 8, \"minor\": 2, \"micro\": 0}}, \"capabilities\": []}}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let req: Value = serde_json::from_str(&line).unwrap();
            let command = req["execute"].as_str().unwrap().to_string();
            let ret = {
                let mut rec = record.lock().unwrap();
                rec.0.push(command.clone());
                match command.as_str() {
                    "query-status" => json!({"status": rec.1, "running": rec.1 == "running"}),
                    "stop" => {
                        rec.1 = "paused".into();
                        json!({})
                    }
                    "cont" => {
                        rec.1 = "running".into();
                        json!({})
                    }
                    _ => json!({}),
                }
            };
            let reply = json!({"return": ret, "id": req["id"]});
            w.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
        }
    });
    seen
}

async fn quiescer(
    dir: &Path,
    initial: &str,
    release_after: Duration,
) -> (Arc<Quiescer>, Arc<StdMutex<(Vec<String>, String)>>) {
    let qmp_path = dir.join("qmp.sock");
    let qmp_seen = qmp_peer(&qmp_path, initial);
    let qmp = Arc::new(Qmp::connect(&qmp_path).await.unwrap());
    (
        Quiescer::new(qmp, dir.join("qga.sock"), release_after),
        qmp_seen,
    )
}

fn qmp_commands(seen: &StdMutex<(Vec<String>, String)>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .0
        .iter()
        .filter(|c| *c != "qmp_capabilities" && *c != "query-status")
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_agent_syncs_past_stale_replies_and_runs_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qga.sock");
    let seen = agent_peer(&path, Peer::Agent);
    let mut agent = Agent::connect(&path, Duration::from_secs(5)).await.unwrap();
    let t = Duration::from_secs(5);
    assert_eq!(
        agent.execute("guest-ping", None, t).await.unwrap(),
        json!({})
    );
    assert_eq!(
        agent
            .execute("guest-fsfreeze-freeze", None, t)
            .await
            .unwrap(),
        json!(2)
    );
    assert!(seen.lock().unwrap().1, "the peer is frozen");
    // The agent's own error comes back as a command error, not a hang.
    let err = agent
        .execute("guest-fsfreeze-freeze", None, t)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AgentError::Command { class, desc, .. } if class == "GenericError" && desc.contains("frozen state")),
        "{err:?}"
    );
    assert_eq!(
        agent.execute("guest-fsfreeze-thaw", None, t).await.unwrap(),
        json!(2)
    );
    assert!(!seen.lock().unwrap().1);
    let err = agent.execute("guest-nope", None, t).await.unwrap_err();
    assert!(err.to_string().contains("CommandNotFound"), "{err}");
    // A second client synchronises with a fresh id on its own connection.
    let mut again = Agent::connect(&path, t).await.unwrap();
    again.execute("guest-ping", None, t).await.unwrap();
    let syncs = seen
        .lock()
        .unwrap()
        .0
        .iter()
        .filter(|c| *c == "guest-sync-delimited")
        .count();
    assert_eq!(syncs, 2);
}

#[tokio::test]
async fn a_silent_or_missing_agent_fails_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qga.sock");
    agent_peer(&path, Peer::Silent);
    let started = std::time::Instant::now();
    let err = Agent::connect(&path, Duration::from_millis(300))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, AgentError::Timeout(..)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = Agent::connect(&dir.path().join("none.sock"), Duration::from_secs(1))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, AgentError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn with_an_agent_the_guest_is_frozen_and_the_bound_thaws_it() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_peer(&dir.path().join("qga.sock"), Peer::Agent);
    let (q, qmp) = quiescer(dir.path(), "running", Duration::from_millis(400)).await;
    let state = Arc::new(State::default());
    let s = q.quiesce(&state).await.unwrap();
    assert_eq!(s.state, QuiesceState::Frozen);
    assert_eq!(s.frozen_filesystems, Some(2));
    assert!(agent.lock().unwrap().1);
    assert_eq!(state.snapshot().quiesced, Some(QuiesceState::Frozen));
    // Frozen, not paused.
    assert!(qmp_commands(&qmp).is_empty());
    let r = q.release(&state).await.unwrap();
    assert_eq!(r.state, QuiesceState::Released);
    assert!(!agent.lock().unwrap().1);
    assert_eq!(state.snapshot().quiesced, None);
    // A release that never comes: the launcher thaws by itself.
    q.quiesce(&state).await.unwrap();
    assert!(agent.lock().unwrap().1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!agent.lock().unwrap().1, "thawed after the bound");
    assert_eq!(state.snapshot().quiesced, None);
    // A late release is harmless.
    assert_eq!(
        q.release(&state).await.unwrap().state,
        QuiesceState::Released
    );
}

#[tokio::test]
async fn without_an_agent_the_vm_is_paused_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (q, qmp) = quiescer(dir.path(), "running", Duration::from_secs(30)).await;
    let state = Arc::new(State::default());
    let s = q.quiesce(&state).await.unwrap();
    assert_eq!(s.state, QuiesceState::Paused);
    assert_eq!(s.auto_release_seconds, Some(30));
    assert!(s.message.contains("guest agent channel"), "{}", s.message);
    // Repeated: still paused once.
    assert_eq!(q.quiesce(&state).await.unwrap().state, QuiesceState::Paused);
    assert_eq!(qmp_commands(&qmp), ["stop"]);
    q.release(&state).await.unwrap();
    assert_eq!(qmp_commands(&qmp), ["stop", "cont"]);
    assert_eq!(qmp.lock().unwrap().1, "running");
}

#[tokio::test]
async fn a_vm_paused_by_its_user_stays_paused() {
    let dir = tempfile::tempdir().unwrap();
    let (q, qmp) = quiescer(dir.path(), "paused", Duration::from_secs(30)).await;
    let state = Arc::new(State::default());
    assert_eq!(q.quiesce(&state).await.unwrap().state, QuiesceState::Paused);
    q.release(&state).await.unwrap();
    assert!(qmp_commands(&qmp).is_empty(), "{:?}", qmp_commands(&qmp));
    assert_eq!(qmp.lock().unwrap().1, "paused");
}
