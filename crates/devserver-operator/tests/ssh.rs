//! The injected SSH server for real: the relocatable OpenSSH bundle
//! (assembled by `images/devserver-sshd/assemble-bundle.sh`, as the image
//! build does) runs locally with the exact files and command the operator
//! generated for a DevServer, as uid 1000, and an OpenSSH client reaches it
//! through a real API port-forward to the DevServer's pod (KWOK routes the
//! pod's SSH port to the local server). The operator runs in-process with the
//! same layout rooted in a temporary directory, so its idle check (an exec
//! into the pod, routed by KWOK to a local process) reads this machine's
//! TCP sockets.
//!
//! Needs OpenSSH (`sshd`, `ssh`, `ssh-keygen`, `ssh-agent`, `ssh-add`,
//! `sftp`), nss_wrapper and `kubectl` (hack/lib.sh installs them); runs as
//! root (to start sshd as uid 1000, like the pod).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use devserver_operator::build::sshd::{DEV_UID, SshLayout, activity_command};
use devserver_operator::config::Config;
use devserver_operator::crd::{DevServer, DevServerPhase};
use envtest::kwok::{ForwardTarget, exec_locally, forward_port};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};

const MANAGER: &str = "devserver-ssh-tests";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The local root standing in for the pod's filesystem, and the SSH port.
struct Harness {
    root: PathBuf,
    port: u16,
}

/// Only one local sshd at a time: the idle check counts every established
/// connection to the port.
static SSHD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn require_tools() {
    let mut missing = Vec::new();
    for tool in ["ssh", "ssh-keygen", "ssh-agent", "ssh-add", "sftp"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            missing.push(tool.to_string());
        }
    }
    for path in [
        "/usr/sbin/sshd",
        "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    ] {
        if !Path::new(path).exists() {
            missing.push(path.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "missing tools for the SSH tests: {missing:?} (install openssh-server, openssh-client and libnss-wrapper, e.g. with hack/test.sh)"
    );
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the SSH tests run sshd as uid 1000 and must run as root"
    );
}

static ROOT: OnceLock<PathBuf> = OnceLock::new();
/// The in-process operator's metrics (what its /metrics endpoint serves).
static METRICS: OnceLock<operator_core::metrics::Metrics> = OnceLock::new();

