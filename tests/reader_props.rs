//! Property tests of every reader: random bytes, and valid files with bytes flipped, inserted or cut, give either a
//! typed error or a result that holds what the reader promises (finite features, labels below the class count,
//! shapes that agree) — never a panic.

use std::path::Path;

use proptest::prelude::*;
use softmax_wgpu::data::{parse_csv, parse_npy_features, parse_npy_labels, MAX_CLASSES};
use softmax_wgpu::{Error, Model, Params};

fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(body);
    out
}

/// A version-1 NPY file whose header is `dict` as it is (padded to 64 bytes), then `body`.
fn raw_npy(dict: &str, body: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(body);
    out
}

fn valid_npy_x() -> Vec<u8> {
    let body: Vec<u8> = (0..12)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    npy("<f4", "(4, 3)", &body)
}

fn valid_npy_y() -> Vec<u8> {
    let body: Vec<u8> = [0i64, 2, 1, 2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy("<i8", "(4,)", &body)
}

fn valid_model() -> Vec<u8> {
    let m = Model {
        params: Params {
            w: ndarray::Array2::from_shape_fn((3, 2), |(i, j)| (i + j) as f32 * 0.1),
            b: ndarray::Array1::from(vec![0.5, -0.5]),
        },
        classes: vec!["cat".into(), "dog".into()],
        standardizer: Some(softmax_wgpu::data::Standardizer {
            mean: vec![0.0, 1.0, 2.0],
            std: vec![1.0, 2.0, 3.0],
        }),
        settings: serde_json::json!({"note": "property test"}),
    };
    m.to_bytes().unwrap()
}

const VALID_CSV: &[u8] = b"a,b,label\n1,2.5,cat\n3,-4e2,dog\n5,6,cat\n";

/// A valid file with a few random edits: byte overwrites, insertions and a possible cut.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (
        proptest::collection::vec((0..len, any::<u8>(), any::<bool>()), 1..6),
        proptest::option::of(0..len),
    )
        .prop_map(move |(edits, cut)| {
            let mut v = valid.clone();
            for (at, byte, insert) in edits {
                let at = at.min(v.len().saturating_sub(1));
                if insert {
                    v.insert(at, byte);
                } else if !v.is_empty() {
                    v[at] = byte;
                }
            }
            if let Some(c) = cut {
                v.truncate(c);
            }
            v
        })
}

/// Errors from bad bytes are the user's (exit 2), never an internal fault.
fn is_users(e: &Error) -> bool {
    e.is_input() && !matches!(e, Error::Internal(_))
}

fn check_csv(bytes: &[u8], label: Option<isize>) -> Result<(), TestCaseError> {
    match parse_csv(Path::new("p.csv"), bytes, label) {
        Ok(t) => {
            prop_assert!(t.x.iter().all(|v| v.is_finite()));
            prop_assert_eq!(t.x.nrows(), t.lines.len());
            if label.is_some() {
                prop_assert_eq!(t.labels.len(), t.x.nrows());
            }
        }
        Err(e) => prop_assert!(is_users(&e), "{e}"),
    }
    Ok(())
}

fn check_npy(bytes: &[u8], classes: Option<usize>) -> Result<(), TestCaseError> {
    match parse_npy_features(Path::new("x.npy"), bytes) {
        Ok(x) => prop_assert!(x.iter().all(|v| v.is_finite()) && !x.is_empty()),
        Err(e) => prop_assert!(is_users(&e), "{e}"),
    }
    match parse_npy_labels(Path::new("y.npy"), bytes, classes) {
        Ok(y) => {
            let limit = classes.unwrap_or(MAX_CLASSES);
            prop_assert!(!y.is_empty() && y.iter().all(|&c| (c as usize) < limit));
        }
        Err(e) => prop_assert!(is_users(&e), "{e}"),
    }
    Ok(())
}

/// The streaming reader on a file of `bytes` (labels valid for its 4 rows): an error or finite rows, never a panic.
fn check_npy_stream(bytes: &[u8], chunk: usize) -> Result<(), TestCaseError> {
    use softmax_wgpu::RowSource;
    let dir = tempfile::tempdir().unwrap();
    let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    std::fs::write(&xp, bytes).unwrap();
    std::fs::write(&yp, valid_npy_y()).unwrap();
    match softmax_wgpu::data::NpyRows::open(&xp, &yp, None) {
        Ok(mut s) => loop {
            match s.next_chunk(chunk) {
                Ok(Some(c)) => prop_assert!(c.x().iter().all(|v| v.is_finite())),
                Ok(None) => break,
                Err(e) => {
                    prop_assert!(is_users(&e), "{e}");
                    break;
                }
            }
        },
        Err(e) => prop_assert!(is_users(&e), "{e}"),
    }
    Ok(())
}

