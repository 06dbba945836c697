//! The key-encryption key: 32 random bytes, base64 in a file (or the environment), used with
//! AES-256-GCM to seal private keys at rest. Never written to the log or the vault.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::KeyError;

pub struct Kek {
    key: LessSafeKey,
    /// HMAC-SHA-256 keyed with the KEK, for [`Kek::derive_key`].
    derive: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// A sealed blob: a random 96-bit nonce and the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl Kek {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError::Crypto("KEK must be 32 bytes"))?;
        Ok(Kek {
            key: LessSafeKey::new(unbound),
            derive: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
        })
    }

    /// Reads the KEK from `path` (32 bytes, base64). When the file is absent, creates it
    /// with mode 0600 from fresh random bytes and warns that production keeps it elsewhere.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::KekFile {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = STANDARD
                    .decode(text.trim())
                    .map_err(|_| err("not base64".to_owned()))?;
                if bytes.len() != 32 {
                    return Err(err(format!("holds {} bytes; a KEK is 32", bytes.len())));
                }
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    if let Ok(meta) = std::fs::metadata(path) {
                        if meta.permissions().mode() & 0o077 != 0 {
                            tracing::warn!(path = %path.display(), "KEK file is readable by group or others; chmod 600 it");
                        }
                    }
                }
                Kek::from_bytes(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| KeyError::Crypto("no randomness"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut f = options.open(path).map_err(|e| err(e.to_string()))?;
                f.write_all(STANDARD.encode(bytes).as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                tracing::warn!(
                    path = %path.display(),
                    "created a new key-encryption key beside the data; in production keep the KEK elsewhere (--kek-file or a secret store)"
                );
                Kek::from_bytes(&bytes)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// A 32-byte key for another purpose, named by `label` (HMAC-SHA-256 of the label under
    /// the KEK): one KEK protects several kinds of secret without reusing the key.
    pub fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.derive, label);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Seals `plaintext`; `aad` binds it to its context (e.g. the key id and algorithm).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Crypto("no randomness"))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| KeyError::Crypto("seal failed"))?;
        Ok(Sealed {
            nonce,
            ciphertext: buf,
        })
    }

    /// Opens a sealed blob; `None` when the KEK or `aad` is wrong or the blob was altered.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.ciphertext.clone();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refusals() {
        let kek = Kek::from_bytes(&[7u8; 32]).unwrap();
        let sealed = kek.seal(b"private", b"kid-1").unwrap();
        assert_eq!(kek.open(&sealed, b"kid-1").unwrap(), b"private");
        assert!(kek.open(&sealed, b"kid-2").is_none(), "aad binds the blob");
        let other = Kek::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open(&sealed, b"kid-1").is_none());
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert!(kek.open(&altered, b"kid-1").is_none());
    }

    #[test]
    fn kek_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let a = Kek::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let b = Kek::load_or_create(&path).unwrap();
        let sealed = a.seal(b"x", b"").unwrap();
        assert_eq!(b.open(&sealed, b"").unwrap(), b"x");
        std::fs::write(&path, "c2hvcnQ=").unwrap();
        let e = Kek::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes"), "{e}");
        std::fs::write(&path, "!!!").unwrap();
        assert!(Kek::load_or_create(&path)
            .unwrap_err()
            .to_string()
            .contains("not base64"));
    }
}
