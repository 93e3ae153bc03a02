//! The embedded sample data (8 tables of Sahana Eden template data in the blueprints'
//! convention) and writes made the way a station's application makes them: plain SQL on
//! its own file, which radiosync's triggers capture. Used by `sample`, the demo and tests.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The sample database as SQL.
pub const SAMPLE_SQL: &str = include_str!("../../data/sample.sql");

/// Writes the sample data to `path`, which must not exist yet.
pub fn write_sample(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Err(StoreError::Exists(path.to_path_buf()));
    }
    app_write(path, SAMPLE_SQL)
}

/// Runs `sql` on the database at `path` as its application would, outside radiosync.
pub fn app_write(path: &Path, sql: &str) -> Result<(), StoreError> {
    Connection::open(path)?.execute_batch(sql)?;
    Ok(())
}
