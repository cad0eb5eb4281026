//! Reading domain values back out of rows. Values were validated before
//! they were stored, so a failure here means the database was changed
//! behind Herald's back; it is reported as corruption, never a panic.

use rusqlite::Row;
use rusqlite::types::{FromSqlError, Type};

use crate::domain::Timestamp;

/// Parses column `index` with `parse`, reporting `what` on failure.
pub(super) fn parsed<T>(
    row: &Row<'_>,
    index: usize,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| corrupt(index, format!("invalid {what}: {text:?}")))
}

pub(super) fn parsed_opt<T>(
    row: &Row<'_>,
    index: usize,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(index)?;
    match text {
        None => Ok(None),
        Some(text) => parse(&text)
            .map(Some)
            .ok_or_else(|| corrupt(index, format!("invalid {what}: {text:?}"))),
    }
}

pub(super) fn timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(index).map(Timestamp::from_millis)
}

pub(super) fn timestamp_opt(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    row.get::<_, Option<i64>>(index).map(|v| v.map(Timestamp::from_millis))
}

pub(super) fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u32> {
    let value: i64 = row.get(index)?;
    u32::try_from(value).map_err(|_| corrupt(index, format!("count out of range: {value}")))
}

fn corrupt(index: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(FromSqlError::Other(message.into())))
}

/// Maps a row-decoding failure to a store error: corruption if the data
/// could not be decoded, unavailability otherwise.
pub(super) fn store_error(error: rusqlite::Error) -> crate::store::StoreError {
    match error {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            crate::store::StoreError::Corrupt(error.to_string())
        }
        other => super::unavailable(other),
    }
}