const VALID_SVM: &[u8] = b"1 qid:2 1:0.5 3:2 # c\n-1 2:1.5\n2 1:-3e-2 4:7\n";

/// `bytes` as a file read by `open` a chunk of `chunk` rows at a time, dense and sparse: an error (the user's), or
/// finite rows whose labels are below the class count and, sparse, whose columns ascend below the width.
fn check_rows_file(
    name: &str,
    bytes: &[u8],
    chunk: usize,
    open: impl Fn(&Path) -> softmax_wgpu::Result<Box<dyn softmax_wgpu::RowSource>>,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    let mut s = match open(&p) {
        Ok(s) => s,
        Err(e) => {
            prop_assert!(is_users(&e), "{e}");
            return Ok(());
        }
    };
    let (d, k) = (s.features(), s.classes());
    prop_assert!(d >= 1 && k >= 2);
    loop {
        match s.next_chunk(chunk) {
            Ok(Some(c)) => {
                prop_assert!(c.x().iter().all(|v| v.is_finite()) && c.x().ncols() == d);
                prop_assert!(c.y().iter().all(|&y| (y as usize) < k));
            }
            Ok(None) => break,
            Err(e) => {
                prop_assert!(is_users(&e), "{e}");
                return Ok(());
            }
        }
    }
    s.rewind().unwrap();
    while let Some(c) = s.next_sparse(chunk).unwrap() {
        prop_assert!(c.check(name, k).is_ok());
    }
    Ok(())
}

fn open_svm(p: &Path) -> softmax_wgpu::Result<Box<dyn softmax_wgpu::RowSource>> {
    let o = softmax_wgpu::data::LibsvmOptions::default();
    Ok(Box::new(softmax_wgpu::data::LibsvmRows::open(p, &o)?))
}

fn open_csv(p: &Path) -> softmax_wgpu::Result<Box<dyn softmax_wgpu::RowSource>> {
    Ok(Box::new(softmax_wgpu::data::CsvRows::open(p, -1, None)?))
}

fn open_idx(p: &Path) -> softmax_wgpu::Result<Box<dyn softmax_wgpu::RowSource>> {
    let y = p.with_file_name("labels-idx1-ubyte");
    std::fs::write(&y, [0u8, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2]).unwrap();
    Ok(Box::new(softmax_wgpu::data::IdxRows::open(p, &y, None)?))
}

fn valid_idx() -> Vec<u8> {
    let mut v = vec![0u8, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2];
    v.extend((0..12).map(|i| i * 20));
    v
}

