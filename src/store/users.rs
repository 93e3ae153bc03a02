//! Users of the web services (`radiosync user add`): a name, a role and an
//! Argon2id hash of the password (salted, slow: a stolen database does not give
//! the passwords away cheaply).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};

use super::{now_text, Store, StoreError};

/// What a user may do through the web services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `getdata` only.
    Read,
    /// `getdata` and `putdata`.
    Write,
}

impl Role {
    /// As stored and as `user list` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }

    /// From its stored form.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            _ => None,
        }
    }
}

/// A user as `user list` shows it (never the hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was added (UTC).
    pub created_on: String,
}

/// A hash to check against when the name is unknown, so a wrong name costs the
/// same time as a wrong password (names do not leak by timing).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"decoy", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

impl Store {
    /// Adds a user; fails if the name is taken or the password empty.
    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<(), StoreError> {
        self.writable()?;
        if name.trim().is_empty() || password.is_empty() {
            return Err(StoreError::BadUser(
                "a user needs a name and a non-empty password".into(),
            ));
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| StoreError::BadUser(format!("cannot hash the password: {e}")))?
            .to_string();
        let added = self.conn.execute(
            "INSERT OR IGNORE INTO rs_user (name, role, hash, created_on) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash, now_text()],
        )?;
        if added == 0 {
            return Err(StoreError::BadUser(format!("user {name} exists")));
        }
        Ok(())
    }

    /// Removes a user; fails if there is none by that name.
    pub fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.writable()?;
        if self
            .conn
            .execute("DELETE FROM rs_user WHERE name = ?1", [name])?
            == 0
        {
            return Err(StoreError::BadUser(format!("no user {name}")));
        }
        Ok(())
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, role, created_on FROM rs_user ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, role, created_on)| {
                Role::parse(&role).map(|role| UserInfo {
                    name,
                    role,
                    created_on,
                })
            })
            .collect())
    }

    /// The user's role if `password` is theirs; `None` for a wrong name or
    /// password (the same answer, in about the same time).
    pub fn check_password(&self, name: &str, password: &str) -> Result<Option<Role>, StoreError> {
        Ok(self.login_record(name)?.verify(password))
    }

    /// What a login needs from the database, so the slow hash can be checked
    /// without holding the store (`LoginRecord::verify`).
    pub fn login_record(&self, name: &str) -> Result<LoginRecord, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT role, hash FROM rs_user WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            Some((role, hash)) => LoginRecord {
                role: Role::parse(&role),
                hash,
            },
            None => LoginRecord {
                role: None,
                hash: decoy_hash().to_string(),
            },
        })
    }
}

/// A user's role and password hash, or a decoy for an unknown name.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    role: Option<Role>,
    hash: String,
}

impl LoginRecord {
    /// The role if `password` matches; `None` otherwise, and always for an
    /// unknown name (whose decoy hash takes the same time to check).
    pub fn verify(&self, password: &str) -> Option<Role> {
        let ok = PasswordHash::new(&self.hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        if ok {
            self.role
        } else {
            None
        }
    }
}
