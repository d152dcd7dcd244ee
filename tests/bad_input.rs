//! Every bad input a user can give — malformed files (CSV, NPY, model), impossible flags, sizes that overflow or do
//! not fit — ends the same way: exit code 2, one short line on stderr starting with "error: " that names what is
//! wrong, no panic, and an existing `--out` file byte-identical afterwards. One table; each row is a case.

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::{tensor::TensorView, Dtype};

const PRECIOUS: &[u8] = b"the user's previous model, which must survive";

fn npy(descr: &str, shape: &str, fortran: bool, body: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': {descr}, 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
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

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A safetensors model with the given weight [k, d] and bias, dtype and class names.
fn model(k: usize, d: usize, w: &[f32], b: &[f32], classes: Option<&str>) -> Vec<u8> {
    let wb = f32s(w);
    let bb = f32s(b);
    let tensors = vec![
        (
            "weight",
            TensorView::new(Dtype::F32, vec![k, d], &wb).unwrap(),
        ),
        (
            "bias",
            TensorView::new(Dtype::F32, vec![b.len()], &bb).unwrap(),
        ),
    ];
    let mut meta = std::collections::HashMap::new();
    if let Some(c) = classes {
        meta.insert("classes".to_string(), c.to_string());
    }
    safetensors::serialize(tensors, Some(meta)).unwrap()
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        let x = npy(
            "'<f4'",
            "(4, 2)",
            false,
            &f32s(&[1., 2., 3., 4., 5., 6., 7., 8.]),
        );
        f.write("x.npy", &x);
        f.write("y.npy", &npy("'<i8'", "(4,)", false, &i64s(&[0, 1, 0, 1])));
        f.write("good.csv", b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n");
        f.write(
            "model.safetensors",
            &model(
                2,
                2,
                &[0.1, 0.2, 0.3, 0.4],
                &[0.0, 0.0],
                Some("[\"x\",\"y\"]"),
            ),
        );
        f
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.file")
    }
}

/// One case: what the user typed (files written first) and the words the error must contain.
struct Case {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    args: Vec<String>,
    expect: Vec<&'static str>,
}

fn case(name: &'static str, args: &[&str], expect: &[&'static str]) -> Case {
    Case {
        name,
        files: Vec::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: expect.to_vec(),
    }
}

impl Case {
    fn file(mut self, name: &'static str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((name, bytes.into()));
        self
    }
}

fn csv_train(name: &'static str, file: &'static str, text: &str, expect: &[&'static str]) -> Case {
    case(name, &["train", "--device", "cpu", "--data", file], expect).file(file, text.as_bytes())
}

fn npy_train(name: &'static str, x: Vec<u8>, expect: &[&'static str]) -> Case {
    case(
        name,
        &[
            "train", "--device", "cpu", "--data", "bad.npy", "--labels", "y.npy",
        ],
        expect,
    )
    .file("bad.npy", x)
}

fn labels_train(name: &'static str, y: Vec<u8>, extra: &[&str], expect: &[&'static str]) -> Case {
    let mut args = vec![
        "train", "--device", "cpu", "--data", "x.npy", "--labels", "ybad.npy",
    ];
    args.extend_from_slice(extra);
    case(name, &args, expect).file("ybad.npy", y)
}

fn predict_with(name: &'static str, model_bytes: Vec<u8>, expect: &[&'static str]) -> Case {
    case(
        name,
        &[
            "predict",
            "--model",
            "bad.safetensors",
            "--data",
            "good.csv",
        ],
        expect,
    )
    .file("bad.safetensors", model_bytes)
}

fn flag(name: &'static str, extra: &[&str], expect: &[&'static str]) -> Case {
    let mut args = vec!["train", "--device", "cpu"];
    args.extend_from_slice(extra);
    case(name, &args, expect)
}

fn svm_train(name: &'static str, text: &str, extra: &[&str], expect: &[&'static str]) -> Case {
    let mut args = vec!["train", "--device", "cpu", "--data", "bad.svm"];
    args.extend_from_slice(extra);
    case(name, &args, expect).file("bad.svm", text.as_bytes())
}

