//! The built `devctl` binary against the real control plane with
//! devserver-operator running in-process (KWOK makes pods Running and
//! Ready and binds claims): the DevServer lifecycle, flavors and user
//! kubeconfigs.

mod common;

use common::*;
use devserver_operator::crd::{DevServer, DevServerPhase};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;

fn phase(ds: &DevServer) -> Option<DevServerPhase> {
    ds.status.as_ref().and_then(|s| s.phase)
}

async fn wait_phase(api: &Api<DevServer>, name: &str, want: DevServerPhase) -> DevServer {
    envtest::eventually(&format!("{name} {want}"), TIMEOUT, || async {
        let ds = api.get(name).await.ok()?;
        (phase(&ds) == Some(want)).then_some(ds)
    })
    .await
}

fn expires_at(ds: &DevServer) -> Timestamp {
    ds.status.as_ref().unwrap().expires_at.as_ref().unwrap().0
}

#[tokio::test]
async fn a_devserver_from_create_to_delete() {
    let ns = envtest::test_namespace("devctl-flow").await.unwrap();
    start_operator();
    let client = ns.client();
    let env = Env::new();
    let n = ns.name.as_str();

    // No default flavor yet: a clear error.
    let err = env.fails(&["-n", n, "create", "mydev"]);
    assert!(err.contains("no default flavor"), "{err}");
    assert!(err.contains("--flavor"), "{err}");
    let err = env.fails(&["-n", n, "create", "mydev", "--flavor", "nope"]);
    assert!(err.contains("flavor \"nope\" does not exist"), "{err}");
    assert!(err.contains("devctl flavors"), "{err}");

    let suffix = n.rsplit('-').next().unwrap();
    let default_flavor = format!("cpu-{suffix}");
    apply(&client, &flavor(&default_flavor, true), "default").await;
    apply(&client, &pvc("data"), n).await;
    let key = env.ssh_key("id_ed25519");

    // create --wait: progress on stderr (one line per change off a
    // terminal), then Running.
    let o = env.run(&[
        "-n",
        n,
        "create",
        "mydev",
        "--ttl",
        "8h",
        "--home-size",
        "1Gi",
        "-v",
        "data:/data:ro",
        "--ssh-public-key-file",
        &format!("{}.pub", key.display()),
        "--wait",
        "--timeout",
        "2m",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("devserver/mydev created in namespace {n}")),
        "{out}"
    );
    assert!(out.contains("devserver/mydev is running"), "{out}");
    let progress = stderr(&o);
    assert!(
        progress.lines().all(|l| l.starts_with("mydev: ")),
        "{progress}"
    );
    let servers: Api<DevServer> = Api::namespaced(client.clone(), n);
    let ds = servers.get("mydev").await.unwrap();
    assert_eq!(phase(&ds), Some(DevServerPhase::Running));
    let v = serde_json::to_value(&ds.spec).unwrap();
    assert_eq!(v["volumes"][0]["readOnly"], true);
    assert_eq!(v["lifecycle"]["timeToLive"], "8h");
    assert!(
        v["ssh"]["publicKey"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    assert_eq!(
        v.get("flavor"),
        None,
        "the cluster default is left to the operator"
    );

    // Creating it again says so.
    let err = env.fails(&["-n", n, "create", "mydev"]);
    assert!(err.contains("already exists"), "{err}");

    // list: table, wide, json, yaml.
    let out = env.ok(&["-n", n, "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "PHASE", "FLAVOR", "OWNER", "EXPIRES", "AGE"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["mydev", "Running", default_flavor.as_str(), "-"],
        "{out}"
    );
    assert!(row[4] == "in" && row[5].starts_with('7'), "{out}");
    let out = env.ok(&["-n", n, "list", "-o", "wide"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[6..], ["MODE", "IMAGE", "MESSAGE"], "{out}");
    assert!(
        out.contains("standalone   (default)   Ready for SSH."),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["-n", n, "list", "-o", "json"])).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"][0]["metadata"]["name"], "mydev");
    assert_eq!(v["items"][0]["status"]["phase"], "Running");
    let v: serde_json::Value =
        serde_yaml::from_str(&env.ok(&["-n", n, "ls", "-o", "yaml"])).unwrap();
    assert_eq!(v["items"][0]["spec"]["persistentHomeSize"], "1Gi");

    // describe.
    let out = env.ok(&["-n", n, "describe", "mydev"]);
    for want in [
        "Name:          mydev\n",
        "Phase:         Running\n",
        "Time to live:  8h\n",
        "Home:          1Gi persistent (claim mydev-home) at /home/dev\n",
        "  data    /data   ro\n",
        "mydev-0",
        "Ready",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let err = env.fails(&["-n", n, "describe", "--name", "nothere"]);
    assert!(err.contains("DevServer nothere not found"), "{err}");
    assert!(err.contains("devctl list"), "{err}");

    // extend --by 2h moves expiresAt by exactly 2h.
    let before = expires_at(&ds);
    let out = env.ok(&["-n", n, "extend", "mydev", "--by", "2h"]);
    assert!(out.contains("extended by 2h"), "{out}");
    assert!(out.contains("timeToLive is now 10h"), "{out}");
    let want = before + SignedDuration::from_hours(2);
    envtest::eventually("expiresAt moved by 2h", TIMEOUT, || async {
        let ds = servers.get("mydev").await.ok()?;
        (expires_at(&ds) == want).then_some(())
    })
    .await;
    let err = env.fails(&["-n", n, "extend", "mydev", "--by", "7d"]);
    assert!(err.contains("7-day maximum"), "{err}");

    // stop and start.
    let out = env.ok(&["-n", n, "stop", "mydev"]);
    assert!(out.contains("devserver/mydev stopped"), "{out}");
    wait_phase(&servers, "mydev", DevServerPhase::Stopped).await;
    let err = env.fails(&["-n", n, "ssh", "mydev", "--", "true"]);
    assert!(err.contains("devctl start mydev"), "{err}");
    assert!(
        env.ok(&["-n", n, "stop", "mydev"])
            .contains("already stopped")
    );
    env.ok(&["-n", n, "start", "--name", "mydev"]);
    wait_phase(&servers, "mydev", DevServerPhase::Running).await;

    // delete keeps the persistent home ...
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    pvcs.get("mydev-home")
        .await
        .expect("the operator made the home");
    let o = env.run(&["-n", n, "delete", "mydev"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("devserver/mydev deleted"));
    assert!(
        stderr(&o).contains("persistent home mydev-home is kept"),
        "{}",
        stderr(&o)
    );
    envtest::eventually("mydev gone", TIMEOUT, || async {
        servers.get_opt("mydev").await.ok()?.is_none().then_some(())
    })
    .await;
    let home = pvcs.get("mydev-home").await.expect("the home is kept");
    assert!(home.metadata.deletion_timestamp.is_none());

    // ... and --purge deletes it, only when confirmed.
    env.ok(&["-n", n, "create", "other", "--home-size", "1Gi"]);
    envtest::eventually("other-home", TIMEOUT, || async {
        pvcs.get_opt("other-home").await.ok()?.map(|_| ())
    })
    .await;
    let err = env.fails(&["-n", n, "delete", "other", "--purge"]);
    assert!(err.contains("pass --yes"), "{err}");
    assert!(
        servers.get_opt("other").await.unwrap().is_some(),
        "nothing deleted"
    );
    let out = env.ok(&["-n", n, "delete", "other", "--purge", "--yes"]);
    assert!(out.contains("devserver/other deleted"), "{out}");
    assert!(
        out.contains("persistentvolumeclaim/other-home deleted"),
        "{out}"
    );
    // A home left behind by an earlier delete is purged too.
    let out = env.ok(&["-n", n, "delete", "mydev", "--purge", "-y"]);
    assert!(
        out.contains("persistentvolumeclaim/mydev-home deleted"),
        "{out}"
    );
    for claim in ["mydev-home", "other-home"] {
        envtest::eventually(&format!("{claim} deleted"), TIMEOUT, || async {
            match pvcs.get_opt(claim).await.ok()? {
                None => Some(()),
                Some(p) => p.metadata.deletion_timestamp.map(|_| ()),
            }
        })
        .await;
    }
    assert!(
        pvcs.get("data").await.is_ok(),
        "the user's claim is untouched"
    );
    let err = env.fails(&["-n", n, "delete", "mydev"]);
    assert!(err.contains("not found"), "{err}");

    // On a terminal, --wait keeps one live progress line.
    let devctl = env!("CARGO_BIN_EXE_devctl");
    let o = env
        .with_env(std::process::Command::new("script"))
        .args([
            "-qec",
            &format!("{devctl} -n {n} create ttybox --wait"),
            "/dev/null",
        ])
        .output()
        .expect("script(1) is needed (Debian package bsdutils)");
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("\r\x1b[2K[  0s] ttybox: "), "{text:?}");
    assert!(text.contains("ttybox: running"), "{text:?}");
    env.ok(&["-n", n, "delete", "ttybox"]);

    // flavors.
    let out = env.ok(&["flavors"]);
    let row = out
        .lines()
        .find(|l| l.starts_with(&default_flavor))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[..4],
        [default_flavor.as_str(), "yes", "100m", "128Mi"]
    );
}

#[tokio::test]
async fn a_user_kubeconfig_works_in_the_users_namespace_only() {
    let ns = envtest::test_namespace("devctl-admin").await.unwrap();
    start_operator();
    let client = ns.client();
    let env = Env::new();
    let suffix = ns.name.rsplit('-').next().unwrap();
    let user = format!("u{suffix}");
    let user_ns = format!("dev-{user}");
    let user_flavor = format!("small-{suffix}");
    apply(&client, &flavor(&user_flavor, false), "default").await;
    let key = env.ssh_key("id_user");

    let out = env.ok(&[
        "admin",
        "user",
        "create",
        &user,
        "--ssh-public-key-file",
        &format!("{}.pub", key.display()),
    ]);
    assert!(
        out.contains(&format!(
            "devserveruser/{user} created (namespace {user_ns})"
        )),
        "{out}"
    );
    let err = env.fails(&["admin", "user", "create", &user]);
    assert!(err.contains("already exists"), "{err}");
    let err = env.fails(&["admin", "user", "create", "Not_Valid"]);
    assert!(err.contains("invalid username"), "{err}");

    let kc = env.path("user.kubeconfig");
    let out = env.ok(&[
        "admin",
        "user",
        "kubeconfig",
        &user,
        "--output-file",
        kc.to_str().unwrap(),
    ]);
    assert!(out.contains(&user_ns), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(text.contains("certificate-authority-data"), "{text}");
    assert!(!text.contains("client-certificate"), "{text}");

    let list = env.ok(&["admin", "user", "list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3]
                == [user.as_str(), user_ns.as_str(), "Ready"]),
        "{list}"
    );

    // As the user: their namespace (from the kubeconfig's context) works ...
    let as_user = |kubeconfig: &std::path::Path, args: &[&str]| {
        env.command(args)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .unwrap()
    };
    let o = as_user(&kc, &["create", "probe", "--flavor", &user_flavor]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("created in namespace {user_ns}")));
    let o = as_user(&kc, &["list", "-o", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["items"][0]["metadata"]["name"], "probe");
    let o = as_user(&kc, &["flavors"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // ... and any other namespace is refused.
    let o = as_user(&kc, &["-n", &ns.name, "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
    let o = as_user(
        &kc,
        &["-n", &ns.name, "create", "x", "--flavor", &user_flavor],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));

    // The exec-plugin form refreshes its token through devctl.
    let kc_exec = env.path("exec.kubeconfig");
    env.ok(&[
        "admin",
        "user",
        "kubeconfig",
        &user,
        "--exec",
        "--output-file",
        kc_exec.to_str().unwrap(),
    ]);
    let o = as_user(&kc_exec, &["describe", "probe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Name:"), "{}", stdout(&o));
    let o = as_user(&kc_exec, &["-n", &ns.name, "list"]);
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));

    let out = env.ok(&["admin", "user", "delete", &user]);
    assert!(out.contains("deleted"), "{out}");
    let err = env.fails(&["admin", "user", "kubeconfig", "nobody-here"]);
    assert!(err.contains("user nobody-here not found"), "{err}");
}

#[test]
fn config_init_show_set() {
    let env = Env::new();
    let ssh = env.home().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(ssh.join("id_ed25519"), "").unwrap();
    std::fs::write(ssh.join("id_ed25519.pub"), "").unwrap();
    let out = env.ok(&["config", "init"]);
    assert!(out.contains("Wrote"), "{out}");
    let err = env.fails(&["config", "init"]);
    assert!(err.contains("--force"), "{err}");
    env.ok(&["config", "set", "defaultFlavor", "gpu-small"]);
    env.ok(&["config", "set", "sshKey", "~/.ssh/id_ed25519"]);
    let out = env.ok(&["config", "show"]);
    assert!(out.contains("defaultFlavor: gpu-small"), "{out}");
    assert!(
        out.contains(&format!("sshKey: {}", ssh.join("id_ed25519").display())),
        "{out}"
    );
    let err = env.fails(&["config", "set", "forwardAgent", "maybe"]);
    assert!(err.contains("true or false"), "{err}");
    // A broken file is reported, and `version` still works.
    std::fs::write(env.config_file(), "defaultFlavr: x\n").unwrap();
    let err = env.fails(&["config", "show"]);
    assert!(err.contains("unknown field"), "{err}");
    assert!(env.ok(&["version"]).starts_with("devctl "));
    // Completion scripts.
    for shell in ["bash", "zsh", "fish"] {
        let out = env.ok(&["completion", shell]);
        assert!(out.contains("devctl"), "{shell}");
        assert!(out.contains("ssh-config"), "{shell}");
    }
}
