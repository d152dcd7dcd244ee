//! Every data format read a chunk at a time: LIBSVM (sparse rows, 1- and 0-based, comments, qid), IDX (plain and
//! gzipped), format detection, files that shrink while they are read, and `gen`'s files read back.

mod common;

use std::io::Write;

use ndarray::{arr2, Array2};
use softmax_wgpu::data::{
    self, detect_format, Format, IdxRows, LibsvmOptions, LibsvmRows, NpyRows,
};
use softmax_wgpu::RowSource;

fn all_rows(s: &mut dyn RowSource, chunk: usize) -> (Array2<f32>, Vec<u32>, Vec<u64>) {
    s.rewind().unwrap();
    let (mut x, mut y, mut firsts) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(c) = s.next_chunk(chunk).unwrap() {
        assert!(!c.is_empty() && c.len() <= chunk);
        firsts.push(c.first_row());
        x.extend(c.x().iter().copied());
        y.extend_from_slice(c.y());
    }
    let n = y.len();
    (
        Array2::from_shape_vec((n, s.features()), x).unwrap(),
        y,
        firsts,
    )
}

#[test]
fn libsvm_rows_read_back_dense_and_sparse_for_any_chunking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.svm");
    // Labels -1 / +1 / 2 sort numerically; a qid, a comment, CRLF, an explicit zero and a row with no entries.
    std::fs::write(
        &p,
        "+1 qid:3 1:0.5 4:2 # first\r\n-1 2:1.25\n2 1:0 3:-3e-2 4:7\n-1\n",
    )
    .unwrap();
    let mut s = LibsvmRows::open(&p, &LibsvmOptions::default()).unwrap();
    assert_eq!(s.class_names(), ["-1", "+1", "2"]);
    assert_eq!(
        (s.features(), s.classes(), s.rows(), s.nnz()),
        (4, 3, Some(4), 6)
    );
    let want = arr2(&[
        [0.5f32, 0., 0., 2.],
        [0., 1.25, 0., 0.],
        [0., 0., -3e-2, 7.],
        [0., 0., 0., 0.],
    ]);
    for chunk in [1, 2, 3, 4, 10] {
        let (x, y, firsts) = all_rows(&mut s, chunk);
        assert_eq!(x, want, "chunks of {chunk}");
        assert_eq!(y, [1, 0, 2, 0]);
        assert_eq!(firsts[0], 0);
    }
    s.rewind().unwrap();
    let sparse = s.next_sparse(10).unwrap().unwrap();
    assert_eq!(sparse.offsets, [0, 2, 3, 6, 6]);
    assert_eq!(sparse.indices, [0, 3, 1, 0, 2, 3]);
    assert_eq!(sparse.to_dense(), want);
    // Seek to any row; a clone reads the same rows without a second pass.
    assert!(s.seek(2).unwrap());
    assert_eq!(s.next_chunk(1).unwrap().unwrap().x().row(0), want.row(2));
    let mut c = s.try_clone().unwrap();
    assert_eq!(all_rows(&mut c, 3).0, want);
    // Zero-based, a fixed width, and the training classes for a held-out file.
    let z = dir.path().join("z.svm");
    std::fs::write(&z, "1 0:1 3:2\n2 1:1\n").unwrap();
    let opts = LibsvmOptions {
        zero_based: true,
        features: Some(6),
        classes: Some(vec!["1".into(), "2".into(), "3".into()]),
    };
    let mut zs = LibsvmRows::open(&z, &opts).unwrap();
    assert_eq!((zs.features(), zs.classes()), (6, 3));
    assert_eq!(
        all_rows(&mut zs, 5).0.row(0).to_vec(),
        [1., 0., 0., 2., 0., 0.]
    );
    let e = LibsvmRows::open(
        &z,
        &LibsvmOptions {
            classes: Some(vec!["1".into(), "3".into()]),
            ..opts
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("line 2: label \"2\" is not one of the training classes"),
        "{e}"
    );
}

