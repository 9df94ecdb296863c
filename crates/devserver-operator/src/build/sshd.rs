//! The SSH server the operator injects into every DevServer pod, as pure
//! builders: its configuration files, its command and the idle check.
//!
//! The user's image needs no SSH server. The SSH server image's init
//! container copies a relocatable OpenSSH bundle (see
//! `images/devserver-sshd/assemble-bundle.sh`) into an emptyDir at
//! [`SshLayout::bundle_dir`]:
//!
//! ```text
//! devserver/bin/sshd                  Debian's sshd
//! devserver/bin/cat                   for the idle check
//! devserver/lib/ld-linux-x86-64.so.2  the dynamic loader
//! devserver/lib/*.so*                 sshd's libraries and libnss_wrapper.so
//! ```
//!
//! The user's container runs [`sshd_command`]: the bundle's own loader
//! starts the bundle's sshd, so the image's libc (glibc, musl or none) does
//! not matter. sshd runs as the non-root user `dev` (uid 1000) on
//! [`SSH_PORT`], with [`sshd_config`]: public keys only (no passwords, no
//! keyboard-interactive, no PAM), no root login, no setuid helpers (privilege
//! separation needs root, so there is none to use), agent and TCP forwarding,
//! in-process sftp (`internal-sftp`, what scp and VS Code Remote-SSH use).
//! `dev` exists for sshd even when the image's `/etc/passwd` lacks uid 1000:
//! nss_wrapper (preloaded by the loader) reads [`passwd`] and [`group`].
//! Sessions get a clean environment (no `LD_*` or `NSS_WRAPPER_*` leak into
//! them) and the image's own `/bin/sh`.
//!
//! Every path lives under [`SshLayout::root`] (`/` in a pod), so a test can
//! run the exact same configuration in a temporary directory.

use std::path::{Path, PathBuf};

/// Port sshd listens on in the pod (unprivileged: no capability or sysctl
/// needed).
pub const SSH_PORT: u16 = 2222;
/// The login user.
pub const DEV_USER: &str = "dev";
/// uid and gid of [`DEV_USER`].
pub const DEV_UID: u32 = 1000;
/// Login shell: present in nearly every image (sessions can `exec bash`).
pub const LOGIN_SHELL: &str = "/bin/sh";

/// Files of the SSH configuration ConfigMap (mounted at
/// [`SshLayout::config_dir`]).
pub const SSHD_CONFIG_FILE: &str = "sshd_config";
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
pub const PASSWD_FILE: &str = "passwd";
pub const GROUP_FILE: &str = "group";
/// The host private key's file (in [`SshLayout::host_key_dir`]).
pub const HOST_KEY_FILE: &str = super::hostkey::PRIVATE_KEY;

/// Where the SSH server's files are and which port it uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshLayout {
    /// Prefix of every path: `/` in a pod, a temporary directory in tests.
    pub root: PathBuf,
    /// The port sshd listens on.
    pub port: u16,
}

impl Default for SshLayout {
    fn default() -> Self {
        Self::in_pod()
    }
}

impl SshLayout {
    /// The layout of a DevServer pod.
    pub fn in_pod() -> Self {
        SshLayout {
            root: PathBuf::from("/"),
            port: SSH_PORT,
        }
    }

    /// The same layout under `root` (for running the server outside a pod).
    pub fn rooted(root: &Path, port: u16) -> Self {
        SshLayout {
            root: root.to_path_buf(),
            port,
        }
    }

