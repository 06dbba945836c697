//! Key vaults: where the private halves of signing keys live, each sealed under the KEK
//! (AES-256-GCM) and bound (AEAD associated data) to its kid and algorithm, so that an entry
//! renamed or swapped for another key does not open.
//!
//! Two backends store the same sealed JSON document per kid:
//! - [`FileVault`]: one file per key under `<data-dir>/keys/` (embedded mode);
//! - [`KvVault`]: one entry per key in a JetStream KV bucket (cluster mode), so every key
//!   manager of the cluster reads the keys any of them generated.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use signet_core::Algorithm;
use signet_jose::SigningKey;

use crate::kek::{Kek, Sealed};
use crate::KeyError;

pub mod kv;

pub use kv::{KvVault, KvVaultConfig};

/// Sealed storage for private signing keys.
#[async_trait]
pub trait KeyVault: Send + Sync {
    /// Seals `key` under `kek` and stores it durably (acknowledged only once it is safe).
    async fn put(&self, kek: &Kek, key: &SigningKey) -> Result<(), KeyError>;

    /// Loads and unseals one key; `None` when the vault has no entry for `kid`.
    async fn get(
        &self,
        kek: &Kek,
        kid: &str,
        alg: Algorithm,
    ) -> Result<Option<SigningKey>, KeyError>;
}

/// The stored document of one key (a file of [`FileVault`], an entry of [`KvVault`]).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kid: String,
    alg: Algorithm,
    nonce: String,
    sealed_pkcs8: String,
}

fn aad(kid: &str, alg: Algorithm) -> Vec<u8> {
    format!("signet-key:{alg}:{kid}").into_bytes()
}

/// Seals `key` into its stored JSON document.
pub(crate) fn encode_key(kek: &Kek, key: &SigningKey) -> Result<Vec<u8>, KeyError> {
    let sealed = kek.seal(key.pkcs8_der(), &aad(key.kid(), key.alg()))?;
    let file = KeyFile {
        kid: key.kid().to_owned(),
        alg: key.alg(),
        nonce: STANDARD.encode(sealed.nonce),
        sealed_pkcs8: STANDARD.encode(&sealed.ciphertext),
    };
    serde_json::to_vec_pretty(&file).map_err(|_| KeyError::Crypto("encode"))
}

/// Opens a stored JSON document of the key `kid` / `alg`.
pub(crate) fn decode_key(
    kek: &Kek,
    kid: &str,
    alg: Algorithm,
    bytes: &[u8],
) -> Result<SigningKey, KeyError> {
    let bad = |reason: &str| KeyError::BadKeyFile {
        kid: kid.to_owned(),
        reason: reason.to_owned(),
    };
    let file: KeyFile = serde_json::from_slice(bytes).map_err(|_| bad("not a key file"))?;
    if file.kid != kid || file.alg != alg {
        return Err(bad("the file belongs to another key"));
    }
    let nonce: [u8; 12] = STANDARD
        .decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("bad nonce"))?;
    let ciphertext = STANDARD
        .decode(&file.sealed_pkcs8)
        .map_err(|_| bad("bad ciphertext encoding"))?;
    let pkcs8 = kek
        .open(&Sealed { nonce, ciphertext }, &aad(kid, alg))
        .ok_or_else(|| KeyError::Unseal {
            kid: kid.to_owned(),
        })?;
    Ok(SigningKey::from_pkcs8(kid, alg, &pkcs8)?)
}

/// The embedded key vault: one file per key, `<dir>/<kid>.json`, mode 0600.
#[derive(Debug, Clone)]
pub struct FileVault {
    dir: PathBuf,
}

impl FileVault {
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        std::fs::create_dir_all(dir)?;
        Ok(FileVault {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.json"))
    }
}

#[async_trait]
impl KeyVault for FileVault {
    /// Seals and stores a key durably (temp file, fsync, rename, fsync the directory).
    /// The files are small and written rarely, so this stays synchronous.
    async fn put(&self, kek: &Kek, key: &SigningKey) -> Result<(), KeyError> {
        let json = encode_key(kek, key)?;
        let path = self.path(key.kid());
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    async fn get(
        &self,
        kek: &Kek,
        kid: &str,
        alg: Algorithm,
    ) -> Result<Option<SigningKey>, KeyError> {
        let bytes = match std::fs::read(self.path(kid)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        decode_key(kek, kid, alg, &bytes).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_jose::generate_pkcs8;

    fn key(alg: Algorithm, kid: &str) -> SigningKey {
        SigningKey::from_pkcs8(kid, alg, &generate_pkcs8(alg).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn file_vault_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let vault = FileVault::open(dir.path()).unwrap();
        let kek = Kek::from_bytes(&[1u8; 32]).unwrap();
        let k = key(Algorithm::ES256, "es256-a");
        vault.put(&kek, &k).await.unwrap();
        let back = vault
            .get(&kek, "es256-a", Algorithm::ES256)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.public_jwk(), k.public_jwk());
        assert!(vault
            .get(&kek, "missing", Algorithm::ES256)
            .await
            .unwrap()
            .is_none());
        // The file format: kid, alg, nonce, sealed_pkcs8 (base64), no plaintext key.
        let text = std::fs::read_to_string(dir.path().join("es256-a.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut fields: Vec<&str> = doc
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.as_str())
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["alg", "kid", "nonce", "sealed_pkcs8"]);
        // Another key's file renamed into place does not open as this key.
        std::fs::copy(
            dir.path().join("es256-a.json"),
            dir.path().join("es256-b.json"),
        )
        .unwrap();
        let err = vault
            .get(&kek, "es256-b", Algorithm::ES256)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to another key"), "{err}");
        let other = Kek::from_bytes(&[2u8; 32]).unwrap();
        let err = vault
            .get(&other, "es256-a", Algorithm::ES256)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEK does not open"), "{err}");
    }
}