#[test]
fn libsvm_chunks_cross_the_seek_index_in_any_order() {
    // 1,000 rows: several blocks of the seek index (every 256 rows).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.svm");
    let mut f = std::fs::File::create(&p).unwrap();
    for i in 0..1000 {
        writeln!(f, "{} {}:{} {}:1", i % 3, 1 + i % 7, i, 8 + i % 5).unwrap();
    }
    drop(f);
    let mut s = LibsvmRows::open(&p, &LibsvmOptions::default()).unwrap();
    let (x, y, _) = all_rows(&mut s, 97);
    assert_eq!((x.nrows(), x.ncols()), (1000, 12));
    for at in [0u64, 255, 256, 257, 511, 999] {
        assert!(s.seek(at).unwrap());
        let c = s.next_chunk(3).unwrap().unwrap();
        assert_eq!(c.first_row(), at);
        assert_eq!(c.x().row(0), x.row(at as usize), "row {at}");
        assert_eq!(c.y()[0], y[at as usize]);
    }
}

fn idx_bytes(kind: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(body);
    out
}

#[test]
fn idx_files_plain_and_gzipped_give_the_same_scaled_rows() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 2 * 2).map(|i| (i * 20) as u8).collect();
    let images = idx_bytes(0x08, &[3, 2, 2], &pixels);
    let labels = idx_bytes(0x08, &[3], &[2, 0, 1]);
    let (xp, yp) = (
        dir.path().join("t-images-idx3-ubyte"),
        dir.path().join("t-labels-idx1-ubyte"),
    );
    std::fs::write(&xp, &images).unwrap();
    std::fs::write(&yp, &labels).unwrap();
    let gz = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::fast(),
        );
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
        p
    };
    let (xg, yg) = (
        gz("t-images-idx3-ubyte.gz", &images),
        gz("t-labels-idx1-ubyte.gz", &labels),
    );
    let want = Array2::from_shape_fn((3, 4), |(i, j)| ((i * 4 + j) * 20) as f32 / 255.0);
    for (x, y) in [(&xp, &yp), (&xg, &yg), (&xp, &yg)] {
        assert_eq!(detect_format(x).unwrap(), Format::Idx);
        let mut s = IdxRows::open(x, y, None).unwrap();
        assert_eq!((s.features(), s.classes()), (4, 3));
        for chunk in [1, 2, 5] {
            let (got, labels, _) = all_rows(&mut s, chunk);
            assert_eq!(got, want);
            assert_eq!(labels, [2, 0, 1]);
        }
        // A clone reads the same rows (a gzipped file's bytes shared, not inflated again).
        let mut c = s.try_clone().unwrap();
        assert_eq!(all_rows(&mut c, 2).0, want);
    }
}

#[test]
fn a_gzipped_idx_file_is_inflated_no_further_than_its_header_declares() {
    let dir = tempfile::tempdir().unwrap();
    let gz = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::best(),
        );
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
        p
    };
    let labels = gz("l.gz", &idx_bytes(0x08, &[2], &[0, 1]));
    // Bytes past the declared elements are refused, naming where the data should have ended.
    let mut long = idx_bytes(0x08, &[2, 2], &[1, 2, 3, 4]);
    long.extend(std::iter::repeat_n(0u8, 1 << 20));
    let e = IdxRows::open(&gz("long.gz", &long), &labels, None).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let line = e.to_string();
    assert!(
        line.contains("long.gz") && line.contains("byte 16") && line.contains("trailing data"),
        "{line}"
    );
    // A header that declares more than this machine can hold is refused before anything is inflated or allocated
    // (it used to inflate without a cap): 2³² × 2³² × 255 bytes overflows; 4·10⁹ × 4·10⁹ / 4·10⁶ does not.
    let bomb = gz(
        "bomb.gz",
        &idx_bytes(0x08, &[4_000_000_000, 4_000_000_000], &[0; 4096]),
    );
    let e = IdxRows::open(&bomb, &labels, None).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let line = e.to_string();
    assert!(
        line.contains("bomb.gz decompressed needs") && line.contains("gunzip it"),
        "{line}"
    );
    // One that declares what fits but holds less is truncated, as a plain file would be.
    let short = gz("short.gz", &idx_bytes(0x08, &[2, 2], &[1, 2, 3]));
    let e = IdxRows::open(&short, &labels, None).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn formats_are_detected_from_magic_and_extension() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let npy = data::npy_bytes("<f4", &[1, 1], &1f32.to_le_bytes());
    assert_eq!(detect_format(&w("x.bin", &npy)).unwrap(), Format::Npy);
    assert_eq!(detect_format(&w("x.npy", b"junk")).unwrap(), Format::Npy);
    assert_eq!(
        detect_format(&w("d.txt", b"1 3:0.5 7:1\n")).unwrap(),
        Format::Libsvm
    );
    assert_eq!(detect_format(&w("d.svm", b"")).unwrap(), Format::Libsvm);
    assert_eq!(
        detect_format(&w("d.csv", b"a,b\n1,2\n")).unwrap(),
        Format::Csv
    );
    assert_eq!(detect_format(&w("noext", b"1,2,0\n")).unwrap(), Format::Csv);
    assert_eq!(
        detect_format(&w("m", &idx_bytes(8, &[1], &[0]))).unwrap(),
        Format::Idx
    );
    let e = detect_format(&w("d.csv.gz", b"\x1f\x8b\x08rest")).unwrap_err();
    assert!(e.to_string().contains("gzipped"), "{e}");
}