    fn path(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    /// The bundle (emptyDir filled by the init container).
    pub fn bundle_dir(&self) -> String {
        self.path("devserver")
    }
    /// The host-key Secret's mount.
    pub fn host_key_dir(&self) -> String {
        self.path("etc/devserver/host-keys")
    }
    /// The SSH configuration ConfigMap's mount.
    pub fn config_dir(&self) -> String {
        self.path("etc/devserver/ssh")
    }
    /// The home of [`DEV_USER`].
    pub fn home_dir(&self) -> String {
        self.path("home/dev")
    }
    /// A file of the SSH configuration ConfigMap.
    pub fn config_file(&self, file: &str) -> String {
        format!("{}/{file}", self.config_dir())
    }
    fn loader(&self) -> String {
        format!("{}/lib/ld-linux-x86-64.so.2", self.bundle_dir())
    }
    fn lib_dir(&self) -> String {
        format!("{}/lib", self.bundle_dir())
    }
    /// The loader invocation that runs a bundled binary.
    fn run_bundled(&self, bin: &str, preload_nss_wrapper: bool) -> Vec<String> {
        let mut cmd = vec![self.loader(), "--library-path".into(), self.lib_dir()];
        if preload_nss_wrapper {
            cmd.push("--preload".into());
            cmd.push(format!("{}/libnss_wrapper.so", self.lib_dir()));
        }
        cmd.push(format!("{}/bin/{bin}", self.bundle_dir()));
        cmd
    }
}

/// Quotes `KEY=value` for `SetEnv` (sshd splits arguments like a shell:
/// double quotes, with `\"` and `\\` escaped).
fn set_env_arg(key: &str, value: &str) -> String {
    let escaped = format!("{key}={value}")
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The sshd configuration for `layout`. `env` is set in every session
/// (sshd does not pass its own environment on); entries whose key or value
/// holds a control character are left out.
pub fn sshd_config(layout: &SshLayout, env: &[(String, String)]) -> String {
    let mut out = format!(
        "# Generated by devserver-operator.\n\
         Port {port}\n\
         HostKey {host_keys}/{HOST_KEY_FILE}\n\
         PidFile none\n\
         AuthorizedKeysFile {authorized}\n\
         AllowUsers {DEV_USER}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         HostbasedAuthentication no\n\
         GSSAPIAuthentication no\n\
         PermitRootLogin no\n\
         PermitEmptyPasswords no\n\
         PermitUserEnvironment no\n\
         UsePAM no\n\
         StrictModes no\n\
         AllowAgentForwarding yes\n\
         AllowTcpForwarding yes\n\
         AllowStreamLocalForwarding yes\n\
         X11Forwarding no\n\
         PermitTTY yes\n\
         PrintMotd no\n\
         ClientAliveInterval 15\n\
         ClientAliveCountMax 4\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp internal-sftp\n",
        port = layout.port,
        host_keys = layout.host_key_dir(),
        authorized = layout.config_file(AUTHORIZED_KEYS_FILE),
    );
    let vars: Vec<String> = env
        .iter()
        .filter(|(k, v)| {
            !k.is_empty() && !k.contains(char::is_control) && !v.contains(char::is_control)
        })
        .map(|(k, v)| set_env_arg(k, v))
        .collect();
    if !vars.is_empty() {
        out.push_str(&format!("SetEnv {}\n", vars.join(" ")));
    }
    out
}

/// The passwd file nss_wrapper gives sshd: `dev` with its home and shell.
pub fn passwd(layout: &SshLayout) -> String {
    format!(
        "{DEV_USER}:x:{DEV_UID}:{DEV_UID}:DevServer user:{home}:{LOGIN_SHELL}\n",
        home = layout.home_dir()
    )
}

/// The group file nss_wrapper gives sshd.
pub fn group(_layout: &SshLayout) -> String {
    format!("{DEV_USER}:x:{DEV_UID}:\n")
}

/// The user's container command: the bundle's sshd in the foreground,
/// logging to stderr, without re-executing itself (`-r`: a re-exec would go
/// through the image's loader, which may not exist).
pub fn sshd_command(layout: &SshLayout) -> Vec<String> {
    let mut cmd = layout.run_bundled("sshd", true);
    cmd.extend([
        "-D".into(),
        "-e".into(),
        "-r".into(),
        "-f".into(),
        layout.config_file(SSHD_CONFIG_FILE),
    ]);
    cmd
}

/// The environment of the sshd process: where nss_wrapper finds `dev`.
pub fn sshd_env(layout: &SshLayout) -> Vec<(String, String)> {
    vec![
        ("NSS_WRAPPER_PASSWD".into(), layout.config_file(PASSWD_FILE)),
        ("NSS_WRAPPER_GROUP".into(), layout.config_file(GROUP_FILE)),
    ]
}

/// The idle check, run in the pod with `pods/exec`: prints the pod's TCP
/// sockets (read with [`active_sessions`]).
pub fn activity_command(layout: &SshLayout) -> Vec<String> {
    let mut cmd = layout.run_bundled("cat", false);
    cmd.extend(["/proc/net/tcp".into(), "/proc/net/tcp6".into()]);
    cmd
}

/// How many established TCP connections to local port `port` the
/// `/proc/net/tcp` and `/proc/net/tcp6` text lists (state `01`).
pub fn active_sessions(proc_net_tcp: &str, port: u16) -> usize {
    proc_net_tcp
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                return false;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && *state == "01"
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_layout_and_a_rooted_one_differ_only_by_the_prefix() {
        let pod = SshLayout::in_pod();
        assert_eq!(pod.bundle_dir(), "/devserver");
        assert_eq!(pod.home_dir(), "/home/dev");
        assert_eq!(pod.config_file("passwd"), "/etc/devserver/ssh/passwd");
        let t = SshLayout::rooted(Path::new("/tmp/x"), 4022);
        assert_eq!(t.bundle_dir(), "/tmp/x/devserver");
        assert_eq!(t.host_key_dir(), "/tmp/x/etc/devserver/host-keys");
        assert_eq!(
            sshd_command(&pod),
            [
                "/devserver/lib/ld-linux-x86-64.so.2",
                "--library-path",
                "/devserver/lib",
                "--preload",
                "/devserver/lib/libnss_wrapper.so",
                "/devserver/bin/sshd",
                "-D",
                "-e",
                "-r",
                "-f",
                "/etc/devserver/ssh/sshd_config"
            ]
        );
        assert_eq!(
            activity_command(&t)[3..],
            [
                "/tmp/x/devserver/bin/cat",
                "/proc/net/tcp",
                "/proc/net/tcp6"
            ]
        );
        assert_eq!(
            passwd(&pod),
            "dev:x:1000:1000:DevServer user:/home/dev:/bin/sh\n"
        );
    }

    #[test]
    fn the_config_allows_keys_only_and_forwarding() {
        let c = sshd_config(&SshLayout::in_pod(), &[]);
        for line in [
            "Port 2222",
            "HostKey /etc/devserver/host-keys/ssh_host_ed25519_key",
            "AuthorizedKeysFile /etc/devserver/ssh/authorized_keys",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            "AllowAgentForwarding yes",
            "AllowTcpForwarding yes",
            "Subsystem sftp internal-sftp",
        ] {
            assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
        }
        assert!(!c.contains("SetEnv"));
    }

    #[test]
    fn session_variables_are_quoted_and_control_characters_dropped() {
        let env = [
            ("WORLD_SIZE".to_string(), "2".to_string()),
            ("NCCL_X".to_string(), "a \"b\" c\\".to_string()),
            ("BAD".to_string(), "line\nbreak".to_string()),
        ];
        let c = sshd_config(&SshLayout::in_pod(), &env);
        let set = c.lines().find(|l| l.starts_with("SetEnv ")).unwrap();
        assert_eq!(set, r#"SetEnv "WORLD_SIZE=2" "NCCL_X=a \"b\" c\\""#);
    }

    #[test]
    fn only_established_connections_to_the_ssh_port_count() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1\n\
   1: 0100007F:08AE 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
   2: 0100007F:D431 0100007F:08AE 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
   3: 0100007F:08AE 0100007F:D432 06 00000000:00000000 00:00000000 00000000  1000        0 4 1\n\
  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000001000000:08AE 00000000000000000000000001000000:9C40 01 0\n";
        assert_eq!(active_sessions(tcp, 2222), 2);
        assert_eq!(active_sessions(tcp, 22), 0);
        assert_eq!(active_sessions("", 2222), 0);
    }
}
