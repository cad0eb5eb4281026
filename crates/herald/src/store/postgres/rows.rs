//! Reading domain values back out of rows. Values were validated before
//! they were stored, so a failure here means the database was changed
//! behind Herald's back: reported as corruption, never a panic.

use tokio_postgres::Row;

use crate::domain::Timestamp;
use crate::store::{StoreError, StoreResult};

/// Parses text column `index` with `parse`, reporting `what` on failure.
pub(super) fn parsed<T>(row: &Row, index: usize, what: &str, parse: impl FnOnce(&str) -> Option<T>) -> StoreResult<T> {
    let text: String = text(row, index)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("invalid {what}: {text:?}")))
}

pub(super) fn parsed_opt<T>(
    row: &Row,
    index: usize,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> StoreResult<Option<T>> {
    let text: Option<String> = get(row, index)?;
    text.map(|text| parse(&text).ok_or_else(|| StoreError::Corrupt(format!("invalid {what}: {text:?}"))))
        .transpose()
}

pub(super) fn text(row: &Row, index: usize) -> StoreResult<String> {
    get(row, index)
}

pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> StoreResult<T> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

pub(super) fn timestamp(row: &Row, index: usize) -> StoreResult<Timestamp> {
    get::<i64>(row, index).map(Timestamp::from_millis)
}

pub(super) fn timestamp_opt(row: &Row, index: usize) -> StoreResult<Option<Timestamp>> {
    Ok(get::<Option<i64>>(row, index)?.map(Timestamp::from_millis))
}

/// A non-negative count stored as INTEGER.
pub(super) fn count(row: &Row, index: usize) -> StoreResult<u32> {
    let value: i32 = get(row, index)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative count in column {index}")))
}