#[test]
fn a_file_that_shrinks_while_it_is_read_is_an_error_at_its_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (
        common::uniform(100, 4, -1.0, 1.0, 1),
        common::labels(100, 2, 2),
    );
    let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    data::write_npy_features(&xp, x.view()).unwrap();
    data::write_npy_labels(&yp, &y).unwrap();
    let mut s = NpyRows::open(&xp, &yp, None).unwrap();
    s.next_chunk(10).unwrap().unwrap();
    let len = std::fs::metadata(&xp).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&xp)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let e = loop {
        match s.next_chunk(10) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the shrunk file was read to its old end"),
            Err(e) => break e,
        }
    };
    assert!(e.is_input(), "{e}");
    assert!(
        e.to_string().contains(&format!("byte {}", len - 100)),
        "{e}"
    );
    assert!(e.to_string().contains("shrank"), "{e}");

    let p = dir.path().join("s.svm");
    let text: String = (0..600).map(|i| format!("{} 1:{i}\n", i % 2)).collect();
    std::fs::write(&p, &text).unwrap();
    let mut s = LibsvmRows::open(&p, &LibsvmOptions::default()).unwrap();
    std::fs::write(&p, &text[..text.len() / 2]).unwrap();
    let e = loop {
        match s.next_chunk(64) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the shrunk file was read to its old end"),
            Err(e) => break e,
        }
    };
    assert!(
        e.is_input() && e.to_string().contains("changed while being read"),
        "{e}"
    );
}

#[test]
fn csv_rows_stream_what_read_csv_reads_with_its_errors() {
    use softmax_wgpu::data::{read_csv, CsvRows};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    // A header, quoted cells, blank lines and string labels; 3,000 rows cross the seek index (every 1,024 rows).
    let mut text = String::from("a,b,\"the label\"\n");
    for i in 0..3000 {
        if i % 700 == 0 {
            text.push('\n');
        }
        let label = ["cat", "dog", "emu"][i % 3];
        text.push_str(&format!("{},\"{}\",{label}\n", i as f32 * 0.5, -(i as f32)));
    }
    std::fs::write(&p, &text).unwrap();
    let table = read_csv(&p, Some(-1)).unwrap();
    let mut s = CsvRows::open(&p, -1, None).unwrap();
    assert_eq!(s.class_names(), ["cat", "dog", "emu"]);
    assert_eq!((s.rows(), s.features(), s.classes()), (Some(3000), 2, 3));
    for chunk in [1, 999, 1024, 5000] {
        let (x, y, _) = all_rows(&mut s, chunk);
        assert_eq!(x, table.x, "chunks of {chunk}");
        assert_eq!(y.len(), 3000);
        assert!(y.iter().enumerate().all(|(i, &c)| c as usize == i % 3));
    }
    for at in [0u64, 1023, 1024, 2999] {
        assert!(s.seek(at).unwrap());
        let c = s.next_chunk(2).unwrap().unwrap();
        assert_eq!(c.x().row(0), table.x.row(at as usize), "row {at}");
    }
    let mut c = s.try_clone().unwrap();
    assert_eq!(all_rows(&mut c, 777).0, table.x);
    // The same errors as the whole-file reader, found when the file is opened.
    std::fs::write(&p, "1,2,a\n3,x,b\n").unwrap();
    let e = CsvRows::open(&p, -1, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        read_csv(&p, Some(-1)).unwrap_err().to_string()
    );
    std::fs::write(&p, "1,2,a\n3,4,b\n5,6,c\n").unwrap();
    let fixed = ["a".to_string(), "b".to_string()];
    let e = CsvRows::open(&p, -1, Some(&fixed)).unwrap_err();
    assert!(
        e.to_string()
            .contains("line 3: label \"c\" is not one of the training classes"),
        "{e}"
    );
}