fn check_model(bytes: &[u8]) -> Result<(), TestCaseError> {
    match Model::from_bytes(Path::new("m.safetensors"), bytes) {
        Ok(m) => {
            let s = m.shape();
            prop_assert!(s.k >= 2 && s.d >= 1);
            prop_assert_eq!(m.classes.len(), s.k);
            prop_assert_eq!(m.params.b.len(), s.k);
            prop_assert!(m
                .params
                .w
                .iter()
                .chain(m.params.b.iter())
                .all(|v| v.is_finite()));
            // A model that loads can predict without panicking.
            let p = m
                .predict(ndarray::Array2::<f32>::zeros((2, s.d)).view())
                .unwrap();
            prop_assert!(p.iter().all(|&c| (c as usize) < s.k));
        }
        Err(e) => prop_assert!(is_users(&e), "{e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn csv_from_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), label in proptest::option::of(-4isize..4)) {
        check_csv(&bytes, label)?;
    }

    #[test]
    fn csv_from_random_text(text in "[0-9a-z,.\\-+eE\" \n\r]{0,120}", label in proptest::option::of(-3isize..3)) {
        check_csv(text.as_bytes(), label)?;
    }

    #[test]
    fn csv_mutated(bytes in mutated(VALID_CSV.to_vec()), label in proptest::option::of(-3isize..3)) {
        check_csv(&bytes, label)?;
    }

    #[test]
    fn npy_from_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), classes in proptest::option::of(0usize..100)) {
        check_npy(&bytes, classes)?;
    }

    #[test]
    fn npy_with_random_headers(descr in "[<>|=]?[a-zA-Z]?[0-9]{0,3}", shape in "\\(([0-9]{0,21}, ?){0,3}[0-9]{0,21}\\)", body in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_npy(&npy(&descr, &shape, &body), Some(3))?;
    }

    #[test]
    fn npy_with_random_dict_text(dict in "\\{[ '\"a-z_:,()\\[\\]0-9<>TF.L-]{0,90}\\}?[ x]{0,2}", body in proptest::collection::vec(any::<u8>(), 0..48)) {
        check_npy(&raw_npy(&dict, &body), Some(3))?;
    }

    #[test]
    fn npy_headers_in_any_key_order_spacing_and_quotes_read_alike(
        order in Just([0usize, 1, 2]).prop_shuffle(),
        space in "[ ]{0,3}",
        double in any::<bool>(),
        comma in any::<bool>(),
    ) {
        let q = if double { '"' } else { '\'' };
        let items = [
            format!("{q}descr{q}:{space}{q}<f4{q}"),
            format!("{q}fortran_order{q}:{space}False"),
            format!("{q}shape{q}:{space}({space}4,{space}3{space})"),
        ];
        let body: Vec<String> = order.iter().map(|&i| items[i].clone()).collect();
        let dict = format!("{{{space}{}{}{space}}}", body.join(&format!(",{space}")), if comma { "," } else { "" });
        let x = parse_npy_features(Path::new("x.npy"), &raw_npy(&dict, &valid_npy_x()[128..]));
        let want = parse_npy_features(Path::new("x.npy"), &valid_npy_x()).unwrap();
        prop_assert_eq!(x.map_err(|e| e.to_string()), Ok(want), "{}", dict);
    }

    #[test]
    fn npy_features_mutated(bytes in mutated(valid_npy_x())) {
        check_npy(&bytes, None)?;
    }

    #[test]
    fn npy_labels_mutated(bytes in mutated(valid_npy_y()), classes in proptest::option::of(0usize..5)) {
        check_npy(&bytes, classes)?;
    }

    #[test]
    fn npy_streamed_mutated(bytes in mutated(valid_npy_x()), chunk in 1usize..6) {
        check_npy_stream(&bytes, chunk)?;
    }

    #[test]
    fn libsvm_from_random_text(text in "[0-9a-z:#. \\-+eE\n\r]{0,120}", chunk in 1usize..5) {
        check_rows_file("r.svm", text.as_bytes(), chunk, open_svm)?;
    }

    #[test]
    fn libsvm_mutated(bytes in mutated(VALID_SVM.to_vec()), chunk in 1usize..5) {
        check_rows_file("m.svm", &bytes, chunk, open_svm)?;
    }

    #[test]
    fn csv_streamed_mutated(bytes in mutated(VALID_CSV.to_vec()), chunk in 1usize..5) {
        check_rows_file("m.csv", &bytes, chunk, open_csv)?;
    }

    #[test]
    fn idx_mutated(bytes in mutated(valid_idx()), chunk in 1usize..5) {
        check_rows_file("m-idx3-ubyte", &bytes, chunk, open_idx)?;
    }

    #[test]
    fn model_from_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_model(&bytes)?;
    }

    #[test]
    fn model_mutated(bytes in mutated(valid_model())) {
        check_model(&bytes)?;
    }
}

#[test]
fn the_unmutated_files_are_valid() {
    assert!(parse_csv(Path::new("p.csv"), VALID_CSV, Some(-1)).is_ok());
    assert_eq!(
        parse_npy_features(Path::new("x.npy"), &valid_npy_x())
            .unwrap()
            .dim(),
        (4, 3)
    );
    assert_eq!(
        parse_npy_labels(Path::new("y.npy"), &valid_npy_y(), Some(3)).unwrap(),
        [0, 2, 1, 2]
    );
    let m = Model::from_bytes(Path::new("m.safetensors"), &valid_model()).unwrap();
    assert_eq!(m.classes, ["cat", "dog"]);
    for (name, bytes, open) in [
        ("v.svm", VALID_SVM.to_vec(), open_svm as fn(&Path) -> _),
        ("v.csv", VALID_CSV.to_vec(), open_csv),
        ("v-idx3-ubyte", valid_idx(), open_idx),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(open(&p).unwrap().rows(), Some(3), "{name}");
    }
}
