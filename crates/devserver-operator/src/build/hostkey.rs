//! SSH host keys in OpenSSH format. Generation ([`generate_ed25519_seed`])
//! is the only impure part; encoding is a pure function of the seed, so the
//! Secret built from it is deterministic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Key of the private host key in the host-key Secret.
pub const PRIVATE_KEY: &str = "ssh_host_ed25519_key";
/// Key of the public host key in the host-key Secret.
pub const PUBLIC_KEY: &str = "ssh_host_ed25519_key.pub";

/// An Ed25519 host key pair as OpenSSH files.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` ...
    pub private_pem: String,
    /// `ssh-ed25519 AAAA... comment`
    pub public_line: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("public_line", &self.public_line)
            .finish_non_exhaustive()
    }
}

/// 32 random bytes from the operating system's generator.
pub fn generate_ed25519_seed() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .expect("the system random generator works");
    seed
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The OpenSSH key pair for `seed`.
pub fn encode_ed25519(seed: &[u8; 32], comment: &str) -> HostKey {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are a seed");
    let public = pair.public_key().as_ref();
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, public);

    let mut private = Vec::new();
    let check = &public[..4];
    private.extend_from_slice(check);
    private.extend_from_slice(check);
    put_string(&mut private, b"ssh-ed25519");
    put_string(&mut private, public);
    let mut secret = seed.to_vec();
    secret.extend_from_slice(public);
    put_string(&mut private, &secret);
    put_string(&mut private, comment.as_bytes());
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }

    let mut file = b"openssh-key-v1\0".to_vec();
    put_string(&mut file, b"none");
    put_string(&mut file, b"none");
    put_string(&mut file, b"");
    file.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut file, &blob);
    put_string(&mut file, &private);

    let b64 = STANDARD.encode(&file);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(70) {
        pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    HostKey {
        private_pem: pem,
        public_line: format!("ssh-ed25519 {} {comment}\n", STANDARD.encode(&blob)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_deterministic_and_well_formed() {
        let k = encode_ed25519(&[7u8; 32], "mydev");
        assert_eq!(k, encode_ed25519(&[7u8; 32], "mydev"));
        assert_ne!(k, encode_ed25519(&[8u8; 32], "mydev"));
        assert!(
            k.public_line
                .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")
        );
        assert!(k.public_line.ends_with(" mydev\n"));
        assert!(
            k.private_pem
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        assert!(!format!("{k:?}").contains("PRIVATE"), "Debug hides the key");
        assert_ne!(generate_ed25519_seed(), generate_ed25519_seed());
    }

    /// OpenSSH itself reads the private key and derives the same public key.
    #[test]
    fn ssh_keygen_reads_the_private_key() {
        assert!(
            std::process::Command::new("ssh-keygen")
                .arg("-?")
                .output()
                .is_ok(),
            "ssh-keygen is missing: install openssh-client (hack/test.sh does)"
        );
        let k = encode_ed25519(&generate_ed25519_seed(), "test");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, &k.private_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8(out.stdout).unwrap();
        let ours: Vec<_> = k.public_line.split_whitespace().take(2).collect();
        let theirs: Vec<_> = derived.split_whitespace().take(2).collect();
        assert_eq!(ours, theirs);
    }
}