#[test]
fn svmlight_comment_lines_are_not_rows_and_the_file_is_known_by_its_content() {
    // dump_svmlight_file(comment=…) writes `# …` lines at the top; SVM-light allows them anywhere. They used to be
    // refused as "no label", and a `.txt` file that starts with one was taken for CSV.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dumped.txt");
    let text =
        "# Generated by dump_svmlight_file from scikit-learn\n# Column indices are one-based\n\
                1 1:0.5 3:2\n  # a comment between rows\n0 2:1\n1 1:1 2:1 3:1\n";
    std::fs::write(&p, text).unwrap();
    assert_eq!(
        softmax_wgpu::data::detect_format(&p).unwrap(),
        softmax_wgpu::data::Format::Libsvm
    );
    let mut s = LibsvmRows::open(&p, &LibsvmOptions::default()).unwrap();
    assert_eq!((s.rows(), s.features(), s.classes()), (Some(3), 3, 2));
    let want = arr2(&[[0.5f32, 0., 2.], [0., 1., 0.], [1., 1., 1.]]);
    for chunk in [1, 2, 3] {
        let (x, y, _) = all_rows(&mut s, chunk);
        assert_eq!(x, want, "chunks of {chunk}");
        assert_eq!(y, [1, 0, 1]);
    }
    // A blank line is still an error, named by its line.
    std::fs::write(&p, "1 1:1\n\n0 2:1\n").unwrap();
    let e = LibsvmRows::open(&p, &LibsvmOptions::default()).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn labels_that_are_numbers_compare_as_numbers() {
    // `+1`, `1` and `1.0` are one class (SVM-light and LIBSVM define the label as a number), named as first written;
    // a file with `+1` and `1` used to train three classes ["-1", "+1", "1"].
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.svm");
    std::fs::write(&p, "+1 1:1\n1 2:1\n-1 1:2\n1.0 2:2\n-1.0 1:3\n").unwrap();
    let mut s = LibsvmRows::open(&p, &LibsvmOptions::default()).unwrap();
    assert_eq!(s.class_names(), ["-1", "+1"]);
    let (_, y, _) = all_rows(&mut s, 2);
    assert_eq!(y, [1, 1, 0, 1, 0]);
    // Rows read against known classes (a model's, a training set's) match by number too.
    let known = vec!["1.0".to_string(), "2.0".to_string()];
    let y = softmax_wgpu::data::labels_to_classes(
        &p,
        &["2".into(), "1".into(), "+2".into()],
        &[1, 2, 3],
        &known,
        "model's",
    )
    .unwrap();
    assert_eq!(y, [1, 0, 1]);
    // Labels that are not numbers compare as text.
    let (classes, y) =
        softmax_wgpu::data::encode_labels(&p, &["b".into(), "a".into(), "b".into()]).unwrap();
    assert_eq!(
        (classes, y),
        (vec!["a".to_string(), "b".to_string()], vec![1, 0, 1])
    );
}

#[test]
fn an_npy_header_read_from_the_wrong_offset_is_refused() {
    // A version-2 file (a u32 header length) whose version byte says 1 (a u16 length): np.load refuses it; it used to
    // be read two bytes off, into wrong values.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v2as1.npy");
    let mut header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }".to_vec();
    while !(12 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec(); // version 1 …
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes()); // … with a version-2 length
    bytes.extend_from_slice(&header);
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&p, &bytes).unwrap();
    let e = softmax_wgpu::data::read_npy_features(&p).unwrap_err();
    assert!(e.to_string().contains("not a dict literal"), "{e}");
    // The same file with its version byte right reads as it should.
    bytes[6] = 2;
    std::fs::write(&p, &bytes).unwrap();
    let x = softmax_wgpu::data::read_npy_features(&p).unwrap();
    assert_eq!(x, arr2(&[[1.0f32, 2.0], [3.0, 4.0]]));
}

