//! NPY (NumPy's array format, versions 1–3): X as a 2-D array of any numeric dtype (floats, integers, booleans; C or
//! Fortran order), y as a 1-D array of any integer type. The header is parsed strictly, as `np.load` parses it;
//! every mismatch names the file and the problem.

use std::path::Path;

use ndarray::Array2;

use super::{read_file, MAX_CLASSES};
use crate::error::{Error, Position, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Float,
    Int,
    Uint,
}

#[derive(Debug, Clone)]
struct Header {
    kind: Kind,
    size: usize,
    big_endian: bool,
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
    data_start: usize,
}

/// The element kind of a NumPy type string, or why it cannot be a number we train on.
fn kind_of(descr: &str) -> std::result::Result<(Kind, usize, bool), String> {
    let mut chars = descr.chars();
    let order = chars.next().unwrap_or('?');
    let letter = chars.next().unwrap_or('?');
    let size: usize = chars.as_str().parse().unwrap_or(0);
    if !matches!(order, '<' | '>' | '|' | '=') {
        return Err(format!("unsupported dtype {descr:?}"));
    }
    let kind = match letter {
        'f' => Kind::Float,
        'i' => Kind::Int,
        'u' | 'b' => Kind::Uint,
        'c' => {
            return Err(format!(
                "dtype {descr:?} holds complex numbers, not real ones"
            ))
        }
        'O' => return Err(format!("dtype {descr:?} holds Python objects, not numbers")),
        'M' | 'm' => return Err(format!("dtype {descr:?} holds dates or times, not numbers")),
        'S' | 'U' | 'a' => return Err(format!("dtype {descr:?} holds strings, not numbers")),
        'V' => {
            return Err(format!(
                "dtype {descr:?} is raw or structured data, not numbers"
            ))
        }
        _ => return Err(format!("unsupported dtype {descr:?}")),
    };
    if !matches!(size, 1 | 2 | 4 | 8) || (kind == Kind::Float && size == 1) {
        return Err(format!("unsupported dtype {descr:?}"));
    }
    Ok((kind, size, order == '>'))
}

/// A value of an NPY header's dictionary, as NumPy's `np.save` writes it and `np.load` (`ast.literal_eval`) reads it.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
    /// A list or dict (a structured dtype's `descr`) or a number: recognised, to be refused by name.
    Other,
}

