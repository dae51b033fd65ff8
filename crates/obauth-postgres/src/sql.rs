//! The table's name and the statements on it.

use obauth_core::store::StoreKey;
use obauth_core::{StoreError, StoreErrorKind};
use sha2::{Digest, Sha256};

/// The table layout this version creates and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// Where the records live: a schema and a table, both checked plain identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    schema: String,
    table: String,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            schema: "public".to_owned(),
            table: "obauth_tokens".to_owned(),
        }
    }
}

/// A plain SQL identifier: 1 to 63 ASCII letters, digits and underscores, not starting with
/// a digit (so that it needs no quoting rules beyond the double quotes it gets).
fn identifier(what: &str, name: &str) -> Result<String, StoreError> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if plain {
        Ok(name.to_owned())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Other,
            format!(
                "the PostgreSQL {what} name must be 1 to 63 ASCII letters, digits and \
                 underscores, not starting with a digit"
            ),
        ))
    }
}

impl Table {
    pub(crate) fn new(schema: &str, table: &str) -> Result<Self, StoreError> {
        Ok(Self {
            schema: identifier("schema", schema)?,
            table: identifier("table", table)?,
        })
    }

    /// `"schema"."table"`.
    pub(crate) fn name(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    fn versions(&self) -> String {
        format!("\"{}\".\"obauth_schema_versions\"", self.schema)
    }

    /// The schema and the table of schema versions, if missing.
    pub(crate) fn versions_ddl(&self) -> String {
        format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\";
             CREATE TABLE IF NOT EXISTS {} (
                 table_name TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 migrated_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );",
            self.schema,
            self.versions()
        )
    }

    pub(crate) fn version_query(&self) -> String {
        format!(
            "SELECT version FROM {} WHERE table_name = $1",
            self.versions()
        )
    }

    pub(crate) fn record_version(&self) -> String {
        format!(
            "INSERT INTO {} (table_name, version) VALUES ($1, $2)
             ON CONFLICT (table_name) DO UPDATE SET version = $2, migrated_at = now()",
            self.versions()
        )
    }

    /// The records' table, version 1.
    pub(crate) fn ddl(&self) -> String {
        format!(
            "CREATE TABLE {} (
                 key TEXT PRIMARY KEY,
                 version BIGINT NOT NULL CHECK (version > 0),
                 record BYTEA NOT NULL,
                 expires_at TIMESTAMPTZ,
                 created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                 updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );",
            self.name()
        )
    }

    pub(crate) fn select(&self) -> String {
        format!("SELECT version, record FROM {} WHERE key = $1", self.name())
    }

    /// $1 key, $2 record, $3 expiry in epoch seconds: written only if the key is new.
    pub(crate) fn insert(&self) -> String {
        format!(
            "INSERT INTO {} (key, version, record, expires_at)
             VALUES ($1, 1, $2, to_timestamp($3))
             ON CONFLICT (key) DO NOTHING
             RETURNING version",
            self.name()
        )
    }

    /// $1 key, $2 record, $3 expiry, $4 the version expected.
    pub(crate) fn update(&self) -> String {
        format!(
            "UPDATE {} SET version = version + 1, record = $2, expires_at = to_timestamp($3),
                 updated_at = now()
             WHERE key = $1 AND version = $4
             RETURNING version",
            self.name()
        )
    }

    /// $1 key, $2 record, $3 expiry: written whatever is there.
    pub(crate) fn upsert(&self) -> String {
        let name = self.name();
        format!(
            "INSERT INTO {name} (key, version, record, expires_at)
             VALUES ($1, 1, $2, to_timestamp($3))
             ON CONFLICT (key) DO UPDATE SET version = {name}.version + 1,
                 record = EXCLUDED.record, expires_at = EXCLUDED.expires_at, updated_at = now()
             RETURNING version"
        )
    }

    /// The advisory lock of `key`'s lease: 64 bits of a hash of the table and the key.
    pub(crate) fn lease_lock(&self, key: &StoreKey) -> i64 {
        self.lock_id(&["lease", key.as_str()])
    }

    /// The advisory lock migrations of this table take turns on.
    pub(crate) fn migration_lock(&self) -> i64 {
        self.lock_id(&["migrate"])
    }

    fn lock_id(&self, parts: &[&str]) -> i64 {
        let mut hash = Sha256::new();
        hash.update(b"obauth\0");
        hash.update(self.schema.as_bytes());
        hash.update(b"\0");
        hash.update(self.table.as_bytes());
        for part in parts {
            hash.update(b"\0");
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        assert_eq!(Table::default().name(), "\"public\".\"obauth_tokens\"");
        assert_eq!(
            Table::new("svc", "tok_2").unwrap().name(),
            "\"svc\".\"tok_2\""
        );
        for bad in ["", "2x", "a-b", "a\"b", "a b", "é", &"x".repeat(64)] {
            assert!(Table::new(bad, "t").is_err(), "{bad}");
            assert!(Table::new("s", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locks_differ_by_key_and_table() {
        let key = |name: &str| StoreKey::client_credentials("u", "c", "m", name);
        let table = Table::default();
        assert_eq!(table.lease_lock(&key("a")), table.lease_lock(&key("a")));
        assert_ne!(table.lease_lock(&key("a")), table.lease_lock(&key("b")));
        let other = Table::new("public", "other").unwrap();
        assert_ne!(table.lease_lock(&key("a")), other.lease_lock(&key("a")));
        assert_ne!(table.migration_lock(), other.migration_lock());
    }
}
