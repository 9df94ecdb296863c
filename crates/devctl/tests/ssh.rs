//! End to end SSH: a DevServer created with devctl on the real control
//! plane (operator in-process); its pod's port-forward is routed by KWOK to
//! a real OpenSSH server started here with the DevServer's own host key,
//! authorized_keys and the operator's generated sshd_config. `devctl ssh`
//! and plain `ssh` through devctl's generated config reach it over a real
//! API server port-forward, and a changed host key is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use devserver_operator::build::hostkey::PRIVATE_KEY;
use envtest::kwok::{ForwardTarget, forward_port};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd process, killed when dropped.
struct Sshd {
    child: Child,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn id(flag: &str) -> String {
    let o = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The operator's sshd_config with the in-pod paths and port replaced by
/// local ones. As root (CI containers), root login by key is allowed since
/// the local account stands in for the pod's `dev` user.
fn local_sshd_config(generated: &str, dir: &Path, host_key: &Path, port: u16) -> String {
    let root = id("-u") == "0";
    let mut out = String::new();
    for line in generated.lines() {
        let keyword = line.split_whitespace().next().unwrap_or_default();
        let replaced = match keyword {
            "Port" => format!("Port {port}\nListenAddress 127.0.0.1"),
            "HostKey" => format!("HostKey {}", host_key.display()),
            "AuthorizedKeysFile" => {
                format!(
                    "AuthorizedKeysFile {}",
                    dir.join("authorized_keys").display()
                )
            }
            "PermitRootLogin" if root => "PermitRootLogin prohibit-password".into(),
            // The local account stands in for the pod's `dev`.
            "AllowUsers" => format!("AllowUsers {}", id("-un")),
            _ => line.to_string(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

fn start_sshd(dir: &Path, config: &str, name: &str) -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install the Debian package openssh-server"
    );
    if id("-u") == "0" {
        // sshd's privilege separation directory, needed when run as root.
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let cfg = dir.join(format!("{name}.sshd_config"));
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Sshd { child, log }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_private(path: &Path, text: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Waits until `port` accepts connections.
async fn listening(port: u16, sshd: &Sshd) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sshd did not start:\n{}", sshd.log());
}

#[tokio::test]
async fn ssh_reaches_the_server_through_an_api_port_forward() {
    let ns = envtest::test_namespace("devctl-ssh").await.unwrap();
    start_operator();
    let client = ns.client();
    let n = ns.name.as_str();
    let env = Env::new();
    let suffix = n.rsplit('-').next().unwrap();
    let flavor_name = format!("ssh-{suffix}");
    apply(&client, &flavor(&flavor_name, false), "default").await;

    // The developer's key, from devctl's configuration.
    let key = env.ssh_key("id_ed25519");
    env.ok(&["config", "set", "sshKey", key.to_str().unwrap()]);
    env.ok(&[
        "-n",
        n,
        "create",
        "box",
        "--flavor",
        &flavor_name,
        "--wait",
        "--timeout",
        "2m",
    ]);

    // The host key devctl pins is the one the operator publishes in the
    // status (readable by users, who may not read Secrets), and it is the
    // server's real key.
    let ds = Api::<devserver_operator::crd::DevServer>::namespaced(client.clone(), n)
        .get("box")
        .await
        .unwrap();
    let published = ds
        .status
        .and_then(|s| s.ssh)
        .and_then(|s| s.host_public_key)
        .expect("the DevServer publishes its host key");
    assert_eq!(
        published.as_bytes(),
        secret_public(&client, n).await.as_slice(),
        "the published host key is the Secret's"
    );

    // The server side, from what the operator generated for the pod.
    let secret = Api::<Secret>::namespaced(client.clone(), n)
        .get("box-host-keys")
        .await
        .unwrap();
    let host_key = env.path("host_key");
    write_private(&host_key, &secret.data.unwrap()[PRIVATE_KEY].0);
    let cm = Api::<ConfigMap>::namespaced(client.clone(), n)
        .get("box-ssh-config")
        .await
        .unwrap();
    let data = cm.data.unwrap();
    let authorized = &data["authorized_keys"];
    let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    assert!(
        authorized.contains(public.trim()),
        "the key from the config: {authorized}"
    );
    std::fs::write(env.path("authorized_keys"), authorized).unwrap();
    let port = free_port();
    let sshd = start_sshd(
        env.dir.path(),
        &local_sshd_config(&data["sshd_config"], env.dir.path(), &host_key, port),
        "real",
    );
    listening(port, &sshd).await;
    // Port-forwards to the pod's SSH port reach the local server.
    let pod = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), n)
        .get("box-0")
        .await
        .unwrap();
    forward_port(
        &client,
        n,
        "box-0",
        devctl::ssh::proxy::ssh_port(&pod),
        ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port,
        },
    )
    .await
    .unwrap();

    // The tunnel alone: the server's banner comes back through devctl
    // ssh-proxy (KWOK picks the forwarding rule up asynchronously).
    let mut tries = 0;
    let banner = loop {
        tries += 1;
        let (banner, err) = proxy_banner(&env, n).await;
        if banner.starts_with("SSH-2.0-") || tries == 20 {
            break format!("{banner}\n{err}");
        }
        eprintln!("try {tries}: {banner:?} {err}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        banner.starts_with("SSH-2.0-OpenSSH"),
        "{banner}\nsshd:\n{}",
        sshd.log()
    );

    let user = id("-un");
    let ssh_args = ["-n", n, "ssh", "box", "-l", &user, "--", "echo", "ok"];
    eprintln!("devctl ssh");
    let o = timed(env.command(&ssh_args), &sshd).await;
    assert!(
        o.status.success(),
        "devctl ssh failed:\n{}\nsshd:\n{}",
        stderr(&o),
        sshd.log()
    );
    assert_eq!(stdout(&o), "ok\n");

    // The host key is pinned in devctl's known_hosts, checked strictly.
    let alias = format!("box.{n}.devserver");
    let known = std::fs::read_to_string(env.path("devctl/ssh/known_hosts")).unwrap();
    let pinned = String::from_utf8_lossy(&secret_public(&client, n).await).to_string();
    let pinned: Vec<&str> = pinned.split_whitespace().take(2).collect();
    assert_eq!(known, format!("{alias} {} {}\n", pinned[0], pinned[1]));
    let cfg = std::fs::read_to_string(env.path("devctl/ssh/config")).unwrap();
    assert!(cfg.contains("StrictHostKeyChecking yes"), "{cfg}");
    assert!(!cfg.contains("StrictHostKeyChecking no"), "{cfg}");
    assert!(cfg.contains("ssh-proxy box"), "{cfg}");

    // Plain ssh through ~/.ssh/config, after consent (--install); without
    // it the user's file is left alone.
    let user_config = env.home().join(".ssh/config");
    let o = env.run(&["-n", n, "ssh-config", "box"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!user_config.exists(), "not changed without consent");
    assert!(stderr(&o).contains("--install"), "{}", stderr(&o));
    let out = env.ok(&["-n", n, "ssh-config", "box", "--install"]);
    assert_eq!(out.trim(), alias);
    let text = std::fs::read_to_string(&user_config).unwrap();
    assert!(
        text.contains(&format!(
            "Include {}",
            env.path("devctl/ssh/config").display()
        )),
        "{text}"
    );
    let plain_ssh = || {
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg(&user_config)
            .args(["-o", "BatchMode=yes", "-l", &user, &alias, "echo", "ok"])
            .env_remove("KUBECONFIG");
        c
    };
    // Several sessions at once, each with its own tunnel.
    eprintln!("plain ssh");
    let sessions: Vec<_> = (0..3).map(|_| start(plain_ssh())).collect();
    for child in sessions {
        let o = finish(child, &sshd).await;
        assert!(
            o.status.success(),
            "plain ssh failed:\n{}\nsshd:\n{}",
            stderr(&o),
            sshd.log()
        );
        assert_eq!(stdout(&o), "ok\n");
    }

    // -A forwards the agent: the session lists the agent's key.
    let sock = env.path("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent is needed (Debian package openssh-client)");
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    let mut with_agent = env.command(&[
        "-n", n, "ssh", "box", "-l", &user, "-A", "--", "ssh-add", "-l",
    ]);
    with_agent.env("SSH_AUTH_SOCK", &sock);
    let o = timed(with_agent, &sshd).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(o.status.success(), "{}\nsshd:\n{}", stderr(&o), sshd.log());
    assert!(
        stdout(&o).contains("id_ed25519 (ED25519)"),
        "{}",
        stdout(&o)
    );

    // A server with another host key is refused.
    drop(sshd);
    let other = env.ssh_key("other_host_key");
    let imposter = start_sshd(
        env.dir.path(),
        &local_sshd_config(&data["sshd_config"], env.dir.path(), &other, port),
        "imposter",
    );
    listening(port, &imposter).await;
    eprintln!("imposter");
    let o = timed(env.command(&ssh_args), &imposter).await;
    assert!(!o.status.success(), "a changed host key must be refused");
    let err = stderr(&o);
    assert!(
        err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || err.contains("Host key verification failed"),
        "{err}"
    );
    assert_eq!(stdout(&o), "");
    let o = timed(plain_ssh(), &imposter).await;
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Host key verification failed"),
        "{}",
        stderr(&o)
    );
}

/// A developer with only the kubeconfig `devctl admin user kubeconfig`
/// gave them (their ServiceAccount's token, their namespace): they create a
/// server and `devctl ssh` into it. This exercises the user's RBAC for
/// everything `devctl ssh` needs (the DevServer and its published host key,
/// the pod, `pods/portforward`), not the admin's.
#[tokio::test]
async fn ssh_as_a_user_with_their_own_kubeconfig() {
    let ns = envtest::test_namespace("devctl-ssh-user").await.unwrap();
    start_operator();
    let admin = ns.client();
    let admin_env = Env::new();
    let suffix = ns.name.rsplit('-').next().unwrap();
    let user = format!("s{suffix}");
    let user_ns = format!("dev-{user}");
    let flavor_name = format!("ssh-user-{suffix}");
    apply(&admin, &flavor(&flavor_name, false), "default").await;

    // The administrator creates the user and hands over a kubeconfig.
    let key = admin_env.ssh_key("id_user");
    admin_env.ok(&[
        "admin",
        "user",
        "create",
        &user,
        "--ssh-public-key-file",
        &format!("{}.pub", key.display()),
    ]);
    let user_kubeconfig = admin_env.path("user.kubeconfig");
    admin_env.ok(&[
        "admin",
        "user",
        "kubeconfig",
        &user,
        "--output-file",
        user_kubeconfig.to_str().unwrap(),
    ]);

    // The user's own devctl: their kubeconfig, config and HOME.
    let mut env = Env::new();
    env.kubeconfig = user_kubeconfig;
    let user_key = env.path("id_user");
    std::fs::copy(&key, &user_key).unwrap();
    std::fs::copy(format!("{}.pub", key.display()), env.path("id_user.pub")).unwrap();
    env.ok(&["config", "set", "sshKey", user_key.to_str().unwrap()]);
    let out = env.ok(&[
        "create",
        "box",
        "--flavor",
        &flavor_name,
        "--wait",
        "--timeout",
        "2m",
    ]);
    assert!(
        out.contains(&user_ns),
        "created in the user's namespace: {out}"
    );

    // The pod's SSH server, played by a local sshd with the server's key.
    let secret = Api::<Secret>::namespaced(admin.clone(), &user_ns)
        .get("box-host-keys")
        .await
        .unwrap();
    let host_key = env.path("host_key");
    write_private(&host_key, &secret.data.unwrap()[PRIVATE_KEY].0);
    let data = Api::<ConfigMap>::namespaced(admin.clone(), &user_ns)
        .get("box-ssh-config")
        .await
        .unwrap()
        .data
        .unwrap();
    std::fs::write(env.path("authorized_keys"), &data["authorized_keys"]).unwrap();
    let port = free_port();
    let sshd = start_sshd(
        env.dir.path(),
        &local_sshd_config(&data["sshd_config"], env.dir.path(), &host_key, port),
        "user",
    );
    listening(port, &sshd).await;
    let pod = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), &user_ns)
        .get("box-0")
        .await
        .unwrap();
    forward_port(
        &admin,
        &user_ns,
        "box-0",
        devctl::ssh::proxy::ssh_port(&pod),
        ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port,
        },
    )
    .await
    .unwrap();

    // KWOK picks the forwarding rule up asynchronously: retry briefly.
    let local_user = id("-un");
    let ssh_args = ["ssh", "box", "-l", &local_user, "--", "echo", "ok"];
    let mut tries = 0;
    let o = loop {
        tries += 1;
        let o = timed(env.command(&ssh_args), &sshd).await;
        if o.status.success() || tries == 15 {
            break o;
        }
        eprintln!("try {tries}: {}", stderr(&o));
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        o.status.success(),
        "devctl ssh as the user failed:\n{}\nsshd:\n{}",
        stderr(&o),
        sshd.log()
    );
    assert_eq!(stdout(&o), "ok\n");
    // The pinned key is the one the user could read from the status.
    let known = std::fs::read_to_string(env.path("devctl/ssh/known_hosts")).unwrap();
    let public = String::from_utf8_lossy(&secret_public(&admin, &user_ns).await).to_string();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    assert_eq!(
        known,
        format!("box.{user_ns}.devserver {} {}\n", public[0], public[1])
    );

    admin_env.ok(&["admin", "user", "delete", &user]);
}

/// Starts `cmd` with stdin closed and its output captured.
fn start(cmd: Command) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// Waits at most 60 s for `child`.
async fn finish(child: tokio::process::Child, sshd: &Sshd) -> std::process::Output {
    match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
        Ok(o) => o.unwrap(),
        Err(_) => panic!("a command hung for 60 s; sshd:\n{}", sshd.log()),
    }
}

async fn timed(cmd: Command, sshd: &Sshd) -> std::process::Output {
    finish(start(cmd), sshd).await
}

/// Runs `devctl ssh-proxy box`, sends an SSH banner and returns the first
/// line that comes back (within 5 s) and devctl's stderr.
async fn proxy_banner(env: &Env, ns: &str) -> (String, String) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::from(env.command(&["-n", ns, "ssh-proxy", "box"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"SSH-2.0-OpenSSH_9.2 probe\r\n")
        .await
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .ok()
        .and_then(|l| l.ok().flatten())
        .unwrap_or_default();
    drop(stdin);
    let _ = child.start_kill();
    let out = child.wait_with_output().await.unwrap();
    (line, stderr(&out))
}

async fn secret_public(client: &kube::Client, ns: &str) -> Vec<u8> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get("box-host-keys")
        .await
        .unwrap()
        .data
        .unwrap()[devserver_operator::build::hostkey::PUBLIC_KEY]
        .0
        .clone()
}
