//! Keys and encryption. Every encrypted thing in a repository is a standard Fernet token
//! stored as raw bytes (the base64url decoding of the usual text token). We build and
//! open tokens here with the RustCrypto primitives instead of going through the `fernet`
//! crate: that avoids a base64 round trip of every blob, and the `fernet` crate refuses
//! tokens stamped in the future, which would break a restore on a host whose clock is
//! behind. A unit test checks both directions against the `fernet` crate.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod lanes;

pub(crate) use lanes::LANES;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, InnerIvInit, KeyInit};
use aes::Aes128;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::{Error, IoContext, Result};

type HmacSha256 = Hmac<Sha256>;

/// Fernet token version byte.
const VERSION: u8 = 0x80;
/// Version, timestamp, IV.
const HEADER_LEN: usize = 1 + 8 + 16;
/// HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Bytes a token adds to its plaintext at most: header, a whole block of padding, tag.
pub(crate) const TOKEN_OVERHEAD: usize = HEADER_LEN + 16 + TAG_LEN;

/// One Fernet key: 16 bytes signing key, 16 bytes encryption key.
#[derive(Clone)]
pub(crate) struct FernetKey {
    /// HMAC already keyed with the signing key: keying hashes two blocks, and for the
    /// small blobs most backups are made of that was a tenth of the MAC's work.
    mac: HmacSha256,
    /// AES-128 with the encryption key, its round keys expanded once.
    cipher: Aes128,
}

impl FernetKey {
    fn from_bytes(raw: &[u8]) -> Option<Self> {
        if raw.len() != 32 {
            return None;
        }
        let cipher = Aes128::new_from_slice(&raw[16..]).ok()?;
        // HMAC accepts keys of any length.
        let mac = <HmacSha256 as Mac>::new_from_slice(&raw[..16]).ok()?;
        Some(FernetKey { mac, cipher })
    }

    /// Appends the token for `data` to `out` with its body still plaintext (padded)
    /// and its tag zeros: [`FernetKey::finish`] encrypts and signs it.
    fn begin(&self, data: &[u8], out: &mut Vec<u8>) {
        // The thread's CSPRNG (ChaCha, seeded and reseeded from the OS): an IV needs to
        // be unpredictable, and a getrandom call per blob was a system call per file.
        let mut iv = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut iv);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // PKCS#7: 1 to 16 bytes, each the count.
        let pad = 16 - data.len() % 16;
        out.reserve(HEADER_LEN + data.len() + pad + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&now.to_be_bytes());
        out.extend_from_slice(&iv);
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(pad as u8, pad));
        out.extend_from_slice(&[0u8; TAG_LEN]);
    }

    /// Encrypts and signs tokens laid out by [`FernetKey::begin`], their bodies side by
    /// side (see [`lanes`]).
    fn finish(&self, tokens: &mut [&mut [u8]]) {
        lanes::encrypt(
            &self.cipher,
            tokens.iter_mut().filter_map(|token| {
                let body_end = token.len().checked_sub(TAG_LEN)?;
                let (head, rest) = token[..body_end].split_at_mut_checked(HEADER_LEN)?;
                let iv: [u8; 16] = head[9..].try_into().ok()?;
                Some((iv, rest))
            }),
        );
        for token in tokens.iter_mut() {
            let Some(body_end) = token.len().checked_sub(TAG_LEN) else {
                continue;
            };
            let (msg, tag) = token.split_at_mut(body_end);
            let mut mac = self.mac.clone();
            mac.update(msg);
            tag.copy_from_slice(&mac.finalize().into_bytes());
        }
    }

    /// Opens a raw Fernet token into `out` (replacing what it held); false if this key
    /// did not make it or it was altered.
    fn decrypt_into(&self, token: &[u8], out: &mut Vec<u8>) -> bool {
        if token.len() < HEADER_LEN + 16 + TAG_LEN || token[0] != VERSION {
            return false;
        }
        let (msg, tag) = token.split_at(token.len() - TAG_LEN);
        let mut mac = self.mac.clone();
        mac.update(msg);
        if mac.verify_slice(tag).is_err() {
            return false;
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&msg[9..HEADER_LEN]);
        out.clear();
        out.extend_from_slice(&msg[HEADER_LEN..]);
        let dec = cbc::Decryptor::<Aes128>::inner_iv_init(self.cipher.clone(), &iv.into());
        let Ok(plain) = dec.decrypt_padded_mut::<Pkcs7>(out) else {
            return false;
        };
        let len = plain.len();
        out.truncate(len);
        true
    }
}

