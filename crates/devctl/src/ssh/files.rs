//! devctl's SSH files, as pure text transformations: the per-server `Host`
//! entries of devctl's ssh config, the pinned host keys of its known_hosts,
//! and the `Include` line in the user's `~/.ssh/config`.

use std::path::Path;

/// The host alias of DevServer `name` in `namespace`.
pub fn alias(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.devserver")
}

/// What goes into a server's `Host` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub alias: &'a str,
    /// The tunnel command (already shell-quoted).
    pub proxy_command: String,
    pub known_hosts: &'a Path,
    pub identity_file: Option<&'a Path>,
    pub forward_agent: bool,
}

/// Quotes `s` for `/bin/sh` (ssh runs ProxyCommand through the shell).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Quotes a path for ssh_config (double quotes when it has spaces).
fn config_path(p: &Path) -> String {
    let s = p.display().to_string().replace('%', "%%");
    if s.contains(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s
    }
}

fn begin(alias: &str) -> String {
    format!("# devctl begin {alias}")
}

fn end(alias: &str) -> String {
    format!("# devctl end {alias}")
}

/// The `Host` entry: the tunnel, the pinned key and strict checking (never
/// `StrictHostKeyChecking no`).
pub fn entry(e: &Entry) -> String {
    let mut out = format!(
        "{}\nHost {a}\n  HostName {a}\n  User dev\n  ProxyCommand {}\n  HostKeyAlias {a}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  CheckHostIP no\n  UpdateHostKeys no\n  ForwardAgent {}\n  ServerAliveInterval 30\n",
        begin(e.alias),
        e.proxy_command.replace('%', "%%"),
        config_path(e.known_hosts),
        if e.forward_agent { "yes" } else { "no" },
        a = e.alias,
    );
    if let Some(id) = e.identity_file {
        out.push_str(&format!(
            "  IdentityFile {}\n  IdentitiesOnly yes\n",
            config_path(id)
        ));
    }
    out.push_str(&end(e.alias));
    out.push('\n');
    out
}

/// `config` with the entry of `alias` replaced by `new_entry` (or added).
pub fn upsert_entry(config: &str, alias: &str, new_entry: &str) -> String {
    let (b, e) = (begin(alias), end(alias));
    let mut out = String::new();
    let mut skipping = false;
    let mut replaced = false;
    for line in config.lines() {
        if line == b {
            skipping = true;
            if !replaced {
                out.push_str(new_entry);
                replaced = true;
            }
            continue;
        }
        if skipping {
            if line == e {
                skipping = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(new_entry);
    }
    out
}

/// `config` without the entry of `alias` (and the blank line that
/// separated it from its neighbour).
pub fn remove_entry(config: &str, alias: &str) -> String {
    let (b, e) = (begin(alias), end(alias));
    let mut kept: Vec<&str> = Vec::new();
    let mut lines = config.lines();
    while let Some(line) = lines.next() {
        if line != b {
            kept.push(line);
            continue;
        }
        for l in lines.by_ref() {
            if l == e {
                break;
            }
        }
        if kept.last() == Some(&"") {
            kept.pop();
        } else if kept.is_empty() {
            // The first entry: the separator follows it.
            let rest: Vec<&str> = lines.by_ref().collect();
            let skip = usize::from(rest.first() == Some(&""));
            kept.extend(&rest[skip..]);
        }
    }
    kept.iter().map(|l| format!("{l}\n")).collect()
}

/// `known_hosts` without the key of `alias`.
pub fn unpin_host_key(known_hosts: &str, alias: &str) -> String {
    known_hosts
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(alias))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `known_hosts` with `alias` pinned to exactly `public_key`
/// (`ssh-ed25519 AAAA... [comment]`; the comment is dropped).
pub fn pin_host_key(known_hosts: &str, alias: &str, public_key: &str) -> anyhow::Result<String> {
    let mut parts = public_key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        anyhow::bail!("the host key {public_key:?} is not an OpenSSH public key");
    };
    let mut out: String = known_hosts
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(alias))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{alias} {kind} {blob}\n"));
    Ok(out)
}

/// The `Include` line for devctl's ssh config.
pub fn include_line(ssh_config: &Path) -> String {
    format!("Include {}", config_path(ssh_config))
}

