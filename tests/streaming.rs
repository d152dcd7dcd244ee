//! NPY features read a chunk at a time (`data::NpyRows`): the same rows as the whole-file reader whatever the chunk
//! size, the same training, and the same strict errors (a NaN at its index, a truncated file, mismatched labels).

mod common;

use common::*;
use softmax_wgpu::cpu::FastCpu;
use softmax_wgpu::data::{self, HostRows, NpyRows};
use softmax_wgpu::{fit, Backend, RowSource, Shape, TrainConfig};

fn files(
    n: usize,
    d: usize,
    k: usize,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (uniform(n, d, -1.0, 1.0, 4), labels(n, k, 5));
    let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    data::write_npy_features(&xp, x.view()).unwrap();
    data::write_npy_labels(&yp, &y).unwrap();
    (dir, xp, yp)
}

#[test]
fn chunks_hold_the_file_s_rows_in_order_for_any_chunk_size() {
    let (_dir, xp, yp) = files(1000, 7, 3);
    let want = data::read_npy_features(&xp).unwrap();
    let labels = data::read_npy_labels(&yp, None).unwrap();
    let mut s = NpyRows::open(&xp, &yp, None).unwrap();
    assert_eq!((s.features(), s.classes(), s.rows()), (7, 3, Some(1000)));
    for rows in [1, 63, 64, 999, 1000, 5000] {
        s.rewind().unwrap();
        let (mut x, mut y, mut firsts) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(c) = s.next_chunk(rows).unwrap() {
            assert!(c.len() <= rows);
            firsts.push(c.first_row());
            x.extend(c.x().iter().copied());
            y.extend_from_slice(c.y());
        }
        assert_eq!(
            x,
            want.iter().copied().collect::<Vec<_>>(),
            "chunks of {rows}"
        );
        assert_eq!(y, labels);
        assert_eq!(firsts[0], 0);
    }
    // Held in memory from chunks: what the CPU backend sees.
    assert_eq!(HostRows::read(&mut s).unwrap().x(), want.view());
}

#[test]
fn training_from_the_stream_equals_training_from_memory() {
    let (_dir, xp, yp) = files(600, 16, 4);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 50,
        lr: 0.1,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    let shape = Shape { d: 16, k: 4 };
    let mut streamed = FastCpu::new(shape).unwrap();
    fit(
        &mut streamed,
        &mut NpyRows::open(&xp, &yp, None).unwrap(),
        None,
        &cfg,
        &mut [],
    )
    .unwrap();
    let x = data::read_npy_features(&xp).unwrap();
    let y = data::read_npy_labels(&yp, None).unwrap();
    let mut memory = data::InMemory::from_arrays("x", x, y, 4).unwrap();
    let mut resident = FastCpu::new(shape).unwrap();
    fit(&mut resident, &mut memory, None, &cfg, &mut []).unwrap();
    assert_eq!(streamed.params().unwrap(), resident.params().unwrap());
}

#[test]
fn bad_files_are_refused_with_their_position() {
    let (dir, xp, yp) = files(100, 5, 3);
    // A NaN in row 70 is found when its chunk is read, at its index in the file.
    let mut x = data::read_npy_features(&xp).unwrap();
    x[[70, 2]] = f32::NAN;
    let nan = dir.path().join("nan.npy");
    data::write_npy_features(&nan, x.view()).unwrap();
    let mut s = NpyRows::open(&nan, &yp, None).unwrap();
    let mut err = None;
    while err.is_none() {
        match s.next_chunk(32) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => err = Some(e),
        }
    }
    let e = err.expect("the NaN is found");
    assert!(
        e.to_string().ends_with("index [70, 2]: feature is NaN"),
        "{e}"
    );
    // A file cut short is refused when opened, before any row is read.
    let bytes = std::fs::read(&xp).unwrap();
    let cut = dir.path().join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let e = NpyRows::open(&cut, &yp, None).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Labels for another number of rows, and labels past --classes.
    let short = dir.path().join("short.npy");
    data::write_npy_labels(&short, &[0, 1]).unwrap();
    let e = NpyRows::open(&xp, &short, None).unwrap_err();
    assert!(e.to_string().contains("has 2 labels but"), "{e}");
    let e = NpyRows::open(&xp, &yp, Some(2)).unwrap_err();
    assert!(e.to_string().contains("not below the 2 classes"), "{e}");
    let e = NpyRows::open(&dir.path().join("none.npy"), &yp, None).unwrap_err();
    assert!(e.is_input(), "{e}");
    // Not NPY at all.
    let junk = dir.path().join("junk.npy");
    std::fs::write(&junk, b"\x93NUMPY\x01\x00\xff\xff").unwrap();
    assert!(NpyRows::open(&junk, &yp, None).is_err());
}
