use crate::map_error_code;

use std::io;
use zstd_safe;

/// Allows to compress independently multiple chunks of data.
///
/// Each job will be processed entirely in-memory without streaming, so this
/// is most fitting for many small jobs. To compress larger volume that don't
/// easily fit in memory, a streaming compression may be more appropriate.
///
/// It is more efficient than a streaming compressor for 2 reasons:
/// * It re-uses the zstd context between jobs to avoid re-allocations
/// * It avoids copying data from a `Read` into a temporary buffer before compression.
pub struct Compressor<'a> {
    // compactor's patch: see `Setup`.
    setup: Setup<'a>,
}

/// compactor's patch: how a compressor is set up.
enum Setup<'a> {
    /// With a level and nothing else (all the parquet crate asks for): it compresses on its
    /// thread's shared context (see `shared`) and makes none of its own.
    Level(i32),
    /// With a dictionary or a parameter: on a context of its own.
    Own(zstd_safe::CCtx<'a>),
}

impl Default for Compressor<'_> {
    fn default() -> Self {
        Compressor {
            setup: Setup::Level(0),
        }
    }
}

impl Compressor<'static> {
    /// Creates a new zstd compressor
    pub fn new(level: i32) -> io::Result<Self> {
        Self::with_dictionary(level, &[])
    }

    /// Creates a new zstd compressor, using the given dictionary.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn with_dictionary(level: i32, dictionary: &[u8]) -> io::Result<Self> {
        let mut compressor = Self::default();

        compressor.set_dictionary(level, dictionary)?;

        Ok(compressor)
    }
}