/// The configured keys: the first encrypts new data, any of them decrypts.
///
/// Key material is never printed: `Debug` shows only how many keys there are.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<FernetKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({} keys)", self.keys.len())
    }
}

impl KeySet {
    /// Loads Fernet key files (urlsafe base64 of 32 bytes, a trailing newline allowed).
    pub fn load(paths: &[PathBuf]) -> Result<KeySet> {
        if paths.is_empty() {
            return Err(Error::NoKeys);
        }
        let mut keys = Vec::with_capacity(paths.len());
        for path in paths {
            let text = read_private(path)?;
            let key = KeySet::parse(&text).ok_or_else(|| Error::BadKey { path: path.clone() })?;
            keys.push(key);
        }
        Ok(KeySet { keys })
    }

    /// Builds a key set from key texts (as in key files); `None` if one is malformed.
    pub fn from_strings(texts: &[&str]) -> Option<KeySet> {
        let keys = texts
            .iter()
            .map(|t| KeySet::parse(t))
            .collect::<Option<Vec<_>>>()?;
        (!keys.is_empty()).then_some(KeySet { keys })
    }

    fn parse(text: &str) -> Option<FernetKey> {
        let text = text.trim_end_matches(['\n', '\r']).trim_end_matches('=');
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        FernetKey::from_bytes(&raw)
    }

    /// Encrypts with the first key into a raw Fernet token.
    pub(crate) fn encrypt(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.begin_token(data, &mut out);
        self.finish_tokens(&mut [&mut out[..]]);
        out
    }

    /// Appends a token for `data` that is not encrypted or signed yet: many of them are
    /// made at once by [`KeySet::finish_tokens`], which must be called on every one
    /// before it is stored.
    pub(crate) fn begin_token(&self, data: &[u8], out: &mut Vec<u8>) {
        self.keys[0].begin(data, out);
    }

    /// Encrypts and signs tokens begun by [`KeySet::begin_token`], each slice one whole
    /// token.
    pub(crate) fn finish_tokens(&self, tokens: &mut [&mut [u8]]) {
        self.keys[0].finish(tokens);
    }

    /// Decrypts a raw Fernet token with whichever key made it.
    pub(crate) fn decrypt(&self, token: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.decrypt_into(token, &mut out).then_some(out)
    }

    /// Decrypts a raw Fernet token into `out` (replacing what it held, so a reader of
    /// many blobs reuses one buffer); false if no key made it or it was altered.
    pub(crate) fn decrypt_into(&self, token: &[u8], out: &mut Vec<u8>) -> bool {
        self.keys.iter().any(|k| k.decrypt_into(token, out))
    }
}

/// Reads a key file, refusing one that anyone but its owner may read or change. The
/// mode is taken from the open file, so it is the mode of what is read.
fn read_private(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).ctx("read key file", path)?;
    let mode = file
        .metadata()
        .ctx("read key file", path)?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ctx("read key file", path)?;
    Ok(text)
}

/// Creates a new random Fernet key file at `out` with mode 0600, in the format of
/// Python's `Fernet.generate_key()` plus a newline. Refuses to overwrite a file.
pub fn generate_key_file(out: &Path) -> Result<()> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let text = base64::engine::general_purpose::URL_SAFE.encode(raw);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::KeyFileExists {
                    path: out.to_path_buf(),
                }
            } else {
                Error::io("create key file", out, e)
            }
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .ctx("write key file", out)?;
    Ok(())
}