#[test]
fn every_numeric_dtype_numpy_writes_reads_as_numpy_converts_it_to_float32() {
    // tests/data/npy_dtypes.py wrote these with np.save: float16/32/64, int8–int64, uint8–uint64 and bool, C and
    // Fortran order, both byte orders, and what np.asarray(a, np.float32) gives for each. Equal bit for bit: every
    // value in them is exact in f32 but the floats, which both round to nearest.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/npy_dtypes");
    let expected: std::collections::BTreeMap<String, Vec<f64>> =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(expected.len(), 42);
    let ydir = tempfile::tempdir().unwrap();
    let y = ydir.path().join("y.npy");
    std::fs::write(&y, data::npy_bytes("<i8", &[3], &[0u8; 24])).unwrap();
    for (name, want) in &expected {
        let want: Vec<u32> = want.iter().map(|&v| (v as f32).to_bits()).collect();
        let x = data::read_npy_features(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(x.dim(), (3, 4), "{name}");
        let got: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{name}");
        // Streamed a row at a time, the same.
        let mut s = NpyRows::open(&dir.join(name), &y, Some(2)).unwrap();
        let (streamed, _, _) = all_rows(&mut s, 1);
        assert_eq!(streamed, x, "{name} streamed");
    }
    // Integers f32 cannot hold exactly are refused at their NumPy index, not rounded.
    for (file, at, value) in [
        ("i4_inexact.npy", "index [1, 0]", "16777217"),
        ("u8_inexact.npy", "index [0, 1]", "18446744073709551615"),
    ] {
        let e = data::read_npy_features(&dir.join(file)).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let line = e.to_string();
        assert!(
            line.contains(file)
                && line.contains(at)
                && line.contains(value)
                && line.contains("no exact float32"),
            "{line}"
        );
    }
}

#[test]
fn an_npy_header_np_load_refuses_is_refused() {
    // NumPy's own reader (format._read_array_header) wants exactly the keys descr, fortran_order and shape, in a dict
    // literal; a header with another key, one missing, a shape that is not a tuple of sizes, or text after the dict
    // is refused by np.load, and here.
    let dir = tempfile::tempdir().unwrap();
    let header = |dict: &str| {
        let mut h = dict.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend([0u8; 16]);
        out
    };
    let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    let p = dir.path().join("ok.npy");
    std::fs::write(&p, header(ok)).unwrap();
    assert_eq!(data::read_npy_features(&p).unwrap().dim(), (2, 2));
    // Double quotes, no trailing comma, Python 2's long sizes: literal_eval reads them, and so do we.
    let p = dir.path().join("ok2.npy");
    std::fs::write(
        &p,
        header("{\"descr\": \"<f4\", \"shape\": (2L, 2L), \"fortran_order\": True}"),
    )
    .unwrap();
    assert_eq!(data::read_npy_features(&p).unwrap().dim(), (2, 2));
    for (name, dict, why) in [
        (
            "extra",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}",
            "keys",
        ),
        ("missing", "{'descr': '<f4', 'shape': (2, 2), }", "keys"),
        (
            "list shape",
            "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 2], }",
            "not a tuple",
        ),
        (
            "float shape",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 2), }",
            "not a size",
        ),
        (
            "order 0",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 2), }",
            "not True or False",
        ),
        (
            "after",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), } x",
            "after the header",
        ),
        (
            "open",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), ",
            "expected a quoted string",
        ),
        (
            "twice",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}",
            "twice",
        ),
    ] {
        let p = dir.path().join(format!("{name}.npy"));
        std::fs::write(&p, header(dict)).unwrap();
        let e = data::read_npy_features(&p).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{name}");
        let line = e.to_string();
        assert!(
            line.contains("not a valid NPY file") && line.contains(why),
            "{name}: {line}"
        );
    }
}