/// Parses an NPY header: a Python dict literal of string keys, each once, whose values are strings, `True`/`False`,
/// tuples of non-negative integers (`()`, `(3,)`, `(3, 4)`, Python 2's `3L`) or nested lists and dicts, followed
/// only by whitespace. Anything else is refused, as `np.load` refuses it.
fn parse_dict(text: &str) -> std::result::Result<Vec<(String, Literal)>, String> {
    struct P<'t> {
        s: &'t [u8],
        i: usize,
    }
    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> bool {
            self.ws();
            if self.s.get(self.i) == Some(&c) {
                self.i += 1;
                true
            } else {
                false
            }
        }
        fn string(&mut self) -> std::result::Result<String, String> {
            self.ws();
            let q = match self.s.get(self.i) {
                Some(&q @ (b'\'' | b'"')) => q,
                _ => return Err(format!("expected a quoted string at byte {}", self.i)),
            };
            let start = self.i + 1;
            let end = self.s[start..]
                .iter()
                .position(|&c| c == q || c == b'\\')
                .map(|p| start + p)
                .filter(|&e| self.s[e] == q)
                .ok_or_else(|| format!("an unterminated or escaped string at byte {}", self.i))?;
            self.i = end + 1;
            Ok(String::from_utf8_lossy(&self.s[start..end]).into_owned())
        }
        fn nested(&mut self) -> std::result::Result<(), String> {
            // Brackets balanced, strings skipped: the content is refused by the caller anyway.
            let mut depth = 0usize;
            while let Some(&c) = self.s.get(self.i) {
                match c {
                    b'[' | b'{' | b'(' => depth += 1,
                    b']' | b'}' | b')' => {
                        depth -= 1;
                        if depth == 0 {
                            self.i += 1;
                            return Ok(());
                        }
                    }
                    b'\'' | b'"' => {
                        self.string()?;
                        continue;
                    }
                    _ => {}
                }
                self.i += 1;
            }
            Err("an unclosed bracket".into())
        }
        fn value(&mut self) -> std::result::Result<Literal, String> {
            self.ws();
            let rest = &self.s[self.i..];
            if rest.starts_with(b"True") {
                self.i += 4;
                return Ok(Literal::Bool(true));
            }
            if rest.starts_with(b"False") {
                self.i += 5;
                return Ok(Literal::Bool(false));
            }
            match rest.first() {
                Some(b'\'' | b'"') => self.string().map(Literal::Str),
                Some(b'[' | b'{') => self.nested().map(|()| Literal::Other),
                Some(b'(') => {
                    self.i += 1;
                    let mut dims = Vec::new();
                    loop {
                        if self.eat(b')') {
                            break;
                        }
                        self.ws();
                        let start = self.i;
                        while self.s.get(self.i).is_some_and(|&c| c != b',' && c != b')') {
                            self.i += 1;
                        }
                        let token = String::from_utf8_lossy(&self.s[start..self.i]);
                        let token = token.trim();
                        let n: u64 =
                            token
                                .strip_suffix('L')
                                .unwrap_or(token)
                                .parse()
                                .map_err(|_| {
                                    format!("'shape' holds {}, not a size", super::shown(token))
                                })?;
                        dims.push(n);
                        if self.eat(b')') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(format!(
                                "'shape' is not a tuple of sizes at byte {}",
                                self.i
                            ));
                        }
                    }
                    Ok(Literal::Tuple(dims))
                }
                Some(c) if c.is_ascii_digit() || *c == b'-' => {
                    self.i += 1;
                    while self.s.get(self.i).is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')
                    }) {
                        self.i += 1;
                    }
                    Ok(Literal::Other)
                }
                _ => Err(format!("an unexpected value at byte {}", self.i)),
            }
        }
    }
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
    };
    if !p.eat(b'{') {
        return Err("the header is not a dict literal (is the version byte right?)".into());
    }
    let mut out: Vec<(String, Literal)> = Vec::new();
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("the key {key:?} appears twice"));
        }
        if !p.eat(b':') {
            return Err(format!("no ':' after the key {key:?}"));
        }
        out.push((key, p.value()?));
        if p.eat(b'}') {
            break;
        }
        if !p.eat(b',') {
            return Err(format!("expected ',' or '}}' at byte {}", p.i));
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("text after the header's dict, at byte {}", p.i));
    }
    Ok(out)
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |m: &str| Error::input(path, format!("not a valid NPY file: {m}"));
    if bytes.is_empty() {
        return Err(Error::input(path, "file is empty"));
    }
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err(bad("header length runs past the end of the file")),
        v => return Err(bad(&format!("unsupported version {v}"))),
    };
    let text = start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| bad("header runs past the end of the file"))?;
    let text = std::str::from_utf8(text).map_err(|_| bad("header is not text"))?;
    // A Python dict literal, as np.save writes it and np.load reads it: a header read from the wrong offset (a
    // version-2 file whose version byte says 1 starts two bytes early, with the length's high bytes) is refused
    // instead of read into values two bytes off; so is one with other keys, or any key missing, as np.load refuses.
    let dict = parse_dict(text).map_err(|m| bad(&m))?;
    let mut keys: Vec<&str> = dict.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if keys != ["descr", "fortran_order", "shape"] {
        return Err(bad(&format!(
            "the header's keys are {keys:?}, not 'descr', 'fortran_order' and 'shape'"
        )));
    }
    let get = |key: &str| dict.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Literal::Str(s)) => s.clone(),
        Some(Literal::Other) => {
            return Err(Error::input(
                path,
                "dtype is structured (named fields), not a plain numeric array",
            ))
        }
        _ => return Err(bad("'descr' is not a quoted type string")),
    };
    let fortran = match get("fortran_order") {
        Some(Literal::Bool(b)) => *b,
        _ => return Err(bad("'fortran_order' is not True or False")),
    };
    let shape = match get("shape") {
        Some(Literal::Tuple(dims)) => dims
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| bad(&format!("'shape' holds {d}, not a size")))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(bad("'shape' is not a tuple")),
    };
    let (kind, size, big_endian) = kind_of(&descr).map_err(|m| Error::input(path, m))?;
    Ok(Header {
        kind,
        size,
        big_endian,
        descr,
        fortran,
        shape,
        data_start: start + len,
    })
}