/// Base64url (with padding) of a raw token: the standard text form of a Fernet token.
pub fn token_to_text(raw: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_fernet_crate() {
        let key_text = fernet::Fernet::generate_key();
        let other = fernet::Fernet::new(&key_text).unwrap();
        let ours = KeySet::from_strings(&[&key_text]).unwrap();
        for len in [0usize, 1, 15, 16, 17, 1000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let raw = ours.encrypt(&data);
            assert_eq!(other.decrypt(&token_to_text(&raw)).unwrap(), data);
            let theirs = other.encrypt(&data);
            let raw_theirs = base64::engine::general_purpose::URL_SAFE
                .decode(theirs)
                .unwrap();
            assert_eq!(ours.decrypt(&raw_theirs).unwrap(), data);
        }
    }

    /// Tokens made together (their bodies encrypted side by side) are each a standard
    /// token that the `fernet` crate opens.
    #[test]
    fn tokens_made_together_each_open_with_the_fernet_crate() {
        let key_text = fernet::Fernet::generate_key();
        let other = fernet::Fernet::new(&key_text).unwrap();
        let ours = KeySet::from_strings(&[&key_text]).unwrap();
        let data: Vec<Vec<u8>> = [0usize, 1, 15, 16, 17, 5000, 31, 100_000, 2, 64, 3]
            .iter()
            .map(|&len| (0..len).map(|i| (i * 7) as u8).collect())
            .collect();
        let mut tokens = crate::pack::Blobs::with_capacity(0);
        for d in &data {
            tokens.push_with(|buf| ours.begin_token(d, buf));
        }
        ours.finish_tokens(&mut tokens.bytes_each_mut());
        for ((_, token), d) in tokens.iter().zip(&data) {
            assert_eq!(&other.decrypt(&token_to_text(token)).unwrap(), d);
        }
    }

    /// A restore host whose clock is behind the host that wrote the repository sees
    /// tokens stamped in the future. The fernet crate's `decrypt` refuses those (its
    /// clock-skew check), which is why Fernet is done by hand here: drd ignores the
    /// timestamp, as its tokens carry no time-to-live.
    #[test]
    fn a_token_stamped_in_the_future_decrypts() {
        let key_text = fernet::Fernet::generate_key();
        let ours = KeySet::from_strings(&[&key_text]).unwrap();
        // Restamp one of our tokens a day ahead and sign it again, as a writer whose
        // clock is a day ahead would have.
        let mut token = ours.encrypt(b"written tomorrow");
        let stamp = u64::from_be_bytes(token[1..9].try_into().unwrap()) + 86_400;
        token[1..9].copy_from_slice(&stamp.to_be_bytes());
        let body = token.len() - TAG_LEN;
        let mut mac = ours.keys[0].mac.clone();
        mac.update(&token[..body]);
        token[body..].copy_from_slice(&mac.finalize().into_bytes());
        let theirs = fernet::Fernet::new(&key_text).unwrap();
        assert!(
            theirs.decrypt(&token_to_text(&token)).is_err(),
            "the fernet crate refuses a token from the future (its clock-skew check): that is why drd opens tokens itself"
        );
        assert_eq!(ours.decrypt(&token).unwrap(), b"written tomorrow");
    }

    #[test]
    fn rotation_decrypts_with_any_key_and_rejects_tampering() {
        let a = fernet::Fernet::generate_key();
        let b = fernet::Fernet::generate_key();
        let old = KeySet::from_strings(&[&a]).unwrap();
        let rotated = KeySet::from_strings(&[&b, &a]).unwrap();
        let mut tok = old.encrypt(b"hello");
        assert_eq!(rotated.decrypt(&tok).unwrap(), b"hello");
        assert!(KeySet::from_strings(&[&b]).unwrap().decrypt(&tok).is_none());
        let n = tok.len();
        tok[n / 2] ^= 1;
        assert!(rotated.decrypt(&tok).is_none());
    }

    #[test]
    fn key_file_is_0600_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        generate_key_file(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(fernet::Fernet::new(text.trim_end()).is_some());
        assert!(KeySet::load(std::slice::from_ref(&p)).is_ok());
        assert!(matches!(
            generate_key_file(&p),
            Err(Error::KeyFileExists { .. })
        ));
        assert!(!format!("{:?}", KeySet::load(&[p]).unwrap()).contains(text.trim_end()));
    }

    #[test]
    fn a_key_file_others_may_read_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        generate_key_file(&p).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = KeySet::load(std::slice::from_ref(&p)).unwrap_err();
            assert!(matches!(err, Error::KeyFileMode { mode: m, .. } if m == mode));
            let text = err.to_string();
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", p.display())),
                "{text}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(KeySet::load(std::slice::from_ref(&p)).is_ok());
    }
}
