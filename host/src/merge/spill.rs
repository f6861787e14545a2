//! Encoded pages of the row group being written are kept in a temporary file, not in memory.
//!
//! parquet's writer holds every finished page of a row group until the row group closes, so
//! its memory grows with the row group size (64 MiB by default, per merge in flight). Spilled,
//! a merge holds only the pages being filled and the dictionaries; the pages come back from
//! the file (usually still in the page cache) one at a time when the row group is written out.
//! One anonymous temporary file per column chunk: the system removes it even after a kill.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use parquet::arrow::arrow_writer::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};

/// Makes a [`SpillFile`] per column chunk in `dir`.
#[derive(Debug)]
pub struct SpillFactory {
    pub dir: PathBuf,
}

impl PageStoreFactory for SpillFactory {
    fn create(&self, _args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
            ParquetError::General(format!("spill file in {}: {e}", self.dir.display()))
        })?;
        Ok(Box::new(SpillFile {
            file,
            end: 0,
            pages: Vec::new(),
        }))
    }
}

/// Pages appended to one file; each is read back once, by its position.
struct SpillFile {
    file: File,
    end: u64,
    /// (offset, length) of each page, by key.
    pages: Vec<(u64, usize)>,
}

impl PageStore for SpillFile {
    fn put(&mut self, page: Bytes) -> Result<PageKey> {
        self.file.write_all_at(&page, self.end)?;
        self.pages.push((self.end, page.len()));
        self.end += page.len() as u64;
        Ok(PageKey::new(self.pages.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let (offset, len) = usize::try_from(key.get())
            .ok()
            .and_then(|i| self.pages.get(i).copied())
            .ok_or_else(|| ParquetError::General(format!("no spilled page {}", key.get())))?;
        let mut page = vec![0u8; len];
        self.file.read_exact_at(&mut page, offset)?;
        Ok(Bytes::from(page))
    }
}