/// The data bytes of `count` elements, checked against the file's length with overflow-free arithmetic.
fn data<'a>(path: &Path, bytes: &'a [u8], h: &Header) -> Result<&'a [u8]> {
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .and_then(|c| c.checked_mul(h.size));
    let body = &bytes[h.data_start.min(bytes.len())..];
    match count {
        Some(need) if body.len() >= need => Ok(&body[..need]),
        Some(need) => Err(Error::input(
            path,
            format!(
                "truncated: shape {:?} of {} needs {need} bytes of data, found {}",
                h.shape,
                h.descr,
                body.len()
            ),
        )),
        None => Err(Error::input(
            path,
            format!(
                "shape {:?} of {} is larger than any file can be",
                h.shape, h.descr
            ),
        )),
    }
}

fn word<const N: usize>(c: &[u8], big: bool) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    if big {
        a.reverse();
    }
    a
}

/// Reads a 2-D array of any numeric dtype (converted to f32: floats to nearest, float16 and integers exactly —
/// uint8 values as they are, 0 to 255 — and an integer f32 cannot hold exactly refused at its index) in C or Fortran
/// order, and checks every value is finite. Positions in errors are NumPy's 0-based indices. The file is
/// read straight into the array (f32 little-endian without any other copy), so loading costs the array's memory
/// and no more.
pub fn read_npy_features(path: &Path) -> Result<Array2<f32>> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let h = read_header(path, &mut file)?;
    let (n, d) = feature_shape(path, &h)?;
    check_body(path, &h, file_len(path, &file)?)?;
    let mut out = crate::memory::zeroed::<f32>(
        &format!("{} as f32", path.display()),
        n.saturating_mul(d),
        Some("a --memory-budget below it streams the rows when training"),
    )?;
    read_rows(path, &mut file, &h, (n, d), 0, &mut out, &mut Vec::new())?;
    Ok(Array2::from_shape_vec((n, d), out).expect("n·d values"))
}

/// [`read_npy_features`] on the file's bytes (`path` names it in errors).
pub fn parse_npy_features(path: &Path, bytes: &[u8]) -> Result<Array2<f32>> {
    let h = parse_header(path, bytes)?;
    let (n, d) = feature_shape(path, &h)?;
    data(path, bytes, &h)?;
    let mut out = vec![0f32; n * d];
    let mut cursor = std::io::Cursor::new(bytes);
    read_rows(path, &mut cursor, &h, (n, d), 0, &mut out, &mut Vec::new())?;
    Ok(Array2::from_shape_vec((n, d), out).expect("n·d values"))
}

fn file_len(path: &Path, file: &std::fs::File) -> Result<u64> {
    Ok(file.metadata().map_err(|e| Error::io(path, e))?.len())
}

/// Reads and parses the header at the start of `file`, reading no more of it than the header.
fn read_header(path: &Path, file: &mut std::fs::File) -> Result<Header> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file_len(path, file)?;
    let mut prefix = vec![0u8; 12.min(len as usize)];
    file.read_exact(&mut prefix)
        .map_err(|e| Error::io(path, e))?;
    let header_len = match prefix.get(6) {
        Some(1) if prefix.len() >= 10 => 10 + u64::from(u16::from_le_bytes([prefix[8], prefix[9]])),
        Some(2 | 3) if prefix.len() >= 12 => {
            12 + u64::from(u32::from_le_bytes([
                prefix[8], prefix[9], prefix[10], prefix[11],
            ]))
        }
        _ => prefix.len() as u64,
    };
    // parse_header names the problem (bad magic, past the end …) from what there is.
    let mut head = vec![0u8; header_len.min(len) as usize];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut head))
        .map_err(|e| Error::io(path, e))?;
    parse_header(path, &head)
}

