//! Encoded pages of the row group being written are kept in a temporary file, not in memory.
//!
//! parquet's writer holds every finished page of a row group until the row group closes, so
//! its memory grows with the row group size (64 MiB by default, per merge in flight). Spilled,
//! a merge holds only the pages being filled and the dictionaries; the pages come back from
//! the file (usually still in the page cache) one at a time when the row group is written out.
//!
//! The column chunks of a row group share one anonymous temporary file, which the system
//! removes when its last chunk is written (and after a kill). A file per column chunk cost a
//! new inode each: on ext4, allocating one looks through the recently deleted ones, and for a
//! table of 800 columns that was a quarter of a merge's CPU time, in the kernel.
//!
//! When the row group is written out, the kernel copies each page from this file to the end
//! of the output (`copy_file_range`), given a handle to the output: reading a page back into
//! memory and writing it out again copied it three times (into a buffer, into the writer's
//! buffer, into the output's page cache) where the kernel copies it once. Copying 560 MB, the
//! large benchmark set's spilled pages, cost 0.35–0.47 s of CPU time that way against
//! 0.69–1.12 s by reading and writing in 300 KiB pieces. Where the kernel refuses (another
//! filesystem on an old kernel, a system without the call), pages are read back and written.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use parquet::arrow::arrow_writer::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};

/// Makes a [`SpillFile`] per column chunk in `dir`; the chunks alive at once (those of the row
/// group being written) share one file.
#[derive(Debug)]
pub struct SpillFactory {
    dir: PathBuf,
    /// A second handle to the file being written (sharing its position), that pages are
    /// copied to when the row group is written out; without one they are read back into
    /// memory and handed to the writer.
    output: Option<Arc<File>>,
    /// The file of the row group being written, while any of its chunks is alive.
    current: Mutex<Weak<SharedFile>>,
}

impl SpillFactory {
    pub fn new(dir: PathBuf, output: Option<File>) -> SpillFactory {
        SpillFactory {
            dir,
            output: output.map(Arc::new),
            current: Mutex::new(Weak::new()),
        }
    }

    /// A store for one column chunk.
    fn store(&self) -> Result<SpillFile> {
        Ok(SpillFile {
            shared: self.shared_file()?,
            pages: Vec::new(),
        })
    }

    fn shared_file(&self) -> Result<Arc<SharedFile>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = current.upgrade() {
            return Ok(file);
        }
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
            ParquetError::General(format!("spill file in {}: {e}", self.dir.display()))
        })?;
        let file = Arc::new(SharedFile {
            file,
            end: AtomicU64::new(0),
            output: self.output.clone(),
            copies: AtomicBool::new(self.output.is_some()),
        });
        *current = Arc::downgrade(&file);
        Ok(file)
    }
}

impl PageStoreFactory for SpillFactory {
    fn create(&self, _args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        Ok(Box::new(self.store()?))
    }
}

/// One temporary file that pages are appended to, from any of the chunks sharing it.
#[derive(Debug)]
struct SharedFile {
    file: File,
    /// Where the next page goes.
    end: AtomicU64,
    /// See [`SpillFactory::output`].
    output: Option<Arc<File>>,
    /// Whether pages are copied to `output` by the kernel: until it refuses.
    copies: AtomicBool,
}

impl SharedFile {
    /// Appends `page`; returns where it starts.
    fn append(&self, page: &[u8]) -> std::io::Result<u64> {
        let offset = self.end.fetch_add(page.len() as u64, Ordering::Relaxed);
        self.file.write_all_at(page, offset)?;
        Ok(offset)
    }
}

/// The pages of one column chunk, in its row group's shared file; each is read back once, by
/// its position.
struct SpillFile {
    shared: Arc<SharedFile>,
    /// (offset, length) of each page, by key.
    pages: Vec<(u64, usize)>,
}

