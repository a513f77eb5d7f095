//! Schema migrations: numbered SQL scripts, each applied once, and the
//! runner every backend uses to apply the ones a database lacks.
//!
//! This module exists so that how a schema is brought up to date is decided
//! once: both store backends (and any crate sharing their database, such as
//! the read models, with its own migration table) list their migrations as
//! [`Migration`]s, check them with [`check_numbering`] in a test, and call
//! [`run`] with a small [`MigrationTarget`] that runs the SQL. The runner
//! owns the rules: a fast path when the schema is current, each migration in
//! its own transaction under the database's write lock, the version re-read
//! under that lock (another process may have migrated meanwhile), and
//! [`StoreError::SchemaTooNew`] for a schema this build does not know.

use crate::StoreError;

/// One schema change, applied once, in its own transaction. Lists of
/// migrations are append-only: never edit or renumber an applied one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number: the first is 1, each next one is one more.
    pub version: i64,
    /// What it does, recorded in the migration table.
    pub name: &'static str,
    /// The statements, run as one batch.
    pub sql: &'static str,
}

/// The newest version `migrations` reach (0 for none).
pub fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

/// Check that `migrations` are numbered from one without gaps or
/// repetitions; the error names the first one out of place. Each list's
/// tests call it.
pub fn check_numbering(migrations: &[Migration]) -> Result<(), String> {
    for (expected, migration) in (1..).zip(migrations) {
        if migration.version != expected {
            return Err(format!(
                "migration {:?} is numbered {} but should be {expected}: migrations are \
                 numbered from one without gaps",
                migration.name, migration.version
            ));
        }
    }
    Ok(())
}

/// A database the runner can migrate: what a backend implements, with SQL.
pub trait MigrationTarget {
    /// The backend's error; the runner's own refusals are
    /// [`StoreError::SchemaTooNew`], converted.
    type Error: From<StoreError>;

    /// The newest applied version, read without taking the write lock
    /// (0 when the migration table does not exist yet).
    fn applied_version(&mut self) -> Result<i64, Self::Error>;

    /// In one transaction holding the database's write lock: create the
    /// migration table if it is absent, read the newest applied version and
    /// pass it to `step`; when `step` returns a migration, run its SQL and
    /// record it (version, name, time applied). Commit when all that
    /// succeeded, roll back otherwise. Returns what `step` returned.
    fn apply_locked(
        &mut self,
        step: &mut dyn FnMut(i64) -> Result<Option<Migration>, StoreError>,
    ) -> Result<Option<Migration>, Self::Error>;
}

/// Apply the `migrations` `target` lacks, oldest first, each in its own
/// transaction; refuse a schema newer than the newest of them.
pub fn run<T: MigrationTarget>(target: &mut T, migrations: &[Migration]) -> Result<(), T::Error> {
    let supported = latest(migrations);
    // Fast path without the write lock: up to date, or too new.
    let found = target.applied_version()?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported }.into());
    }
    if found == supported {
        return Ok(());
    }
    for migration in migrations {
        // Under the lock, the version is read again: another process may
        // have migrated since.
        target.apply_locked(&mut |current| {
            if current > supported {
                return Err(StoreError::SchemaTooNew {
                    found: current,
                    supported,
                });
            }
            Ok((migration.version > current).then_some(*migration))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn m(version: i64) -> Migration {
        Migration {
            version,
            name: "m",
            sql: "",
        }
    }

    #[test]
    fn numbering_from_one_without_gaps() {
        assert!(check_numbering(&[]).is_ok());
        assert!(check_numbering(&[m(1), m(2), m(3)]).is_ok());
        assert!(check_numbering(&[m(2)]).is_err());
        assert!(check_numbering(&[m(1), m(3)]).is_err());
        assert!(check_numbering(&[m(1), m(1)]).is_err());
    }

    /// A database in memory: the applied versions.
    struct Memory {
        applied: Vec<i64>,
        transactions: usize,
    }

    impl MigrationTarget for Memory {
        type Error = StoreError;

        fn applied_version(&mut self) -> Result<i64, StoreError> {
            Ok(self.applied.last().copied().unwrap_or(0))
        }

        fn apply_locked(
            &mut self,
            step: &mut dyn FnMut(i64) -> Result<Option<Migration>, StoreError>,
        ) -> Result<Option<Migration>, StoreError> {
            self.transactions += 1;
            let applied = step(self.applied_version()?)?;
            if let Some(migration) = applied {
                self.applied.push(migration.version);
            }
            Ok(applied)
        }
    }

    #[test]
    fn applies_what_is_missing_and_refuses_newer() {
        let all = [m(1), m(2), m(3)];
        let mut db = Memory {
            applied: vec![1],
            transactions: 0,
        };
        run(&mut db, &all).unwrap();
        assert_eq!(db.applied, vec![1, 2, 3]);
        let before = db.transactions;
        run(&mut db, &all).unwrap();
        assert_eq!(db.transactions, before, "a current schema takes no lock");
        match run(&mut db, &all[..2]) {
            Err(StoreError::SchemaTooNew {
                found: 3,
                supported: 2,
            }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