/// Checks that the file holds as many data bytes as its header's shape needs (overflow-free).
fn check_body(path: &Path, h: &Header, len: u64) -> Result<()> {
    let need = h
        .shape
        .iter()
        .try_fold(h.size as u64, |acc, &s| acc.checked_mul(s as u64));
    let body = len.saturating_sub(h.data_start as u64);
    match need {
        Some(need) if body >= need => Ok(()),
        Some(need) => Err(Error::input(
            path,
            format!(
                "truncated: shape {:?} of {} needs {need} bytes of data, found {body}",
                h.shape, h.descr
            ),
        )),
        None => Err(Error::input(
            path,
            format!(
                "shape {:?} of {} is larger than any file can be",
                h.shape, h.descr
            ),
        )),
    }
}

/// The (rows, features) of a features header: any numeric dtype `np.save` writes (floats of 2, 4 or 8 bytes,
/// integers of 1 to 8 bytes, booleans), 2-D, not empty.
fn feature_shape(path: &Path, h: &Header) -> Result<(usize, usize)> {
    if h.shape.len() != 2 {
        return Err(Error::input(
            path,
            format!("features must be a 2-D array, found shape {:?}", h.shape),
        ));
    }
    let (n, d) = (h.shape[0], h.shape[1]);
    if n == 0 || d == 0 {
        return Err(Error::input(
            path,
            format!("features are empty: shape {:?}", h.shape),
        ));
    }
    Ok((n, d))
}

/// Reads exactly `buf.len()` bytes at `offset`; a file that ends first (truncated, or shrunk since it was opened) is
/// an input error at the byte where it ended.
fn read_at<R: std::io::Read + std::io::Seek>(
    path: &Path,
    r: &mut R,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    use std::io::SeekFrom;
    r.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(Error::input_at(
                    path,
                    Position::Byte(offset + done as u64),
                    format!(
                        "the file ends here, {} bytes short of what its header promises (it was truncated or shrank \
                         while it was read)",
                        buf.len() - done
                    ),
                ))
            }
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(())
}

/// One value of a features array as f32: floats rounded to nearest (float16 converts exactly), integers exactly or
/// not at all (`Err` with the integer, beyond ±2²⁴ where f32 has no unit steps; refused rather than changed).
fn decode(c: &[u8], h: &Header) -> std::result::Result<f32, i128> {
    let be = h.big_endian;
    let int: i128 = match (h.kind, h.size) {
        (Kind::Float, 2) => return Ok(f16_to_f32(u16::from_le_bytes(word(c, be)))),
        (Kind::Float, 4) => return Ok(f32::from_le_bytes(word(c, be))),
        (Kind::Float, _) => return Ok(f64::from_le_bytes(word(c, be)) as f32),
        (Kind::Uint, 1) => return Ok(f32::from(c[0])),
        (Kind::Int, 1) => return Ok(f32::from(c[0] as i8)),
        (Kind::Uint, 2) => return Ok(f32::from(u16::from_le_bytes(word(c, be)))),
        (Kind::Int, 2) => return Ok(f32::from(i16::from_le_bytes(word(c, be)))),
        (Kind::Uint, 4) => u32::from_le_bytes(word(c, be)).into(),
        (Kind::Int, 4) => i32::from_le_bytes(word(c, be)).into(),
        (Kind::Uint, _) => u64::from_le_bytes(word(c, be)).into(),
        (Kind::Int, _) => i64::from_le_bytes(word(c, be)).into(),
    };
    let v = int as f32;
    if v as i128 == int {
        Ok(v)
    } else {
        Err(int)
    }
}

/// An IEEE half-precision value as f32, exactly (every f16 is an f32): subnormals normalised, infinities and NaN
/// kept (and refused later as not finite).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m · 2⁻²⁴, normalised into f32's range.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// The error for an integer feature at NumPy index `[i, j]` that f32 cannot hold exactly.
fn inexact(path: &Path, h: &Header, i: usize, j: usize, int: i128) -> Error {
    Error::input_at(
        path,
        Position::Index2(i as u64, j as u64),
        format!(
            "feature {int} ({}) has no exact float32 (integers beyond ±16777216 lose digits); convert the array \
             to float64 or scale it",
            h.descr
        ),
    )
}