/// An IDX file: magic (0, 0, type, dims), big-endian u32 dimensions, then `body`.
fn idx(kind: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(body);
    out
}

fn idx_train(name: &'static str, x: Vec<u8>, y: Vec<u8>, expect: &[&'static str]) -> Case {
    case(
        name,
        &[
            "train",
            "--device",
            "cpu",
            "--data",
            "bad-images-idx3-ubyte",
            "--labels",
            "bad-labels-idx1-ubyte",
        ],
        expect,
    )
    .file("bad-images-idx3-ubyte", x)
    .file("bad-labels-idx1-ubyte", y)
}

fn cases() -> Vec<Case> {
    let f4 = "'<f4'";
    let images = || idx(0x08, &[4, 2, 2], &[0, 64, 128, 255].repeat(4));
    let labels = || idx(0x08, &[4], &[0, 1, 0, 1]);
    vec![
        // LIBSVM files.
        svm_train(
            "LIBSVM duplicated index",
            "1 1:0.5 3:2\n2 2:1 2:3\n",
            &[],
            &["bad.svm", "line 2", "index 2 repeats"],
        ),
        svm_train(
            "LIBSVM descending index",
            "1 4:1 2:1\n2 1:1\n",
            &[],
            &["bad.svm", "line 1", "below the previous index 4"],
        ),
        svm_train(
            "LIBSVM index out of range",
            "1 1:1 9:1\n2 2:1\n",
            &["--features", "5"],
            &["bad.svm", "line 1", "out of range for --features 5"],
        ),
        svm_train(
            "LIBSVM index 0 in a 1-based file",
            "1 0:1\n2 2:1\n",
            &[],
            &["bad.svm", "line 1", "--zero-based"],
        ),
        svm_train(
            "LIBSVM unparsable value",
            "1 1:1\n2 2:abc\n",
            &[],
            &["bad.svm", "line 2", "\"abc\" is not a number"],
        ),
        svm_train(
            "LIBSVM NaN value",
            "1 1:1\n2 2:nan\n",
            &[],
            &["bad.svm", "line 2", "not finite"],
        ),
        svm_train(
            "LIBSVM missing label",
            "1 1:1\n2:1 3:1\n",
            &[],
            &["bad.svm", "line 2", "no label"],
        ),
        svm_train(
            "LIBSVM empty line",
            "1 1:1\n\n2 1:1\n",
            &[],
            &["bad.svm", "line 2", "no label"],
        ),
        svm_train(
            "LIBSVM entry without a colon",
            "1 1:1\n2 3\n",
            &["--format", "libsvm"],
            &["bad.svm", "line 2", "not index:value"],
        ),
        svm_train(
            "LIBSVM one class",
            "1 1:1\n1 2:1\n",
            &[],
            &["bad.svm", "at least 2 classes"],
        ),
        svm_train(
            "LIBSVM with --labels",
            "1 1:1\n2 2:1\n",
            &["--labels", "y.npy"],
            &["--labels", "holds its labels"],
        ),
        // IDX files.
        idx_train(
            "IDX wrong magic",
            b"\x00\x01\x08\x03rest".to_vec(),
            labels(),
            &["bad-images-idx3-ubyte", "not an IDX file"],
        ),
        idx_train(
            "IDX truncated",
            idx(0x08, &[4, 2, 2], &[0; 10]),
            labels(),
            &["bad-images-idx3-ubyte", "truncated", "need 16 bytes"],
        ),
        idx_train(
            "IDX dimensions overflow",
            idx(0x08, &[u32::MAX, u32::MAX, u32::MAX], &[]),
            labels(),
            &["bad-images-idx3-ubyte", "larger than any file"],
        ),
        idx_train(
            "IDX labels of another length",
            images(),
            idx(0x08, &[3], &[0, 1, 0]),
            &["bad-labels-idx1-ubyte", "3 labels", "4 rows"],
        ),
        idx_train(
            "IDX labels truncated",
            images(),
            idx(0x08, &[4], &[0, 1]),
            &["bad-labels-idx1-ubyte", "truncated"],
        ),
        idx_train(
            "IDX images with trailing data",
            idx(0x08, &[4, 2, 2], &[7; 17]),
            labels(),
            &[
                "bad-images-idx3-ubyte",
                "byte 32",
                "trailing data",
                "declare 16 bytes",
            ],
        ),
        idx_train(
            "IDX labels with trailing data",
            images(),
            idx(0x08, &[4], &[0, 1, 0, 1, 1]),
            &["bad-labels-idx1-ubyte", "trailing data"],
        ),
        idx_train(
            "IDX gzip that is not",
            images(),
            b"\x1f\x8bnot gzip at all".to_vec(),
            &["bad-labels-idx1-ubyte", "gzip"],
        ),
        // gen and the memory flags.
        case(
            "gen bad shape",
            &[
                "gen",
                "--shape",
                "10,0,3",
                "--out",
                "g.npy",
                "--labels-out",
                "gy.npy",
            ],
            &["--shape"],
        ),
        case(
            "gen without labels",
            &["gen", "--shape", "10,2,3", "--out", "g.npy"],
            &["--labels-out"],
        ),
        case(
            "gen density",
            &[
                "gen",
                "--shape",
                "10,2,3",
                "--format",
                "libsvm",
                "--density",
                "2",
                "--out",
                "g.svm",
            ],
            &["--density", "(0, 1]"],
        ),
        flag(
            "memory budget unit",
            &["--memory-budget", "12 parsecs"],
            &["--memory-budget", "unknown unit"],
        ),
        flag(
            "memory budget zero",
            &["--memory-budget", "0"],
            &["--memory-budget", "between 1 byte"],
        ),
        // CSV files.
        csv_train(
            "ragged row",
            "r.csv",
            "1,2,0\n3,4,1\n5,1\n",
            &["r.csv", "line 3", "expected 3 columns"],
        ),
        csv_train(
            "text cell",
            "t.csv",
            "1,2,0\n3,abc,1\n",
            &["t.csv", "line 2, column 2", "\"abc\""],
        ),
        csv_train(
            "NaN cell",
            "n.csv",
            "1,2,0\nnan,4,1\n",
            &["n.csv", "line 2, column 1", "NaN"],
        ),
        csv_train(
            "infinite cell",
            "i.csv",
            "1,2,0\n3,4,1\n1,-inf,0\n",
            &["i.csv", "line 3, column 2", "infinite"],
        ),
        csv_train(
            "beyond f32",
            "big.csv",
            "1,1e39,0\n2,3,1\n",
            &["big.csv", "line 1, column 2", "f32 range"],
        ),
        csv_train("empty file", "e.csv", "", &["e.csv", "empty"]),
        csv_train(
            "header only",
            "h.csv",
            "a,b,c\n",
            &["h.csv", "no data rows"],
        ),
        csv_train(
            "label only",
            "l.csv",
            "0\n1\n",
            &["l.csv", "line 1", "at least one feature"],
        ),
        csv_train(
            "empty label",
            "el.csv",
            "1,2,0\n3,4,\n",
            &["el.csv", "line 2, column 3", "empty label"],
        ),
        csv_train(
            "one class",
            "one.csv",
            "1,2,0\n3,4,0\n",
            &["one.csv", "at least 2 classes"],
        ),
        csv_train("not UTF-8", "bin.csv", "1,2,0\n", &["bin.csv"])
            .file("bin.csv", b"1,2,0\n\xff\xfe,\x00,1\n".to_vec()),
        case(
            "label column outside",
            &[
                "train",
                "--device",
                "cpu",
                "--data",
                "good.csv",
                "--label-column",
                "7",
            ],
            &["--label-column", "7"],
        ),
        case(
            "missing file",
            &["train", "--data", "nowhere.csv"],
            &["nowhere.csv", "No such file"],
        ),
        case(
            "directory as data",
            &["train", "--device", "cpu", "--data", "."],
            &["Is a directory"],
        ),
        case(
            "test of other width",
            &[
                "train", "--device", "cpu", "--data", "good.csv", "--test", "w.csv",
            ],
            &["w.csv", "3 features", "has 2"],
        )
        .file("w.csv", "1,2,3,x\n"),
        case(
            "test with unknown class",
            &[
                "train", "--device", "cpu", "--data", "good.csv", "--test", "u.csv",
            ],
            &["u.csv", "line 1", "\"z\""],
        )
        .file("u.csv", "1,2,z\n"),
        // NPY feature files.
        npy_train(
            "not NPY",
            b"PK\x03\x04 zip".to_vec(),
            &["bad.npy", "not a valid NPY file"],
        ),
        npy_train(
            "truncated data",
            npy(f4, "(4, 2)", false, &f32s(&[1.0; 5])),
            &["bad.npy", "truncated"],
        ),
        npy_train(
            "complex",
            npy("'<c8'", "(4, 2)", false, &[0; 64]),
            &["bad.npy", "complex"],
        ),
        npy_train(
            "object",
            npy("'|O'", "(4, 2)", false, &[0; 64]),
            &["bad.npy", "objects"],
        ),
        npy_train(
            "datetime",
            npy("'<M8[ns]'", "(4, 2)", false, &[0; 64]),
            &["bad.npy", "dates or times"],
        ),
        npy_train(
            "unicode",
            npy("'<U3'", "(4, 2)", false, &[0; 96]),
            &["bad.npy", "strings"],
        ),
        npy_train(
            "structured",
            npy("[('a', '<f4')]", "(4, 2)", false, &[0; 32]),
            &["bad.npy", "structured"],
        ),
        case(
            // Streamed (a 16-byte budget): the NaN is met in the reader thread, mid-epoch, and still ends the run
            // with its index and nothing written.
            "NaN met while streaming",
            &[
                "train",
                "--device",
                "cpu",
                "--data",
                "bad.npy",
                "--labels",
                "y.npy",
                "--memory-budget",
                "16",
                "--val-split",
                "0",
            ],
            &["bad.npy", "index [3, 1]", "NaN"],
        )
        .file(
            "bad.npy",
            npy(
                f4,
                "(4, 2)",
                false,
                &f32s(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, f32::NAN]),
            ),
        ),
        npy_train(
            "shape overflows",
            npy(
                f4,
                "(18446744073709551615, 18446744073709551615)",
                false,
                &[],
            ),
            &["bad.npy", "larger than any file"],
        ),
        npy_train(
            "huge shape, short file",
            npy(f4, "(1000000000, 1000000)", false, &[0; 8]),
            &["bad.npy", "truncated"],
        ),
        npy_train(
            "1-D features",
            npy(f4, "(4,)", false, &f32s(&[1.0; 4])),
            &["bad.npy", "2-D"],
        ),
        npy_train(
            "integer feature beyond f32",
            npy(
                "'<i4'",
                "(4, 2)",
                false,
                &[0i32, 0, 16_777_217, 0, 0, 0, 0, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            ),
            &["bad.npy", "index [1, 0]", "16777217", "no exact float32"],
        ),
        npy_train(
            "complex features",
            npy("'<c8'", "(4, 2)", false, &[0; 64]),
            &["bad.npy", "complex"],
        ),
        npy_train(
            // Column-major: element 5 is column 1, row 1.
            "NaN in a Fortran-order array",
            npy(
                f4,
                "(4, 2)",
                true,
                &f32s(&[1.0, 1.0, 1.0, 1.0, 1.0, f32::NAN, 1.0, 1.0]),
            ),
            &["bad.npy", "index [1, 1]", "NaN"],
        ),
        npy_train(
            "NaN feature",
            npy(
                f4,
                "(4, 2)",
                false,
                &f32s(&[1., 2., 3., f32::NAN, 5., 6., 7., 8.]),
            ),
            &["bad.npy", "index [1, 1]", "NaN"],
        ),
        npy_train(
            "empty array",
            npy(f4, "(0, 2)", false, &[]),
            &["bad.npy", "empty"],
        ),
        npy_train(
            "header past end",
            b"\x93NUMPY\x01\x00\xff\x00{'descr'".to_vec(),
            &["bad.npy", "past the end"],
        ),
        npy_train(
            "version 9",
            b"\x93NUMPY\x09\x00\x10\x00{}              ".to_vec(),
            &["bad.npy", "version 9"],
        ),
        npy_train(
            "shape not a size",
            npy(f4, "(4, two)", false, &[]),
            &["bad.npy", "not a size"],
        ),
        // NPY label files and their flags.
        labels_train(
            "negative label",
            npy("'<i8'", "(4,)", false, &i64s(&[0, -1, 1, 0])),
            &[],
            &["ybad.npy", "index 1", "negative"],
        ),
        labels_train(
            "label beyond --classes",
            npy("'<i8'", "(4,)", false, &i64s(&[0, 1, 5, 0])),
            &["--classes", "3"],
            &["ybad.npy", "index 2", "not below the 3 classes"],
        ),
        labels_train(
            "label beyond any class count",
            npy("'<i8'", "(4,)", false, &i64s(&[0, 1, 1 << 40, 0])),
            &[],
            &["ybad.npy", "index 2", "too large"],
        ),
        labels_train(
            "float labels",
            npy(f4, "(4,)", false, &f32s(&[0.0, 1.0, 0.0, 1.0])),
            &[],
            &["ybad.npy", "integer"],
        ),
        labels_train(
            "too few labels",
            npy("'<i8'", "(3,)", false, &i64s(&[0, 1, 0])),
            &[],
            &["ybad.npy", "3 labels", "4 rows"],
        ),
        labels_train(
            "one class",
            npy("'<i8'", "(4,)", false, &i64s(&[0, 0, 0, 0])),
            &[],
            &["ybad.npy", "at least 2 classes"],
        ),
        labels_train(
            "huge --classes",
            npy("'<i8'", "(4,)", false, &i64s(&[0, 1, 0, 1])),
            &["--classes", "1000000000000"],
            &["--classes", "65536"],
        ),
        labels_train(
            "--classes 1",
            npy("'<i8'", "(4,)", false, &i64s(&[0, 0, 0, 0])),
            &["--classes", "1"],
            &["--classes"],
        ),
        // 200,000 features × 65,536 classes: a 100 GB model, refused before it is allocated.
        case(
            "model larger than memory",
            &[
                "train",
                "--device",
                "cpu",
                "--data",
                "wide.npy",
                "--labels",
                "y2.npy",
                "--classes",
                "65536",
            ],
            &["200000 features × 65536 classes", "this machine"],
        )
        .file(
            "wide.npy",
            npy("'<f4'", "(2, 200000)", false, &vec![0u8; 1_600_000]),
        )
        .file("y2.npy", npy("'<i8'", "(2,)", false, &i64s(&[0, 1]))),
        case(
            "NPY without labels",
            &["train", "--device", "cpu", "--data", "x.npy"],
            &["--labels", "required"],
        ),
        // Model files.
        predict_with(
            "not a model",
            b"garbage".to_vec(),
            &["bad.safetensors", "not a safetensors model"],
        ),
        predict_with(
            "zero classes",
            model(0, 2, &[], &[], None),
            &["bad.safetensors", "2 to 65536 classes"],
        ),
        predict_with(
            "one class",
            model(1, 2, &[0.1, 0.2], &[0.0], None),
            &["bad.safetensors", "2 to 65536 classes"],
        ),
        predict_with(
            "no features",
            model(2, 0, &[], &[0.0, 0.0], None),
            &["bad.safetensors", "at least 1 feature"],
        ),
        predict_with(
            "NaN weight",
            model(2, 2, &[0.1, f32::NAN, 0.3, 0.4], &[0.0, 0.0], None),
            &["bad.safetensors", "weight", "not finite"],
        ),
        predict_with(
            "bias of other length",
            model(2, 2, &[0.1, 0.2, 0.3, 0.4], &[0.0, 0.0, 0.0], None),
            &["bad.safetensors", "bias has shape [3]"],
        ),
        predict_with(
            "class names miscounted",
            model(
                2,
                2,
                &[0.1, 0.2, 0.3, 0.4],
                &[0.0, 0.0],
                Some("[\"a\",\"b\",\"c\"]"),
            ),
            &["bad.safetensors", "3 class names for 2 classes"],
        ),
        predict_with(
            "class named twice",
            model(
                2,
                2,
                &[0.1, 0.2, 0.3, 0.4],
                &[0.0, 0.0],
                Some("[\"a\",\"a\"]"),
            ),
            &["bad.safetensors", "twice"],
        ),
        case(
            "rows of other width",
            &[
                "predict",
                "--model",
                "model.safetensors",
                "--data",
                "w3.csv",
            ],
            &["w3.csv", "4 columns"],
        )
        .file("w3.csv", "1,2,3,4\n"),
        // Flags.
        flag(
            "--epochs 0",
            &["--epochs", "0"],
            &["--epochs", "1..=1000000", "got 0"],
        ),
        flag(
            "--epochs 10¹²",
            &["--epochs", "1000000000000"],
            &["--epochs", "1..=1000000"],
        ),
        flag(
            "--epochs not a number",
            &["--epochs", "ten"],
            &["--epochs", "ten"],
        ),
        flag("--batch-size 0", &["--batch-size", "0"], &["--batch-size"]),
        flag("--lr negative", &["--lr", "-0.1"], &["--lr", "positive"]),
        flag("--lr NaN", &["--lr", "nan"], &["--lr"]),
        flag("--lr infinite", &["--lr", "inf"], &["--lr"]),
        flag("--l2 negative", &["--l2", "-1"], &["--l2"]),
        flag(
            "--val-split 1",
            &["--val-split", "1"],
            &["--val-split", "[0, 1)"],
        ),
        flag(
            "--chunk-mib 0",
            &["--chunk-mib", "0"],
            &["--chunk-mib", "1..="],
        ),
        flag(
            "--chunk-mib huge",
            &["--chunk-mib", "18446744073709551615"],
            &["--chunk-mib"],
        ),
        flag(
            "--synthetic zero width",
            &["--synthetic", "10,0,3"],
            &["--synthetic", "D ≥ 1"],
        ),
        flag(
            "--synthetic one class",
            &["--synthetic", "10,3,1"],
            &["--synthetic"],
        ),
        flag(
            "--synthetic garbled",
            &["--synthetic", "10;3;2"],
            &["--synthetic", "N,D,K"],
        ),
        flag(
            "--synthetic overflows",
            &["--synthetic", "18446744073709551615,4,2"],
            &["--synthetic", "overflows 64 bits"],
        ),
        flag(
            "--synthetic beyond memory",
            &["--synthetic", "1000000000000,1000,2"],
            &["--synthetic", "this machine"],
        ),
        flag(
            "--check-every 0",
            &["--check-every", "0"],
            &["--check-every"],
        ),
        flag(
            "--check-tolerance negative",
            &["--check-every", "2", "--check-tolerance", "-1"],
            &["--check-tolerance"],
        ),
        flag(
            "--backend unknown",
            &["--backend", "nonsense"],
            &["--backend", "nonsense", "possible values"],
        ),
        flag("unknown flag", &["--frobnicate"], &["--frobnicate"]),
        // Sample weights (the embedded digits have 1,797 rows).
        flag(
            "--sample-weight wrong count",
            &["--sample-weight", "w.txt"],
            &["w.txt", "holds 3 sample weights for the 1797 rows"],
        )
        .file("w.txt", "1\n2\n3\n"),
        flag(
            "--sample-weight negative",
            &["--sample-weight", "w.txt"],
            &["w.txt", "line 2", "-1", "≥ 0"],
        )
        .file("w.txt", "1\n-1\n"),
        flag(
            "--sample-weight NaN",
            &["--sample-weight", "w.txt"],
            &["w.txt", "line 1", "NaN"],
        )
        .file("w.txt", "nan\n"),
        flag(
            "--sample-weight garbled",
            &["--sample-weight", "w.txt"],
            &["w.txt", "line 3", "heavy"],
        )
        .file("w.txt", "weight\n1\nheavy\n"),
        flag(
            "--sample-weight all zero",
            &["--sample-weight", "w.txt"],
            &["w.txt", "every sample weight is 0"],
        )
        .file("w.txt", "0\n0\n"),
        flag(
            "--sample-weight missing",
            &["--sample-weight", "nope.npy"],
            &["nope.npy"],
        ),
        // Class weights.
        flag(
            "--class-weight garbled",
            &["--class-weight", "heavy"],
            &["--class-weight", "NAME=W"],
        ),
        flag(
            "--class-weight unknown class",
            &["--class-weight", "11=2"],
            &["--class-weight", "11", "a class of the data"],
        ),
        flag(
            "--class-weight negative",
            &["--class-weight", "3=-1"],
            &["--class-weight", "positive"],
        ),
        flag(
            "--class-weight not a number",
            &["--class-weight", "3=lots"],
            &["--class-weight", "lots"],
        ),
        // L-BFGS: its own flags, and what it cannot combine with.
        flag(
            "--max-iter 0",
            &["--optimizer", "lbfgs", "--max-iter", "0"],
            &["--max-iter", "1..="],
        ),
        flag(
            "--tol negative",
            &["--optimizer", "lbfgs", "--tol", "-1"],
            &["--tol", "≥ 0"],
        ),
        flag(
            "--lbfgs-history 0",
            &["--optimizer", "lbfgs", "--lbfgs-history", "0"],
            &["--lbfgs-history"],
        ),
        flag(
            "--max-iter without lbfgs",
            &["--optimizer", "adam", "--max-iter", "50"],
            &["--max-iter", "--optimizer lbfgs", "--epochs"],
        ),
        flag(
            "--no-intercept with a minibatch optimizer",
            &["--optimizer", "adam", "--no-intercept"],
            &["--no-intercept", "L-BFGS only"],
        ),
        flag(
            "--schedule with lbfgs",
            &["--optimizer", "lbfgs", "--schedule", "cosine"],
            &["--schedule", "line search"],
        ),
        flag(
            "--early-stopping with lbfgs",
            &["--optimizer", "lbfgs", "--early-stopping"],
            &["--early-stopping", "minibatch"],
        ),
        flag(
            "--resume with lbfgs",
            &["--optimizer", "lbfgs", "--resume", "ck.json"],
            &["--resume", "minibatch"],
        ),
        case(
            "--out in a missing directory",
            &[
                "train",
                "--device",
                "cpu",
                "--out",
                "no/such/dir/m.safetensors",
            ],
            &["--out", "no/such/dir"],
        ),
        case(
            "--out is a directory",
            &["train", "--device", "cpu", "--out", "."],
            &["--out", "not a directory"],
        ),
        case(
            "validate --steps 0",
            &["validate", "--steps", "0"],
            &["--steps", "1..=100000"],
        ),
        case(
            "validate --steps 10¹⁵",
            &["validate", "--steps", "1000000000000000"],
            &["--steps", "1..=100000"],
        ),
        case(
            "bench --lanes 3",
            &["bench", "--device", "cpu", "--lanes", "3"],
            &["--lanes", "1, 2, 4, 8, 16 or 32"],
        ),
    ]
}

