//! IDX, the format of the MNIST files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`): a 4-byte
//! magic (0, 0, element type, dimension count), the dimensions as big-endian u32, then the elements, big-endian.
//! Features are the first dimension's items flattened (28 × 28 pixels → 784 features); unsigned bytes are scaled to
//! [0, 1], other element types are taken as they are. Gzipped files (by their magic) are decompressed into memory, no
//! further than their header declares, plain ones are read a chunk at a time. Bytes past the declared elements are
//! refused.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::{Chunk, RowSource, MAX_CLASSES};
use crate::error::{Error, Position, Result};
use crate::memory;

trait ReadSeek: Read + Seek + Send + std::fmt::Debug {}
impl<T: Read + Seek + Send + std::fmt::Debug> ReadSeek for T {}

/// An IDX file's element type, dimensions and where its data start.
#[derive(Debug, Clone)]
struct Header {
    kind: u8,
    size: usize,
    dims: Vec<u64>,
    data_start: u64,
}

/// True when `bytes` start like an IDX file (or a gzipped file whose name says IDX is for the caller to decide).
pub fn looks_like_idx(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && bytes[0] == 0
        && bytes[1] == 0
        && matches!(bytes[2], 0x08 | 0x09 | 0x0B | 0x0C | 0x0D | 0x0E)
        && (1..=4).contains(&bytes[3])
}

/// Bytes of one element of IDX type `kind` (one [`looks_like_idx`] accepts).
fn element_size(kind: u8) -> usize {
    match kind {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        _ => 8,
    }
}

/// True when `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Where an opened IDX file's bytes are: the file itself, or (gzipped) its decompressed bytes, shared by every
/// reader of it.
#[derive(Debug, Clone)]
enum Backing {
    File(PathBuf),
    Memory(std::sync::Arc<[u8]>),
}

impl Backing {
    /// A reader at the start of the bytes.
    fn reader(&self) -> Result<Box<dyn ReadSeek>> {
        Ok(match self {
            Backing::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                Box::new(std::io::BufReader::with_capacity(1 << 20, file))
            }
            Backing::Memory(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
        })
    }
}

/// Opens an IDX file, decompressing a gzipped one into memory (after checking the memory is there).
fn open(path: &Path) -> Result<(Backing, u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 2];
    let got = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    if got == 2 && is_gzip(&magic) {
        let bytes = inflate(path, file)?;
        let len = bytes.len() as u64;
        return Ok((Backing::Memory(bytes.into()), len));
    }
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    Ok((Backing::File(path.to_path_buf()), len))
}

/// A gzipped IDX file's decompressed bytes, inflated as a stream and never beyond what its header declares: the
/// magic and dimensions are inflated first, the memory the declared elements take is checked (and allocated
/// fallibly), then exactly those bytes are inflated, and a file that inflates to more is refused. Bytes that are
/// not an IDX header are returned as they are for [`read_header`] to refuse.
fn inflate(path: &Path, file: std::fs::File) -> Result<Vec<u8>> {
    let gzip_error = |e: std::io::Error| Error::input(path, format!("not a valid gzip file: {e}"));
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut head = Vec::with_capacity(20);
    (&mut gz)
        .take(4)
        .read_to_end(&mut head)
        .map_err(gzip_error)?;
    if !looks_like_idx(&head) {
        return Ok(head);
    }
    let dims = u64::from(head[3]);
    (&mut gz)
        .take(4 * dims)
        .read_to_end(&mut head)
        .map_err(gzip_error)?;
    if head.len() as u64 != 4 + 4 * dims {
        return Ok(head);
    }
    let size = element_size(head[2]) as u64;
    let declared = head[4..]
        .chunks_exact(4)
        .map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        .try_fold(size, |acc, d| acc.checked_mul(d))
        .and_then(|body| body.checked_add(head.len() as u64))
        .and_then(|total| usize::try_from(total).ok())
        .ok_or_else(|| Error::input(path, "its dimensions are larger than any file can be"))?;
    let help = "gunzip it: a plain IDX file is read a chunk at a time";
    let what = format!("{} decompressed", path.display());
    memory::check_with(&what, declared as u64, Some(help))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(declared)
        .map_err(|_| memory::allocation_failed(&what, declared as u64, Some(help)))?;
    bytes.extend_from_slice(&head);
    (&mut gz)
        .take((declared - head.len()) as u64)
        .read_to_end(&mut bytes)
        .map_err(gzip_error)?;
    // What inflates beyond the declared elements is not part of the file's data: refused, as np.load refuses an
    // array file with bytes past its shape.
    let mut extra = [0u8; 1];
    if bytes.len() == declared && gz.read(&mut extra).map_err(gzip_error)? > 0 {
        return Err(Error::input_at(
            path,
            Position::Byte(declared as u64),
            "trailing data: the file decompresses to more bytes than its dimensions declare",
        ));
    }
    Ok(bytes)
}

