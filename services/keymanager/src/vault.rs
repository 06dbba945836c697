//! The embedded key vault: one file per key under `<data-dir>/keys/`, holding the PKCS#8
//! private key sealed under the KEK, bound (AEAD associated data) to its kid and algorithm
//! so that a file renamed or swapped for another key does not open.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use signet_core::Algorithm;
use signet_jose::SigningKey;

use crate::kek::{Kek, Sealed};
use crate::KeyError;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kid: String,
    alg: Algorithm,
    nonce: String,
    sealed_pkcs8: String,
}

#[derive(Debug, Clone)]
pub struct FileVault {
    dir: PathBuf,
}

fn aad(kid: &str, alg: Algorithm) -> Vec<u8> {
    format!("signet-key:{alg}:{kid}").into_bytes()
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

    /// Seals and stores a key durably (temp file, fsync, rename, fsync the directory).
    pub fn put(&self, kek: &Kek, key: &SigningKey) -> Result<(), KeyError> {
        let sealed = kek.seal(key.pkcs8_der(), &aad(key.kid(), key.alg()))?;
        let file = KeyFile {
            kid: key.kid().to_owned(),
            alg: key.alg(),
            nonce: STANDARD.encode(sealed.nonce),
            sealed_pkcs8: STANDARD.encode(&sealed.ciphertext),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|_| KeyError::Crypto("encode"))?;
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

    /// Loads and unseals one key.
    pub fn get(
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
        let bad = |reason: &str| KeyError::BadKeyFile {
            kid: kid.to_owned(),
            reason: reason.to_owned(),
        };
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|_| bad("not a key file"))?;
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
        Ok(Some(SigningKey::from_pkcs8(kid, alg, &pkcs8)?))
    }
}