impl<'a> Compressor<'a> {
    /// Creates a new compressor using an existing `EncoderDictionary`.
    ///
    /// The compression level will be the one specified when creating the dictionary.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn with_prepared_dictionary<'b>(
        dictionary: &'a crate::dict::EncoderDictionary<'b>,
    ) -> io::Result<Self>
    where
        'b: 'a,
    {
        let mut compressor = Self::default();

        compressor.set_prepared_dictionary(dictionary)?;

        Ok(compressor)
    }

    /// Changes the compression level used by this compressor.
    ///
    /// *This will clear any dictionary previously registered.*
    ///
    /// If you want to keep the existing dictionary, you will need to pass it again to
    /// `Self::set_dictionary` instead of using this method.
    pub fn set_compression_level(&mut self, level: i32) -> io::Result<()> {
        self.set_dictionary(level, &[])
    }

    /// Changes the dictionary and compression level used by this compressor.
    ///
    /// Will affect future compression jobs.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn set_dictionary(
        &mut self,
        level: i32,
        dictionary: &[u8],
    ) -> io::Result<()> {
        // compactor's patch: a level alone needs no context of its own. One made earlier (for
        // a parameter, say) is kept, so the parameter still applies.
        if dictionary.is_empty() && matches!(self.setup, Setup::Level(_)) {
            self.setup = Setup::Level(level);
            return Ok(());
        }
        let context = self.own_context();
        context
            .set_parameter(zstd_safe::CParameter::CompressionLevel(level))
            .map_err(map_error_code)?;

        context
            .load_dictionary(dictionary)
            .map_err(map_error_code)?;
        Ok(())
    }

    /// Changes the dictionary used by this compressor.
    ///
    /// The compression level used when preparing the dictionary will be used.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn set_prepared_dictionary<'b>(
        &mut self,
        dictionary: &'a crate::dict::EncoderDictionary<'b>,
    ) -> io::Result<()>
    where
        'b: 'a,
    {
        self.own_context()
            .ref_cdict(dictionary.as_cdict())
            .map_err(map_error_code)?;

        Ok(())
    }

    /// Compress a single block of data to the given destination buffer.
    ///
    /// Returns the number of bytes written, or an error if something happened
    /// (for instance if the destination buffer was too small). A failed job
    /// is abandoned, and the compressor can be set up again for the next one.
    /// With worker threads (see `multithread`), abandoning a job waits for
    /// them to be done with it.
    ///
    /// A level of `0` uses zstd's default (currently `3`).
    /// [`crate::compress_bound()`] says how large `destination` might need to
    /// be. For a `Vec` it is the *capacity* that bounds the output, so
    /// `reserve` what you need rather than `resize` - the bytes do not have to
    /// be initialized first.
    pub fn compress_to_buffer<C: zstd_safe::WriteBuf + ?Sized>(
        &mut self,
        source: &[u8],
        destination: &mut C,
    ) -> io::Result<usize> {
        // compactor's patch
        match &mut self.setup {
            Setup::Level(level) => {
                let level = *level;
                super::shared::with_cctx(|context| {
                    context
                        .set_parameter(zstd_safe::CParameter::CompressionLevel(
                            level,
                        ))
                        .map_err(map_error_code)?;
                    compress2_or_abandon(context, source, destination)
                })
            }
            Setup::Own(context) => {
                compress2_or_abandon(context, source, destination)
            }
        }
    }

    /// Compresses a block of data and returns the compressed result.
    ///
    /// A level of `0` uses zstd's default (currently `3`).
    pub fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        // We allocate a big buffer, slightly larger than the input data.
        let buffer_len = zstd_safe::compress_bound(data.len());
        let mut buffer = crate::vec_with_capacity(buffer_len)?;

        self.compress_to_buffer(data, &mut buffer)?;

        // Should we shrink the vec? Meh, let the user do it if he wants.
        Ok(buffer)
    }

    /// Gives mutable access to the internal context.
    pub fn context_mut(&mut self) -> &mut zstd_safe::CCtx<'a> {
        self.own_context() // compactor's patch
    }

    /// compactor's patch: its own context, made now (at its level) if it has none.
    fn own_context(&mut self) -> &mut zstd_safe::CCtx<'a> {
        if let Setup::Level(level) = self.setup {
            let mut context = zstd_safe::CCtx::default();
            // A level out of range is clamped, not refused.
            let _ = context
                .set_parameter(zstd_safe::CParameter::CompressionLevel(level));
            self.setup = Setup::Own(context);
        }
        match &mut self.setup {
            Setup::Own(context) => context,
            Setup::Level(_) => unreachable!("made above"),
        }
    }

    /// compactor's patch: whether it has a context of its own (for tests).
    #[doc(hidden)]
    pub fn has_own_context(&self) -> bool {
        matches!(self.setup, Setup::Own(_))
    }

    /// Sets a compression parameter for this compressor.
    pub fn set_parameter(
        &mut self,
        parameter: zstd_safe::CParameter,
    ) -> io::Result<()> {
        self.own_context() // compactor's patch
            .set_parameter(parameter)
            .map_err(map_error_code)?;
        Ok(())
    }

    /// Sets the expected size of the input.
    ///
    /// This affects the compression effectiveness.
    ///
    /// It is an error to give an incorrect size (an error will be returned when closing the
    /// stream if the size does not match what was pledged).
    ///
    /// Giving a `None` size means the size is unknown (this is the default).
    pub fn set_pledged_src_size(
        &mut self,
        size: Option<u64>,
    ) -> io::Result<()> {
        self.own_context() // compactor's patch
            .set_pledged_src_size(size)
            .map_err(map_error_code)?;
        Ok(())
    }

    crate::encoder_parameters!();
}

/// Compresses `source` in one frame on `context`; a failed frame is abandoned.
fn compress2_or_abandon<C: zstd_safe::WriteBuf + ?Sized>(
    context: &mut zstd_safe::CCtx<'_>,
    source: &[u8],
    destination: &mut C,
) -> io::Result<usize> {
    let result = context.compress2(destination, source);
    if result.is_err() {
        // `compress2` leaves a failed frame open, and zstd refuses most
        // setters mid-frame. Abandon it, so the compressor can be set up
        // for the next job. Resetting only the session cannot fail (it
        // waits for the worker threads, if any).
        let _ = context.reset(zstd_safe::ResetDirective::SessionOnly);
    }
    result.map_err(map_error_code)
}

fn _assert_traits() {
    fn _assert_send<T: Send>(_: T) {}

    _assert_send(Compressor::new(0));
}