fn read_header(path: &Path, r: &mut dyn ReadSeek, len: u64) -> Result<Header> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|_| Error::input(path, "not an IDX file: shorter than its 4-byte magic"))?;
    if !looks_like_idx(&magic) {
        return Err(Error::input_at(
            path,
            Position::Byte(0),
            format!(
                "not an IDX file: magic {:02x} {:02x} {:02x} {:02x} (expected 00 00, an element type 08–0e and 1–4 dimensions)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    let size = element_size(magic[2]);
    let mut dims = Vec::new();
    for i in 0..magic[3] as usize {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|_| {
            Error::input_at(
                path,
                Position::Byte(4 + 4 * i as u64),
                "truncated: the file ends inside its dimensions",
            )
        })?;
        dims.push(u64::from(u32::from_be_bytes(b)));
    }
    let h = Header {
        kind: magic[2],
        size,
        data_start: 4 + 4 * dims.len() as u64,
        dims,
    };
    let need = h
        .dims
        .iter()
        .try_fold(size as u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::input(
                path,
                format!("dimensions {:?} are larger than any file can be", h.dims),
            )
        })?;
    let body = len.saturating_sub(h.data_start);
    if body > need {
        return Err(Error::input_at(
            path,
            Position::Byte(h.data_start + need),
            format!(
                "trailing data: dimensions {:?} declare {need} bytes of data, the file has {body}",
                h.dims
            ),
        ));
    }
    if body < need {
        return Err(Error::input(
            path,
            format!(
                "truncated: dimensions {:?} need {need} bytes of data, found {body}",
                h.dims
            ),
        ));
    }
    Ok(h)
}

fn value(h: &Header, c: &[u8]) -> f64 {
    match h.kind {
        0x08 => f64::from(c[0]) / 255.0,
        0x09 => f64::from(c[0] as i8),
        0x0B => f64::from(i16::from_be_bytes([c[0], c[1]])),
        0x0C => f64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])),
        0x0D => f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]])),
        _ => f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
    }
}

/// Reads an IDX labels file: one dimension of integer class indices (u8, i8, i16 or i32), each ≥ 0 and below
/// `classes` when given.
pub fn read_idx_labels(path: &Path, classes: Option<usize>) -> Result<Vec<u32>> {
    let (backing, len) = open(path)?;
    let mut r = backing.reader()?;
    let h = read_header(path, r.as_mut(), len)?;
    if h.dims.len() != 1 || matches!(h.kind, 0x0D | 0x0E) {
        return Err(Error::input(
            path,
            format!(
                "labels must be one dimension of integers, found {} dimensions of type {:#04x}",
                h.dims.len(),
                h.kind
            ),
        ));
    }
    let n = h.dims[0] as usize;
    memory::check("the labels", (n as u64).saturating_mul(4 + h.size as u64))?;
    let mut raw = vec![0u8; n * h.size];
    r.read_exact(&mut raw).map_err(|e| Error::io(path, e))?;
    let limit = classes.unwrap_or(MAX_CLASSES) as f64;
    raw.chunks_exact(h.size)
        .enumerate()
        .map(|(i, c)| {
            let v = match h.kind {
                0x08 => f64::from(c[0]),
                _ => value(&h, c),
            };
            if v < 0.0 || v >= limit {
                return Err(Error::input_at(
                    path,
                    Position::Index(i as u64),
                    match classes {
                        Some(k) if v >= 0.0 => {
                            format!("class index {v} is not below the {k} classes")
                        }
                        _ if v < 0.0 => format!("class index {v} is negative"),
                        _ => {
                            format!("class index {v} is too large (at most {MAX_CLASSES} classes)")
                        }
                    },
                ));
            }
            Ok(v as u32)
        })
        .collect()
}