impl SpillFile {
    /// (offset, length) of the page under `key`.
    fn page(&self, key: PageKey) -> Result<(u64, usize)> {
        usize::try_from(key.get())
            .ok()
            .and_then(|i| self.pages.get(i).copied())
            .ok_or_else(|| ParquetError::General(format!("no spilled page {}", key.get())))
    }
}

impl PageStore for SpillFile {
    fn put(&mut self, page: Bytes) -> Result<PageKey> {
        let offset = self.shared.append(&page)?;
        self.pages.push((offset, page.len()));
        Ok(PageKey::new(self.pages.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let (offset, len) = self.page(key)?;
        let mut page = vec![0u8; len];
        self.shared.file.read_exact_at(&mut page, offset)?;
        Ok(Bytes::from(page))
    }

    fn writes_to_output(&self) -> bool {
        self.shared.copies.load(Ordering::Relaxed)
    }

    fn write_to_output(&mut self, key: PageKey) -> Result<Option<usize>> {
        let (offset, len) = self.page(key)?;
        let Some(output) = self.shared.output.as_deref() else {
            return Ok(None);
        };
        match copy_to_end(&self.shared.file, offset, len, output) {
            Ok(()) => Ok(Some(len)),
            Err(Copy::Refused) => {
                self.shared.copies.store(false, Ordering::Relaxed);
                Ok(None)
            }
            Err(Copy::Failed(e)) => Err(e.into()),
        }
    }
}

/// Why [`copy_to_end`] did not copy.
enum Copy {
    /// The kernel does not copy between these files; nothing was written.
    Refused,
    Failed(std::io::Error),
}

/// Copies `len` bytes of `from` at `offset` to the end of `to` (its position, which moves on),
/// in the kernel.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn copy_to_end(from: &File, mut offset: u64, len: usize, to: &File) -> Result<(), Copy> {
    use std::os::fd::AsRawFd;
    let mut left = len;
    while left > 0 {
        let mut off_in = offset as libc::loff_t;
        // SAFETY: both descriptors are open for the duration of the call (borrowed files);
        // `off_in` is a valid place for the kernel to update, and a null output offset means
        // the output's own position, which the writer's handle shares.
        let copied = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                std::ptr::null_mut(),
                left,
                0,
            )
        };
        match copied {
            -1 => {
                let e = std::io::Error::last_os_error();
                let refused = matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                );
                match e.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    _ if refused && left == len => return Err(Copy::Refused),
                    _ => return Err(Copy::Failed(e)),
                }
            }
            0 => {
                return Err(Copy::Failed(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the spill file ended before its page",
                )));
            }
            n => {
                offset += n as u64;
                left -= n as usize;
            }
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn copy_to_end(_: &File, _: u64, _: usize, _: &File) -> Result<(), Copy> {
    Err(Copy::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(factory: &SpillFactory, n: usize) -> Vec<SpillFile> {
        (0..n).map(|_| factory.store().unwrap()).collect()
    }

    #[test]
    fn the_chunks_of_a_row_group_share_one_file_and_get_their_own_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let factory = SpillFactory::new(dir.path().to_path_buf(), None);
        let mut chunks = stores(&factory, 3);
        let page = |c: usize, p: usize| Bytes::from(vec![(c * 10 + p) as u8; 1000 + c * 7 + p]);
        // Pages of the three chunks interleaved, as the writer fills them.
        let mut keys = vec![Vec::new(); 3];
        for p in 0..4 {
            for (c, chunk) in chunks.iter_mut().enumerate() {
                keys[c].push(chunk.put(page(c, p)).unwrap());
            }
        }
        let shared = factory.current.lock().unwrap().upgrade().unwrap();
        assert_eq!(Arc::strong_count(&shared), 4, "one file for all three");
        assert_eq!(
            shared.file.metadata().unwrap().len(),
            (0..3)
                .flat_map(|c| (0..4).map(move |p| page(c, p).len() as u64))
                .sum::<u64>()
        );
        drop(shared);
        for (c, chunk) in chunks.iter_mut().enumerate() {
            for (p, key) in keys[c].iter().enumerate() {
                assert_eq!(chunk.take(*key).unwrap(), page(c, p), "chunk {c} page {p}");
            }
        }
        // Once the row group's chunks are gone, so is its file; the next row group gets a
        // new one.
        drop(chunks);
        assert!(factory.current.lock().unwrap().upgrade().is_none());
        let mut next = stores(&factory, 1);
        let key = next[0].put(page(0, 0)).unwrap();
        assert_eq!(next[0].take(key).unwrap(), page(0, 0));
        // Nothing named was left in the directory: the files are anonymous.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A file written with spilled pages, copied out by the kernel or (where it refuses)
    /// read back, is byte for byte the file written with pages in memory: three row groups,
    /// each column with a dictionary page ahead of its data pages, and a page index after.
    #[test]
    fn spilled_pages_reach_the_file_as_the_pages_in_memory_would() {
        use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        use parquet::arrow::ArrowWriter;
        use parquet::arrow::arrow_writer::ArrowWriterOptions;
        use parquet::file::properties::WriterProperties;

        let rows = 30_000i64;
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef,
            ),
            (
                "kind",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("kind-{}", i % 97)),
                )) as ArrayRef,
            ),
        ])
        .unwrap();
        let props = || {
            WriterProperties::builder()
                .set_max_row_group_row_count(Some(10_000))
                .set_data_page_row_count_limit(1_000)
                .build()
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, spill: Option<fn(&File) -> Option<File>>| {
            let path = dir.path().join(name);
            let file = File::create(&path).unwrap();
            let mut options = ArrowWriterOptions::new().with_properties(props());
            if let Some(output) = spill {
                let factory = SpillFactory::new(dir.path().to_path_buf(), output(&file));
                options = options.with_page_store_factory(Arc::new(factory));
            }
            let out = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut writer =
                ArrowWriter::try_new_with_options(out, batch.schema(), options).unwrap();
            writer.write(&batch).unwrap();
            let written = writer.close().unwrap();
            assert_eq!(written.row_groups().len(), 3);
            std::fs::read(&path).unwrap()
        };
        let in_memory = write("memory.parquet", None);
        let copied = write("copied.parquet", Some(|f| f.try_clone().ok()));
        let read_back = write("read.parquet", Some(|_| None));
        // A pipe: the kernel refuses to copy to it, and the pages are read back instead.
        let refused = write("refused.parquet", Some(|_| Some(pipe_end())));
        assert!(in_memory == copied, "pages copied by the kernel");
        assert!(in_memory == read_back, "pages read back");
        assert!(in_memory == refused, "pages read back after a refusal");
    }

    /// The writing end of a pipe, as a `File`.
    fn pipe_end() -> File {
        let (_reader, writer) = std::io::pipe().unwrap();
        File::from(std::os::fd::OwnedFd::from(writer))
    }

    #[test]
    fn a_copy_the_kernel_refuses_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let from = tempfile::tempfile_in(dir.path()).unwrap();
        from.write_all_at(b"page", 0).unwrap();
        assert!(matches!(
            copy_to_end(&from, 0, 4, &pipe_end()),
            Err(Copy::Refused)
        ));
        let to = tempfile::tempfile_in(dir.path()).unwrap();
        assert!(matches!(copy_to_end(&from, 0, 4, &to), Ok(())));
        assert!(matches!(copy_to_end(&from, 1, 3, &to), Ok(())));
        let mut copied = vec![0; 7];
        to.read_exact_at(&mut copied, 0).unwrap();
        assert_eq!(copied, b"pageage");
        // Past the end of the spill file: an error, not a short page.
        assert!(matches!(
            copy_to_end(&from, 2, 4, &to),
            Err(Copy::Failed(_))
        ));
    }
}