/// Reads rows `first..first + out.len() / d` of a features array of shape `(n, d)` into `out` (row-major f32) and
/// checks that every value is finite (naming the first that is not by its NumPy index). Little-endian float32 in C
/// order is read straight into `out`; other types go through `buf`. Fortran order is read one column at a time.
fn read_rows<R: std::io::Read + std::io::Seek>(
    path: &Path,
    r: &mut R,
    h: &Header,
    (n, d): (usize, usize),
    first: usize,
    out: &mut [f32],
    buf: &mut Vec<u8>,
) -> Result<()> {
    let m = out.len() / d;
    let size = h.size as u64;
    let start = h.data_start as u64;
    if !h.fortran {
        let offset = start + (first * d) as u64 * size;
        let native_f32 =
            h.kind == Kind::Float && h.size == 4 && h.big_endian == cfg!(target_endian = "big");
        if native_f32 {
            read_at(path, r, offset, bytemuck::cast_slice_mut(out))?;
        } else {
            buf.resize(m * d * h.size, 0);
            read_at(path, r, offset, buf)?;
            for (e, (v, c)) in out.iter_mut().zip(buf.chunks_exact(h.size)).enumerate() {
                *v = decode(c, h).map_err(|int| inexact(path, h, first + e / d, e % d, int))?;
            }
        }
    } else {
        buf.resize(m * h.size, 0);
        for j in 0..d {
            let offset = start + (j as u64 * n as u64 + first as u64) * size;
            read_at(path, r, offset, buf)?;
            for (i, c) in buf.chunks_exact(h.size).enumerate() {
                out[i * d + j] = decode(c, h).map_err(|int| inexact(path, h, first + i, j, int))?;
            }
        }
    }
    if let Some(e) = out.iter().position(|v| !v.is_finite()) {
        let what = if out[e].is_nan() {
            "NaN"
        } else {
            "infinite or outside the f32 range"
        };
        return Err(Error::input_at(
            path,
            Position::Index2((first + e / d) as u64, (e % d) as u64),
            format!("feature is {what}"),
        ));
    }
    Ok(())
}

/// NPY features (and their labels) read a chunk of rows at a time, never the whole file: a [`RowSource`] whose
/// memory is one chunk, for data larger than RAM. The header, the file's length and the labels are checked when it
/// is opened; each chunk's values when it is read (a NaN is reported at its NumPy index, a file that shrank since at
/// the byte where it now ends). Rows are read with positioned reads rather than a memory map: from the page cache
/// that is as fast, and a file truncated under a map kills the process with SIGBUS instead of giving an error.
///
/// [`RowSource`]: super::RowSource
#[derive(Debug)]
pub struct NpyRows {
    path: std::path::PathBuf,
    name: String,
    file: std::fs::File,
    header: Header,
    n: usize,
    d: usize,
    k: usize,
    y: Vec<u32>,
    pos: usize,
    buf: Vec<u8>,
}

impl NpyRows {
    /// Opens features `x_path` and labels `y_path` (class indices below `classes`, or the largest + 1).
    pub fn open(x_path: &Path, y_path: &Path, classes: Option<usize>) -> Result<Self> {
        let mut file = std::fs::File::open(x_path).map_err(|e| Error::io(x_path, e))?;
        let header = read_header(x_path, &mut file)?;
        let (n, d) = feature_shape(x_path, &header)?;
        check_body(x_path, &header, file_len(x_path, &file)?)?;
        let y = read_npy_labels(y_path, classes)?;
        let k = super::label_classes(x_path, y_path, &y, n, classes)?;
        Ok(NpyRows {
            path: x_path.to_path_buf(),
            name: x_path.display().to_string(),
            file,
            header,
            n,
            d,
            k,
            y,
            pos: 0,
            buf: Vec::new(),
        })
    }

    /// A second reader of the same file, at its first row, without reading its header and labels again.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(NpyRows {
            path: self.path.clone(),
            name: self.name.clone(),
            file: std::fs::File::open(&self.path).map_err(|e| Error::io(&self.path, e))?,
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

impl super::RowSource for NpyRows {
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