/// The user's `~/.ssh/config` with the `Include` first (ssh applies the
/// first value it finds, and an Include after a `Host` line would belong to
/// that host); `None` when it is already there.
pub fn add_include(user_config: &str, ssh_config: &Path) -> Option<String> {
    let line = include_line(ssh_config);
    if user_config.lines().any(|l| l.trim() == line) {
        return None;
    }
    Some(format!(
        "# Added by devctl (DevServer hosts):\n{line}\n\n{user_config}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_pin_the_key_and_tunnel() {
        let kh = Path::new("/h/.config/devctl/ssh/known_hosts");
        let id = Path::new("/h/my keys/id_ed25519");
        let e = entry(&Entry {
            alias: "mydev.dev-alice.devserver",
            proxy_command: "/bin/devctl -n dev-alice ssh-proxy mydev".into(),
            known_hosts: kh,
            identity_file: Some(id),
            forward_agent: false,
        });
        assert!(e.starts_with(
            "# devctl begin mydev.dev-alice.devserver\nHost mydev.dev-alice.devserver\n"
        ));
        assert!(e.contains("  ProxyCommand /bin/devctl -n dev-alice ssh-proxy mydev\n"));
        assert!(e.contains("  StrictHostKeyChecking yes\n"));
        assert!(!e.contains("StrictHostKeyChecking no"));
        assert!(e.contains("  UserKnownHostsFile /h/.config/devctl/ssh/known_hosts\n"));
        assert!(e.contains("  IdentityFile \"/h/my keys/id_ed25519\"\n"));
        assert!(e.contains("  ForwardAgent no\n"));
    }

    #[test]
    fn entries_are_replaced_in_place() {
        let a = entry(&Entry {
            alias: "a.ns.devserver",
            proxy_command: "p1".into(),
            known_hosts: Path::new("/k"),
            identity_file: None,
            forward_agent: false,
        });
        let b = entry(&Entry {
            alias: "b.ns.devserver",
            proxy_command: "p2".into(),
            known_hosts: Path::new("/k"),
            identity_file: None,
            forward_agent: true,
        });
        let both = upsert_entry(
            &upsert_entry("", "a.ns.devserver", &a),
            "b.ns.devserver",
            &b,
        );
        assert_eq!(both, format!("{a}\n{b}"));
        let a2 = a.replace("p1", "p3");
        let updated = upsert_entry(&both, "a.ns.devserver", &a2);
        assert_eq!(updated, format!("{a2}\n{b}"));
        assert_eq!(upsert_entry(&updated, "a.ns.devserver", &a2), updated);
        assert_eq!(remove_entry(&updated, "a.ns.devserver"), b);
        assert_eq!(remove_entry(&updated, "b.ns.devserver"), a2);
        assert_eq!(remove_entry(&b, "b.ns.devserver"), "");
        assert_eq!(remove_entry(&b, "zzz"), b);
    }

    #[test]
    fn host_keys_are_pinned_once() {
        let kh = pin_host_key(
            "other ssh-rsa AAA\n",
            "a.ns.devserver",
            "ssh-ed25519 KEY1 comment\n",
        )
        .unwrap();
        assert_eq!(kh, "other ssh-rsa AAA\na.ns.devserver ssh-ed25519 KEY1\n");
        let kh = pin_host_key(&kh, "a.ns.devserver", "ssh-ed25519 KEY2").unwrap();
        assert_eq!(kh, "other ssh-rsa AAA\na.ns.devserver ssh-ed25519 KEY2\n");
        assert!(pin_host_key("", "a", "garbage").is_err());
        assert_eq!(unpin_host_key(&kh, "a.ns.devserver"), "other ssh-rsa AAA\n");
    }

    #[test]
    fn the_include_goes_first_once() {
        let p = Path::new("/h/.config/devctl/ssh/config");
        let c = add_include("Host *\n  ServerAliveInterval 5\n", p).unwrap();
        assert!(c.starts_with("# Added by devctl (DevServer hosts):\nInclude /h/.config/devctl/ssh/config\n\nHost *\n"), "{c}");
        assert_eq!(add_include(&c, p), None);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/usr/bin/devctl"), "/usr/bin/devctl");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