/// IDX features and labels read a chunk of rows at a time.
#[derive(Debug)]
pub struct IdxRows {
    path: PathBuf,
    name: String,
    backing: Backing,
    r: Box<dyn ReadSeek>,
    header: Header,
    n: usize,
    d: usize,
    k: usize,
    y: Vec<u32>,
    pos: usize,
    buf: Vec<u8>,
}

impl IdxRows {
    /// Opens images `x_path` (n × …, flattened to n × d) and labels `y_path`.
    pub fn open(x_path: &Path, y_path: &Path, classes: Option<usize>) -> Result<Self> {
        let (backing, len) = open(x_path)?;
        let mut r = backing.reader()?;
        let header = read_header(x_path, r.as_mut(), len)?;
        if header.dims.len() < 2 || header.dims.contains(&0) {
            return Err(Error::input(
                x_path,
                format!(
                    "features need rows and at least one more dimension, none of them 0; found {:?}",
                    header.dims
                ),
            ));
        }
        let n = header.dims[0] as usize;
        let d = header.dims[1..].iter().product::<u64>() as usize;
        let y = read_idx_labels(y_path, classes)?;
        let k = super::label_classes(x_path, y_path, &y, n, classes)?;
        Ok(IdxRows {
            path: x_path.to_path_buf(),
            name: x_path.display().to_string(),
            backing,
            r,
            header,
            n,
            d,
            k,
            y,
            pos: 0,
            buf: Vec::new(),
        })
    }
}

impl IdxRows {
    /// A second reader of the same rows, at the first: a plain file opened again, a gzipped one's bytes shared (not
    /// decompressed again), the labels copied.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(IdxRows {
            path: self.path.clone(),
            name: self.name.clone(),
            backing: self.backing.clone(),
            r: self.backing.reader()?,
            header: self.header.clone(),
            n: self.n,
            d: self.d,
            k: self.k,
            y: self.y.clone(),
            pos: 0,
            buf: Vec::new(),
        })
    }
}

impl RowSource for IdxRows {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> usize {
        self.d
    }

    fn classes(&self) -> usize {
        self.k
    }

    fn rows(&self) -> Option<u64> {
        Some(self.n as u64)
    }

    fn rewind(&mut self) -> Result<()> {
        self.pos = 0;
        Ok(())
    }

    fn seek(&mut self, row: u64) -> Result<bool> {
        self.pos = usize::try_from(row).unwrap_or(usize::MAX);
        Ok(true)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        if self.pos >= self.n {
            return Ok(None);
        }
        let (start, d, size) = (self.pos, self.d, self.header.size);
        let m = max_rows.max(1).min(self.n - start);
        let offset = self.header.data_start + (start * d * size) as u64;
        self.buf.resize(m * d * size, 0);
        self.r
            .seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(&self.path, e))?;
        if let Err(e) = self.r.read_exact(&mut self.buf) {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::input_at(
                    &self.path,
                    Position::Byte(offset),
                    "the file ends inside these rows (it was truncated or shrank while it was read)",
                )
            } else {
                Error::io(&self.path, e)
            });
        }
        let h = &self.header;
        let x: Vec<f32> = self
            .buf
            .chunks_exact(size)
            .map(|c| value(h, c) as f32)
            .collect();
        if let Some(e) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::input_at(
                &self.path,
                Position::Index2((start + e / d) as u64, (e % d) as u64),
                "feature is NaN, infinite or outside the f32 range",
            ));
        }
        self.pos = start + m;
        let x = Array2::from_shape_vec((m, d), x).expect("m·d values");
        Ok(Some(Chunk::owned(
            &self.name,
            x,
            self.y[start..start + m].to_vec(),
            self.k,
            start as u64,
        )?))
    }
}