    fn fill(&mut self, x: &mut [f32], y: &mut [u32]) -> Result<bool> {
        let m = y.len();
        if m == 0 || self.n - self.pos.min(self.n) < m || x.len() != m * self.d {
            return Ok(false);
        }
        let start = self.pos;
        read_rows(
            &self.path,
            &mut self.file,
            &self.header,
            (self.n, self.d),
            start,
            x,
            &mut self.buf,
        )?;
        // The labels were checked against k when the file was opened.
        y.copy_from_slice(&self.y[start..start + m]);
        self.pos = start + m;
        Ok(true)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<super::Chunk<'_>>> {
        if self.pos >= self.n {
            return Ok(None);
        }
        let (start, d) = (self.pos, self.d);
        let m = max_rows.max(1).min(self.n - start);
        let mut x = vec![0f32; m * d];
        read_rows(
            &self.path,
            &mut self.file,
            &self.header,
            (self.n, d),
            start,
            &mut x,
            &mut self.buf,
        )?;
        self.pos = start + m;
        let x = Array2::from_shape_vec((m, d), x).expect("m·d values");
        // read_rows checked every value; the labels were checked against k when the file was opened.
        Ok(Some(super::Chunk::from_checked(
            x,
            self.y[start..start + m].to_vec(),
            start as u64,
        )))
    }
}

/// Reads a 1-D integer array of class indices (an [n, 1] column is accepted too). Indices must be ≥ 0 and below
/// `classes` when given, else below [`MAX_CLASSES`].
pub fn read_npy_labels(path: &Path, classes: Option<usize>) -> Result<Vec<u32>> {
    parse_npy_labels(path, &read_file(path)?, classes)
}

/// [`read_npy_labels`] on the file's bytes (`path` names it in errors).
pub fn parse_npy_labels(path: &Path, bytes: &[u8], classes: Option<usize>) -> Result<Vec<u32>> {
    let h = parse_header(path, bytes)?;
    if h.kind == Kind::Float {
        return Err(Error::input(
            path,
            format!("labels must be an integer array, found dtype {:?}", h.descr),
        ));
    }
    if h.fortran && h.shape.len() > 1 {
        return Err(Error::input(
            path,
            "labels must be in C order, found Fortran order",
        ));
    }
    let n = match h.shape.as_slice() {
        [n] | [n, 1] => *n,
        s => {
            return Err(Error::input(
                path,
                format!("labels must be a 1-D array, found shape {s:?}"),
            ))
        }
    };
    if n == 0 {
        return Err(Error::input(path, "labels are empty: shape (0,)"));
    }
    if let Some(k) = classes.filter(|k| !(2..=MAX_CLASSES).contains(k)) {
        return Err(Error::param(
            "--classes",
            format!("in 2..={MAX_CLASSES}"),
            k,
        ));
    }
    let raw = data(path, bytes, &h)?;
    let limit = classes.unwrap_or(MAX_CLASSES) as i128;
    let mut out = Vec::with_capacity(n);
    for (e, c) in raw.chunks_exact(h.size).enumerate() {
        let v = integer(&h, c);
        let at = Position::Index(e as u64);
        if v < 0 {
            return Err(Error::input_at(
                path,
                at,
                format!("class index {v} is negative"),
            ));
        }
        if v >= limit {
            let why = match classes {
                Some(k) => format!("class index {v} is not below the {k} classes"),
                None => format!("class index {v} is too large (at most {MAX_CLASSES} classes)"),
            };
            return Err(Error::input_at(path, at, why));
        }
        out.push(v as u32);
    }
    Ok(out)
}

/// One element of an integer array (signed or unsigned, 1 to 8 bytes, either byte order) as an i128.
fn integer(h: &Header, c: &[u8]) -> i128 {
    let be = h.big_endian;
    match (h.kind, h.size) {
        (Kind::Int, 1) => i8::from_le_bytes(word(c, be)) as i128,
        (Kind::Int, 2) => i16::from_le_bytes(word(c, be)) as i128,
        (Kind::Int, 4) => i32::from_le_bytes(word(c, be)) as i128,
        (Kind::Int, 8) => i64::from_le_bytes(word(c, be)) as i128,
        (_, 1) => u8::from_le_bytes(word(c, be)) as i128,
        (_, 2) => u16::from_le_bytes(word(c, be)) as i128,
        (_, 4) => u32::from_le_bytes(word(c, be)) as i128,
        _ => u64::from_le_bytes(word(c, be)) as i128,
    }
}

/// Reads a 1-D numeric array (float, or integer; an [n, 1] column is accepted too) as f64 values, unchecked: the
/// sample weights of `--sample-weight`, which `weights.rs` checks one by one.
pub(crate) fn parse_npy_weights(path: &Path, bytes: &[u8]) -> Result<Vec<f64>> {
    let h = parse_header(path, bytes)?;
    let n = match h.shape.as_slice() {
        [n] | [n, 1] if !(h.fortran && h.shape.len() > 1) => *n,
        s => {
            return Err(Error::input(
                path,
                format!("sample weights must be a 1-D array, found shape {s:?}"),
            ))
        }
    };
    let raw = data(path, bytes, &h)?;
    let mut out = Vec::with_capacity(n);
    for c in raw.chunks_exact(h.size) {
        let be = h.big_endian;
        let v: f64 = match (h.kind, h.size) {
            (Kind::Float, 4) => f64::from(f32::from_le_bytes(word(c, be))),
            (Kind::Float, 8) => f64::from_le_bytes(word(c, be)),
            (Kind::Float, _) => {
                return Err(Error::input(
                    path,
                    format!(
                        "sample weights must be float32, float64 or integers, found dtype {:?}",
                        h.descr
                    ),
                ))
            }
            _ => integer(&h, c) as f64,
        };
        out.push(v);
    }
    Ok(out)
}

/// The bytes of a version-1 NPY file holding `body` as `descr` (`'<f4'`, `'<u4'` …) of `shape`, C order, as NumPy
/// writes it. `body` is taken as given (the tests build truncated and malformed files with it).
pub fn npy_bytes(descr: &str, shape: &[usize], body: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // The data starts at a multiple of 64 bytes, as NumPy writes it.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + body.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Writes X as a float32 NPY file that NumPy, PyTorch and JAX read as they are (atomically).
pub fn write_npy_features(path: &Path, x: ndarray::ArrayView2<f32>) -> Result<()> {
    let x = x.as_standard_layout();
    let values = x.as_slice().expect("standard layout is contiguous");
    let body: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    crate::atomic::write_atomically(path, &npy_bytes("<f4", &[x.nrows(), x.ncols()], &body))
}

/// Writes every row of `source` as a float32 features NPY and a uint32 labels NPY, a chunk at a time (memory: one
/// chunk), each file atomically: when anything fails neither file is replaced. `progress` is told the rows written.
/// Returns the rows written.
pub fn write_npy_source(
    x_path: &Path,
    y_path: &Path,
    source: &mut dyn super::RowSource,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    use std::io::Write;
    let n = source.rows().ok_or_else(|| {
        Error::Internal(format!(
            "{}: an NPY header needs the row count",
            source.name()
        ))
    })?;
    let n = usize::try_from(n).map_err(|_| Error::Internal("row count above usize".into()))?;
    let d = source.features();
    let header = |descr: &str, shape: &[usize]| {
        let mut h = npy_bytes(descr, shape, &[]);
        h.shrink_to_fit();
        h
    };
    let mut xf = crate::atomic::AtomicFile::create(x_path)?;
    let mut yf = crate::atomic::AtomicFile::create(y_path)?;
    xf.write_all(&header("<f4", &[n, d]))
        .map_err(|e| Error::io(x_path, e))?;
    yf.write_all(&header("<u4", &[n]))
        .map_err(|e| Error::io(y_path, e))?;
    source.rewind()?;
    let rows_per_chunk = ((16usize << 20) / (4 * d)).max(1);
    let mut written = 0u64;
    let mut bytes = Vec::new();
    while let Some(chunk) = source.next_chunk(rows_per_chunk)? {
        bytes.clear();
        for v in chunk.x().iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        xf.write_all(&bytes).map_err(|e| Error::io(x_path, e))?;
        bytes.clear();
        for v in chunk.y() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        yf.write_all(&bytes).map_err(|e| Error::io(y_path, e))?;
        written += chunk.len() as u64;
        progress(written);
    }
    if written != n as u64 {
        return Err(Error::Internal(format!(
            "{}: {written} rows read, {n} announced",
            source.name()
        )));
    }
    xf.commit()?;
    yf.commit()?;
    Ok(written)
}

/// Writes class indices as a uint32 NPY vector (atomically).
pub fn write_npy_labels(path: &Path, y: &[u32]) -> Result<()> {
    let body: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
    crate::atomic::write_atomically(path, &npy_bytes("<u4", &[y.len()], &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written into its own temporary directory, removed when this is dropped (at the end of the statement
    /// that reads it), so the tests leave nothing behind.
    struct Scratch {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    }

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.path
        }
    }

    fn write(name: &str, bytes: &[u8]) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        Scratch { _dir: dir, path }
    }

    #[test]
    fn written_files_read_back() {
        let x = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32 - 1.5);
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        write_npy_features(&dir.join("x.npy"), x.view()).unwrap();
        write_npy_labels(&dir.join("y.npy"), &[2, 0, 1]).unwrap();
        assert_eq!(read_npy_features(&dir.join("x.npy")).unwrap(), x);
        assert_eq!(
            read_npy_labels(&dir.join("y.npy"), Some(3)).unwrap(),
            [2, 0, 1]
        );
    }

    #[test]
    fn reads_f64_features_and_i64_labels() {
        let body: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let x = read_npy_features(&write("x.npy", &npy_bytes("<f8", &[2, 3], &body))).unwrap();
        assert_eq!(x.dim(), (2, 3));
        assert_eq!(x[[1, 2]], 6.0);
        let body: Vec<u8> = [0i64, 2, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            read_npy_labels(&write("y.npy", &npy_bytes("<i8", &[3], &body)), None).unwrap(),
            [0, 2, 1]
        );
    }

    #[test]
    fn reads_uint8_big_endian_and_fortran_order_as_c_order_f32() {
        // The 2 × 3 array [[1, 2, 3], [4, 5, 6]] in each layout.
        let want = ndarray::arr2(&[[1f32, 2., 3.], [4., 5., 6.]]);
        let u8s = npy_bytes("|u1", &[2, 3], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(read_npy_features(&write("u8.npy", &u8s)).unwrap(), want);
        let be: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let big = npy_bytes(">f4", &[2, 3], &be);
        assert_eq!(read_npy_features(&write("be.npy", &big)).unwrap(), want);
        // Column-major: the values of column 0, then column 1, then column 2.
        let fo: Vec<u8> = [1f64, 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut fortran = npy_bytes("<f8", &[2, 3], &fo);
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert_eq!(read_npy_features(&write("f.npy", &fortran)).unwrap(), want);
        // A Fortran-order NaN is still named by its NumPy index.
        let mut bad = fortran.clone();
        let n = bad.len();
        bad[n - 8..].copy_from_slice(&f64::NAN.to_le_bytes());
        let e = read_npy_features(&write("fn.npy", &bad)).unwrap_err();
        assert!(
            e.to_string().ends_with("index [1, 2]: feature is NaN"),
            "{e}"
        );
    }

    #[test]
    fn rejects_wrong_dtype_shape_and_labels() {
        let f = |v: &[f32]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let e =
            read_npy_features(&write("a.npy", &npy_bytes("<U4", &[1, 1], &[0; 16]))).unwrap_err();
        assert!(e.to_string().contains("holds strings"), "{e}");
        let e = read_npy_features(&write("b.npy", &npy_bytes("<f4", &[2], &f(&[1.0, 2.0]))))
            .unwrap_err();
        assert!(e.to_string().contains("2-D"), "{e}");
        let e = read_npy_features(&write(
            "c.npy",
            &npy_bytes("<f4", &[1, 2], &f(&[1.0, f32::NAN])),
        ))
        .unwrap_err();
        assert!(
            e.to_string().ends_with("index [0, 1]: feature is NaN"),
            "{e}"
        );
        let body: Vec<u8> = [0i32, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = read_npy_labels(&write("d.npy", &npy_bytes("<i4", &[2], &body)), None).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("index 1: class index -3 is negative"),
            "{e}"
        );
        let body: Vec<u8> = [0u32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let e =
            read_npy_labels(&write("e.npy", &npy_bytes("<u4", &[2], &body)), Some(5)).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("index 1: class index 7 is not below the 5 classes"),
            "{e}"
        );
        let e = read_npy_labels(&write("g.npy", &npy_bytes("<u4", &[3], &body)), None).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = read_npy_labels(&write("h.npy", b"PK\x03\x04 not npy"), None).unwrap_err();
        assert!(e.to_string().contains("not a valid NPY file"), "{e}");
    }
}
