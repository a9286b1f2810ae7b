//! The installed callback's credential: each system's token is an HMAC-SHA256 of its name
//! under a secret kept in the state directory (`callback.key`, mode 0600, generated once).
//! The token is rendered into that system's kickstart (the callback URL's `?token=`), so only
//! whoever received the kickstart can turn the system's netboot off. The installer's address
//! may differ from the system's, so the token, not the peer address, is the proof.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The secret's file name in the state directory.
pub const KEY_FILE: &str = "callback.key";

/// What the HMAC covers besides the system name, so the key signs nothing else by accident.
const DOMAIN: &[u8] = b"opsflow kickstart installed callback\0";

/// The callback secret.
pub struct CallbackKey {
    key: hmac::Key,
    /// Where it is kept; `None` for a key made up for this run (the state directory was not
    /// writable): tokens rendered with it are not accepted by a server.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for CallbackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn random_secret() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
    Ok(b)
}

impl CallbackKey {
    /// A key from raw secret bytes (tests, and the file's content).
    pub fn from_secret(secret: &[u8], path: Option<PathBuf>) -> CallbackKey {
        CallbackKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            path,
        }
    }

    /// A key that lives only in this process.
    pub fn ephemeral() -> anyhow::Result<CallbackKey> {
        Ok(CallbackKey::from_secret(&random_secret()?, None))
    }

    /// Reads `DIR/callback.key`, creating it (0600, 32 random bytes as hex) when missing. Two
    /// processes creating it at once agree on one: the file appears by `link(2)`, which never
    /// replaces. A key readable by group or others is refused.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<CallbackKey> {
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            create(dir, &path)?;
        }
        let meta = std::fs::metadata(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is mode {mode:o}: the callback secret must be readable by its owner only; run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let secret = unhex(text.trim()).filter(|s| s.len() >= 16).ok_or_else(|| {
            anyhow::anyhow!(
                "{} does not hold a hex secret of at least 16 bytes; remove it and a new one is made (tokens in kickstarts already served stop working)",
                path.display()
            )
        })?;
        Ok(CallbackKey::from_secret(&secret, Some(path)))
    }

    /// Where the key is kept (`None`: this run only).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The token of `system`: 64 hex digits.
    pub fn token(&self, system: &str) -> String {
        hex(hmac::sign(&self.key, &message(system)).as_ref())
    }

    /// Whether `token` is `system`'s, compared in constant time.
    pub fn verify(&self, system: &str, token: &str) -> bool {
        match unhex(token) {
            Some(tag) => hmac::verify(&self.key, &message(system), &tag).is_ok(),
            None => false,
        }
    }
}

fn message(system: &str) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(system.as_bytes());
    m
}

fn create(dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the state directory {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{KEY_FILE}.tmp.{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let secret = random_secret().map_err(std::io::Error::other)?;
        writeln!(f, "{}", hex(&secret))?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    res.map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_per_system_and_verified() {
        let k = CallbackKey::from_secret(b"0123456789abcdef0123456789abcdef", None);
        let t = k.token("lb1");
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(k.verify("lb1", &t));
        assert!(!k.verify("lb2", &t));
        assert!(!k.verify("lb1", &t[..62]));
        assert!(!k.verify("lb1", ""));
        assert!(!k.verify("lb1", "zz"));
        let other = CallbackKey::from_secret(b"another secret, another site....", None);
        assert!(!other.verify("lb1", &t));
    }

    #[test]
    fn the_key_file_is_made_once_private_and_refused_when_readable() {
        let dir = std::env::temp_dir().join(format!("ks-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = CallbackKey::load_or_create(&dir).unwrap();
        let p = dir.join(KEY_FILE);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = CallbackKey::load_or_create(&dir).unwrap();
        assert_eq!(a.token("web1"), b.token("web1"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = CallbackKey::load_or_create(&dir).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains(KEY_FILE), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "short\n").unwrap();
        let e = CallbackKey::load_or_create(&dir).unwrap_err().to_string();
        assert!(e.contains("hex secret"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