fn run(dir: &Path, args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn every_bad_input_exits_2_with_one_short_line_and_keeps_the_output() {
    let cases = cases();
    assert!(cases.len() >= 40, "the table holds {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let files = Files::new();
        for (name, bytes) in &c.files {
            files.write(name, bytes);
        }
        std::fs::write(files.out(), PRECIOUS).unwrap();
        let mut args = c.args.clone();
        // Every command that writes gets an existing --out to protect (unless the case is about --out itself).
        if matches!(args[0].as_str(), "train" | "predict") && !args.iter().any(|a| a == "--out") {
            args.extend([
                "--out".to_string(),
                files.out().to_str().unwrap().to_string(),
            ]);
        }
        let out = run(files.dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit code {:?}", out.status.code()));
        }
        if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            problems.push("a panic".to_string());
        }
        match lines.last() {
            Some(last) if last.starts_with("error: ") => {
                if last.chars().count() > 300 {
                    problems.push(format!("a {}-character message", last.chars().count()));
                }
                for e in &c.expect {
                    if !last.contains(e) {
                        problems.push(format!("no {e:?}"));
                    }
                }
            }
            _ => problems.push("no final error line".to_string()),
        }
        let error_lines = lines.iter().filter(|l| l.starts_with("error")).count();
        if error_lines != 1 {
            problems.push(format!("{error_lines} error lines"));
        }
        if std::fs::read(files.out()).unwrap() != PRECIOUS {
            problems.push("--out was changed".to_string());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} — stderr: {stderr}",
                c.name,
                problems.join(", ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