/// Removes the temporary root when the test binary exits.
extern "C" fn remove_root() {
    if let Some(root) = ROOT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        require_tools();
        // Kept for the whole binary, removed at exit.
        let root = tempfile::Builder::new()
            .prefix("devserver-ssh-")
            .tempdir()
            .unwrap()
            .keep();
        ROOT.set(root.clone()).unwrap();
        // SAFETY: registers a plain extern "C" fn without captured state.
        unsafe {
            libc::atexit(remove_root);
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../images/devserver-sshd/assemble-bundle.sh");
        let out = Command::new(&script)
            .arg(root.join("devserver"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "assemble-bundle.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = envtest::process::free_port().unwrap();
        let layout = SshLayout::rooted(&root, port);
        start_operator(Config {
            ssh: layout,
            ..Config::default()
        });
        Harness { root, port }
    })
}

fn start_operator(config: Config) {
    let metrics = operator_core::metrics::Metrics::new();
    METRICS.set(metrics.clone()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let client = envtest::client().await.unwrap();
            let dir =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/devserver-operator/crds");
            envtest::manifest::install_crd_dir(&client, &dir)
                .await
                .unwrap();
            tx.send(()).unwrap();
            let args = operator_core::cli::RunArgs {
                metrics_addr: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            };
            operator_core::runtime::run_with_client(
                &devserver_operator::operator(),
                args,
                client,
                metrics,
                move |rt| devserver_operator::controllers::run_with_config(rt, config),
            )
            .await
            .unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("CRDs installed");
}

/// A child process killed when dropped.
struct Proc(Child);

/// The local sshd: dropping it ends the listener and every connection
/// process it forked (they start sessions of their own and rename
/// themselves, so they are found by their executable: this binary's
/// temporary bundle's loader).
struct Sshd {
    listener: Proc,
    loader: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.listener.0.kill();
        let _ = self.listener.0.wait();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == self.loader) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

async fn apply(client: &Client, yaml: &str, ns: &str) {
    envtest::manifest::apply_yaml(client, yaml, ns, MANAGER)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}

async fn wait_phase(api: &Api<DevServer>, name: &str, want: DevServerPhase) -> DevServer {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let ds = api.get(name).await.unwrap();
        if ds.status.as_ref().and_then(|s| s.phase) == Some(want) {
            return ds;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name} {want}: {:#?}",
            ds.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(path: &Path, content: &[u8], mode: u32, gid: Option<u32>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    std::fs::write(path, content).unwrap();
    chown(path, Some(0), gid).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes the server's ConfigMap and Secret where the pod mounts them (with
/// the pod's modes: 0444, and 0440 group 1000 as fsGroup gives), creates the
/// home, and starts the container's exact command and environment as uid
/// 1000.
async fn start_sshd(h: &Harness, client: &Client, ns: &str, name: &str) -> Sshd {
    let layout = SshLayout::rooted(&h.root, h.port);
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(&format!("{name}-ssh-config"))
        .await
        .unwrap();
    for (file, content) in cm.data.unwrap() {
        write(
            &Path::new(&layout.config_dir()).join(file),
            content.as_bytes(),
            0o444,
            None,
        );
    }
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("{name}-host-keys"))
        .await
        .unwrap();
    for (file, content) in secret.data.unwrap() {
        write(
            &Path::new(&layout.host_key_dir()).join(file),
            &content.0,
            0o440,
            Some(DEV_UID),
        );
    }
    let home = PathBuf::from(layout.home_dir());
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    chown(&home, Some(DEV_UID), Some(DEV_UID)).unwrap();
    for dir in ["home", "etc", "etc/devserver"] {
        std::fs::set_permissions(h.root.join(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    let container = sts.spec.unwrap().template.spec.unwrap().containers[0].clone();
    let command = container.command.unwrap();
    let log = std::fs::File::create(h.root.join(format!("sshd-{name}.log"))).unwrap();
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env_clear()
        .envs(
            container
                .env
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| Some((e.name, e.value?))),
        )
        .uid(DEV_UID)
        .gid(DEV_UID)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let child = Sshd {
        listener: Proc(cmd.spawn().unwrap()),
        loader: PathBuf::from(&command[0]),
    };
    envtest::eventually("sshd listening", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", h.port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    child
}

fn kubectl() -> PathBuf {
    std::env::var_os("ENVTEST_BIN_DIR")
        .map(|d| PathBuf::from(d).join("kubectl"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// `kubectl port-forward` to the pod's SSH port through the API server;
/// returns the local port.
fn port_forward(ns: &str, pod: &str, port: u16) -> (Proc, u16) {
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(envtest::shared().kubeconfig())
        .args([
            "-n",
            ns,
            "port-forward",
            &format!("pod/{pod}"),
            &format!(":{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kubectl runs (ENVTEST_BIN_DIR or PATH)");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep draining: kubectl dies of a closed pipe on its next line.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // "Forwarding from 127.0.0.1:41234 -> 2222"
    let local = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output: {line:?}"));
    (Proc(child), local)
}

/// An OpenSSH client invocation that pins the server's host key.
fn ssh_base(dir: &Path, port: u16, key: &Path) -> Command {
    let mut c = Command::new("ssh");
    c.args([
        "-F",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
    ])
    .arg("-o")
    .arg(format!(
        "UserKnownHostsFile={}",
        dir.join("known_hosts").display()
    ))
    .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", "-p"])
    .arg(port.to_string())
    .arg("-i")
    .arg(key);
    c
}

fn run(mut c: Command) -> (bool, String, String) {
    let out = c.stdin(Stdio::null()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn setup(prefix: &str) -> (envtest::TestNamespace, String, &'static Harness) {
    let ns = envtest::test_namespace(prefix).await.unwrap();
    let h = harness();
    let suffix = ns.name.rsplit('-').next().unwrap().to_string();
    let client = ns.client();
    apply(
        &client,
        &format!(
            "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: ssh-{suffix}\nspec:\n  resources:\n    requests: {{cpu: 100m, memory: 128Mi}}\n"
        ),
        "default",
    )
    .await;
    (ns, suffix, h)
}

#[tokio::test]
async fn an_openssh_client_logs_in_through_a_port_forward_with_the_generated_config() {
    let _one = SSHD_LOCK.lock().await;
    let (ns, suffix, h) = setup("ds-ssh").await;
    let client = ns.client();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let public = keygen(&key);
    let wrong = dir.path().join("wrong");
    keygen(&wrong);
    apply(
        &client,
        &format!(
            "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata:\n  name: box\nspec:\n  owner: alice\n  flavor: ssh-{suffix}\n  image: python:3.12\n  ssh:\n    publicKey: {}\n",
            public.trim()
        ),
        &ns.name,
    )
    .await;
    let servers: Api<DevServer> = ns.api();
    wait_phase(&servers, "box", DevServerPhase::Running).await;

    let _sshd = start_sshd(h, &client, &ns.name, "box").await;
    forward_port(
        &client,
        &ns.name,
        "box-0",
        h.port,
        ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port: h.port,
        },
    )
    .await
    .unwrap();
    let (_pf, local) = port_forward(&ns.name, "box-0", h.port);

    pin_host_key(&client, &ns.name, "box", dir.path(), local).await;

    // The right key runs a command as `dev` in its home.
    let mut c = ssh_base(dir.path(), local, &key);
    c.args([
        "dev@127.0.0.1",
        "echo \"user=$USER uid=$(id -u) pwd=$PWD name=$DEVSERVER_NAME\"",
    ]);
    let (ok, out, err) = run(c);
    assert!(ok, "ssh failed: {err}\nsshd log: {}", sshd_log(h, "box"));
    let home = SshLayout::rooted(&h.root, h.port).home_dir();
    assert_eq!(out.trim(), format!("user=dev uid=1000 pwd={home} name=box"));

    // A wrong key and root are refused.
    let mut c = ssh_base(dir.path(), local, &wrong);
    c.args(["dev@127.0.0.1", "true"]);
    let (ok, _, err) = run(c);
    assert!(!ok, "a wrong key logged in");
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    let mut c = ssh_base(dir.path(), local, &key);
    c.args(["root@127.0.0.1", "true"]);
    let (ok, _, err) = run(c);
    assert!(!ok && err.contains("Permission denied"), "root: {err}");

    // Agent forwarding: the key held by a local agent is listed inside.
    let agent_sock = dir.path().join("agent.sock");
    let _agent = Proc(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&agent_sock)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    envtest::eventually("ssh-agent socket", Duration::from_secs(10), || async {
        agent_sock.exists().then_some(())
    })
    .await;
    let mut add = Command::new("ssh-add");
    add.env("SSH_AUTH_SOCK", &agent_sock).arg(&key);
    let (ok, _, err) = run(add);
    assert!(ok, "ssh-add: {err}");
    let mut c = ssh_base(dir.path(), local, &key);
    c.env("SSH_AUTH_SOCK", &agent_sock)
        .args(["-A", "dev@127.0.0.1", "ssh-add -l"]);
    let (ok, out, err) = run(c);
    assert!(ok, "ssh -A: {err}");
    assert!(out.contains("ED25519") && out.contains("test"), "{out}");

    // TCP forwarding (what VS Code Remote-SSH uses): a direct-tcpip channel
    // to the server's own port gets its banner.
    let mut c = ssh_base(dir.path(), local, &key);
    c.args(["-W", &format!("127.0.0.1:{}", h.port), "dev@127.0.0.1"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner:?}");

    // sftp up and down.
    let payload = dir.path().join("payload.txt");
    std::fs::write(&payload, "hello over sftp\n").unwrap();
    let batch = dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} up.txt\nget up.txt {}\n",
            payload.display(),
            dir.path().join("down.txt").display()
        ),
    )
    .unwrap();
    let mut c = Command::new("sftp");
    c.args([
        "-F",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
    ])
    .arg("-o")
    .arg(format!(
        "UserKnownHostsFile={}",
        dir.path().join("known_hosts").display()
    ))
    .args(["-o", "IdentitiesOnly=yes", "-P", &local.to_string(), "-i"])
    .arg(&key)
    .arg("-b")
    .arg(&batch)
    .arg("dev@127.0.0.1");
    let (ok, _, err) = run(c);
    assert!(ok, "sftp: {err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("down.txt")).unwrap(),
        "hello over sftp\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(Path::new(&home).join("up.txt"))
            .unwrap()
            .uid(),
        DEV_UID
    );
}

/// Trusts exactly the server's host key from its Secret, as a client of
/// `devctl` would.
async fn pin_host_key(client: &Client, ns: &str, name: &str, dir: &Path, local: u16) {
    let host_pub = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("{name}-host-keys"))
        .await
        .unwrap()
        .data
        .unwrap()["ssh_host_ed25519_key.pub"]
        .0
        .clone();
    std::fs::write(
        dir.join("known_hosts"),
        format!(
            "[127.0.0.1]:{local} {}",
            String::from_utf8(host_pub).unwrap()
        ),
    )
    .unwrap();
}

fn sshd_log(h: &Harness, name: &str) -> String {
    std::fs::read_to_string(h.root.join(format!("sshd-{name}.log"))).unwrap_or_default()
}

/// Routes `kubectl exec` into the pod (the operator's idle check) to a local
/// process, which runs the bundle's `cat` on this machine's sockets.
async fn route_exec(client: &Client, ns: &str, pod: &str, h: &Harness) {
    exec_locally(client, ns, pod, &h.root, &[]).await.unwrap();
    // The command the operator will run exists here.
    let cmd = activity_command(&SshLayout::rooted(&h.root, h.port));
    assert!(Path::new(&cmd[0]).exists(), "{cmd:?}");
}

async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

fn now_after(t: k8s_openapi::jiff::Timestamp, secs: i64) -> bool {
    k8s_openapi::jiff::Timestamp::now() >= t + k8s_openapi::jiff::SignedDuration::from_secs(secs)
}

fn ts(ds: &DevServer) -> (Option<k8s_openapi::jiff::Timestamp>, Option<String>) {
    let s = ds.status.as_ref().unwrap();
    (s.last_activity.as_ref().map(|t| t.0), s.stop_reason.clone())
}

#[tokio::test]
async fn an_idle_server_stops_at_its_deadline_and_a_session_keeps_one_running() {
    let _one = SSHD_LOCK.lock().await;
    let (ns, suffix, h) = setup("ds-idle").await;
    let client = ns.client();
    let servers: Api<DevServer> = ns.api();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let public = keygen(&key);
    let server = |name: &str, idle: &str| {
        format!(
            "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n  owner: alice\n  flavor: ssh-{suffix}\n  persistentHomeSize: 1Gi\n  ssh:\n    publicKey: {}\n  lifecycle:\n    idleTimeout: {idle}\n",
            public.trim()
        )
    };

    // No session at all: stopped at lastActivity + idleTimeout, warned
    // before, the home kept.
    route_exec(&client, &ns.name, "quiet-0", h).await;
    apply(&client, &server("quiet", "8s"), &ns.name).await;
    let running = wait_phase(&servers, "quiet", DevServerPhase::Running).await;
    let since = ts(&running).0.expect("lastActivity set when Running");
    let stopped = wait_phase(&servers, "quiet", DevServerPhase::Stopped).await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let deadline = since + k8s_openapi::jiff::SignedDuration::from_secs(8);
    assert!(now >= deadline, "stopped early: {now} < {deadline}");
    assert!(
        now <= deadline + k8s_openapi::jiff::SignedDuration::from_secs(6),
        "stopped late: {now} vs {deadline}"
    );
    assert_eq!(ts(&stopped).1.as_deref(), Some("Idle"));
    assert!(!stopped.spec.running, "running: false records the stop");
    let list = events(&client, &ns.name).await;
    for reason in ["IdleSoon", "IdleStopped"] {
        assert!(
            list.iter().any(|e| e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("quiet")),
            "no {reason} event"
        );
    }
    Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(client.clone(), &ns.name)
        .get("quiet-home")
        .await
        .expect("the home is kept");

    // An open SSH session keeps a server running past its idle timeout and
    // moves lastActivity.
    route_exec(&client, &ns.name, "busy-0", h).await;
    apply(&client, &server("busy", "8s"), &ns.name).await;
    let running = wait_phase(&servers, "busy", DevServerPhase::Running).await;
    let since = ts(&running).0.unwrap();
    let _sshd = start_sshd(h, &client, &ns.name, "busy").await;
    forward_port(
        &client,
        &ns.name,
        "busy-0",
        h.port,
        ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port: h.port,
        },
    )
    .await
    .unwrap();
    let (_pf, local) = port_forward(&ns.name, "busy-0", h.port);
    pin_host_key(&client, &ns.name, "busy", dir.path(), local).await;
    let mut c = ssh_base(dir.path(), local, &key);
    c.args(["dev@127.0.0.1", "sleep 16"]);
    let mut session = Proc(c.stdin(Stdio::null()).spawn().unwrap());
    // The session outlives the 8s timeout (it logs out by itself: sshd
    // then closes the connection, as when a user exits).
    let status = session.0.wait().unwrap();
    assert!(
        status.success(),
        "the session failed: {}",
        sshd_log(h, "busy")
    );
    let ds = servers.get("busy").await.unwrap();
    assert!(
        now_after(since, 16),
        "the session ended too early to prove anything"
    );
    assert_eq!(
        ds.status.as_ref().unwrap().phase,
        Some(DevServerPhase::Running),
        "stopped with an open session: {:#?}",
        ds.status
    );
    assert!(ts(&ds).0.unwrap() > since, "lastActivity did not move");
    // Once the session has ended, the idle stop follows.
    let stopped = wait_phase(&servers, "busy", DevServerPhase::Stopped).await;
    assert_eq!(ts(&stopped).1.as_deref(), Some("Idle"));

    // The metrics count both idle stops and the servers by phase and flavor.
    let metrics = METRICS.get().unwrap();
    let stopped_line =
        format!("operator_devserver_servers{{phase=\"Stopped\",flavor=\"ssh-{suffix}\"}} 2");
    let text = envtest::eventually("metrics recounted", Duration::from_secs(15), || async {
        let text = metrics.encode();
        text.lines().any(|l| l == stopped_line).then_some(text)
    })
    .await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    };
    assert!(
        value("operator_devserver_idle_stops_total ") >= 2.0,
        "{text}"
    );
    assert!(
        value("operator_devserver_time_to_running_seconds_count ") >= 2.0,
        "{text}"
    );
    let _ = Api::<devserver_operator::crd::DevServerFlavor>::all(client)
        .delete(&format!("ssh-{suffix}"), &Default::default())
        .await;
}
