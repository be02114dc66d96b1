//! The Pusher app's id, key and secret, and the HMAC-SHA256 signatures
//! made with them: channel auth (`key:hex(HMAC(secret, socket_id:channel
//! [:channel_data]))`), checked in constant time.

use hmac::{Hmac, Mac};
use lockstep_core::{db::Db, error::CoreResult, identity::tokens::random_secret};

/// The app a Pusher client connects to (`/app/{key}`).
#[derive(Clone)]
pub struct AppKeys {
    pub app_id: String,
    pub key: String,
    secret: String,
    /// Signs Lockstep's own channels (log and presence): a random key of
    /// the server's own, kept in the database and never handed out or
    /// derived from the app secret, so a holder of the app secret (a
    /// Laravel app signing its own channels) cannot grant them.
    log_secret: String,
}

impl std::fmt::Debug for AppKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKeys")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl AppKeys {
    /// Keys for the app; Lockstep's own channels get a fresh random key
    /// (one no other `AppKeys` shares) until [`AppKeys::with_channel_secret`]
    /// sets the server's.
    pub fn new(app_id: String, key: String, secret: String) -> Self {
        let log_secret = random_secret("", 48);
        AppKeys {
            app_id,
            key,
            secret,
            log_secret,
        }
    }

    /// The configured values, or those made on first start and kept in
    /// the database (`LOCKSTEP_PUSHER_APP_ID` / `_KEY` / `_SECRET` unset).
    pub async fn load(
        db: &Db,
        app_id: Option<String>,
        key: Option<String>,
        secret: Option<String>,
    ) -> CoreResult<Self> {
        use lockstep_core::secrets::get_or_create;
        let app_id = match app_id.filter(|v| !v.trim().is_empty()) {
            Some(v) => v,
            None => {
                get_or_create(db, "pusher_app_id", || {
                    use rand::Rng;
                    rand::thread_rng()
                        .gen_range(100_000..1_000_000u32)
                        .to_string()
                })
                .await?
            }
        };
        let key = match key.filter(|v| !v.trim().is_empty()) {
            Some(v) => v,
            None => {
                get_or_create(db, "pusher_app_key", || {
                    random_secret("", 20).to_ascii_lowercase()
                })
                .await?
            }
        };
        let secret = match secret.filter(|v| !v.trim().is_empty()) {
            Some(v) => v,
            None => get_or_create(db, "pusher_app_secret", || random_secret("", 40)).await?,
        };
        // Shared by every process on this database, and by restarts.
        let channel_secret =
            get_or_create(db, "lockstep_channel_secret", || random_secret("", 48)).await?;
        Ok(AppKeys::new(app_id, key, secret).with_channel_secret(channel_secret))
    }

    /// The key that signs Lockstep's own channels.
    pub fn with_channel_secret(mut self, channel_secret: String) -> Self {
        self.log_secret = channel_secret;
        self
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// hex(HMAC-SHA256(secret, text)).
    pub fn sign(&self, text: &str) -> String {
        sign(&self.secret, text)
    }

    /// The `auth` a client presents for `channel` (`key:signature`),
    /// signed with the app secret as Pusher signs.
    pub fn channel_auth(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> String {
        self.auth_with(&self.secret, socket_id, channel, channel_data)
    }

    /// The `auth` for one of Lockstep's own channels: the same shape,
    /// signed with the key only the server holds.
    pub fn log_channel_auth(&self, socket_id: &str, channel: &str) -> String {
        self.lockstep_channel_auth(socket_id, channel, None)
    }

    /// The same for a Lockstep presence channel, whose `channel_data` (the
    /// member) is signed with it.
    pub fn lockstep_channel_auth(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> String {
        self.auth_with(&self.log_secret, socket_id, channel, channel_data)
    }

    /// `key:hex(HMAC-SHA256(secret, socket_id:channel[:channel_data]))`.
    fn auth_with(
        &self,
        secret: &str,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> String {
        let text = match channel_data {
            Some(data) => format!("{socket_id}:{channel}:{data}"),
            None => format!("{socket_id}:{channel}"),
        };
        format!("{}:{}", self.key, sign(secret, &text))
    }

    /// Whether `auth` signs the subscription (with the server's own key
    /// for a Lockstep channel), checked in constant time.
    pub fn verify_channel_auth(
        &self,
        auth: &str,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
        lockstep_channel: bool,
    ) -> bool {
        let expected = if lockstep_channel {
            self.lockstep_channel_auth(socket_id, channel, channel_data)
        } else {
            self.channel_auth(socket_id, channel, channel_data)
        };
        // An empty signature (never made) verifies nothing.
        !expected.ends_with(':') && constant_time_eq(auth.as_bytes(), expected.as_bytes())
    }
}

/// hex(HMAC-SHA256(secret, text)).
pub fn sign(secret: &str, text: &str) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes a key of any length; this never happens.
        Err(_) => return String::new(),
    };
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Equality that takes the same time wherever the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_auth_matches_pushers_published_example() {
        // Pusher's documentation example (key 278d425bdf160c739803, secret
        // 7ad3773142a6692b25b8, socket 1234.1234, private-foobar).
        let keys = AppKeys::new(
            "1".into(),
            "278d425bdf160c739803".into(),
            "7ad3773142a6692b25b8".into(),
        );
        assert_eq!(
            keys.channel_auth("1234.1234", "private-foobar", None),
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        let good =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert!(keys.verify_channel_auth(good, "1234.1234", "private-foobar", None, false));
        assert!(!keys.verify_channel_auth(
            "278d425bdf160c739803:00",
            "1234.1234",
            "private-foobar",
            None,
            false
        ));
        assert!(!keys.verify_channel_auth(good, "1234.1235", "private-foobar", None, false));
        // The app secret's signature does not open a Lockstep channel; the
        // server's own key does, and only there.
        assert!(!keys.verify_channel_auth(good, "1234.1234", "private-foobar", None, true));
        let own = keys.log_channel_auth("1234.1234", "private-foobar");
        assert!(keys.verify_channel_auth(&own, "1234.1234", "private-foobar", None, true));
        assert!(!keys.verify_channel_auth(&own, "1234.1234", "private-foobar", None, false));
    }
}
