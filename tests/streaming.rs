//! NPY features read a chunk at a time (`data::NpyRows`): the same rows as the whole-file reader whatever the chunk
//! size, the same training, and the same strict errors (a NaN at its index, a truncated file, mismatched labels).

mod common;

use common::*;
use softmax_wgpu::data::{self, HostRows, NpyRows};
use softmax_wgpu::numerics::relative_distance;
use softmax_wgpu::train::{residency, Residency};
use softmax_wgpu::{fit, Backend, EpochReport, RowSource, Shape, TrainConfig};

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
    // A clone reads the same rows without reading the header and labels again.
    let mut c = s.try_clone().unwrap();
    assert_eq!(HostRows::read(&mut c).unwrap().x(), want.view());
}

/// A budget that streams `files(600, 16, 4)`: 600 rows × 68 bytes held = 40,800 bytes; chunks of
/// budget / 8 / 68 = 73 rows, cut to whole batches.
const STREAMING_BUDGET: u64 = 40_000;

fn train(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    cfg: &TrainConfig,
) -> Vec<EpochReport> {
    fit(backend, source, None, cfg, &mut []).unwrap()
}

fn streamed_training_takes_the_resident_steps_when_unshuffled(on: Backends) {
    let (_dir, xp, yp) = files(600, 16, 4);
    let x = data::read_npy_features(&xp).unwrap();
    let y = data::read_npy_labels(&yp, None).unwrap();
    let shape = Shape { d: 16, k: 4 };
    on.each(|name, make| {
        for batch in [50, 7, 600] {
            let cfg = TrainConfig {
                epochs: 2,
                batch_size: batch,
                lr: 0.1,
                val_split: 0.0,
                shuffle: false,
                memory_budget: Some(STREAMING_BUDGET),
                ..TrainConfig::default()
            };
            let mut npy = NpyRows::open(&xp, &yp, None).unwrap();
            let mut streamed = make(shape);
            let Residency::Streamed { chunk_rows } = residency(streamed.as_ref(), &npy, &cfg)
            else {
                panic!("{name}: 600 rows over a {STREAMING_BUDGET}-byte budget are not streamed");
            };
            let reports = train(streamed.as_mut(), &mut npy, &cfg);
            let io = reports[1]
                .stream
                .expect("a streamed epoch reports its reading");
            assert_eq!(io.rows, 600, "{name}");
            assert_eq!(io.chunks, 600usize.div_ceil(chunk_rows), "{name}");
            assert!(!io.chunk_order_shuffled && (0.0..=1.0).contains(&io.overlap));
            let mut memory = data::InMemory::from_arrays("x", x.clone(), y.clone(), 4).unwrap();
            let mut resident = make(shape);
            let held = train(resident.as_mut(), &mut memory, &cfg);
            assert!(held[1].stream.is_none());
            let (s, r) = (streamed.params().unwrap(), resident.params().unwrap());
            if chunk_rows % batch == 0 {
                // Batches of whole chunks: the same rows in the same order through the same kernels.
                assert_eq!(s, r, "{name}, batch {batch}");
            } else {
                // A batch that straddles two chunks is accumulated in two parts, which only reorders its f32 sums:
                // each step's gradient moves by a few units of roundoff (≈ 1e-7 relative), over 2–170 steps.
                let d = relative_distance(s.w.iter().copied(), r.w.iter().map(|&v| f64::from(v)));
                assert!(d < 1e-5, "{name}, batch {batch}: ‖ΔW‖/‖W‖ = {d:e}");
            }
            assert!((reports[1].train_loss - held[1].train_loss).abs() < 1e-5 * held[1].train_loss);
        }
    });
}
per_backend!(streamed_training_takes_the_resident_steps_when_unshuffled);

fn streamed_training_shuffles_chunks_and_rows_and_learns(on: Backends) {
    // Rows sorted by class: only a shuffle across chunks gives batches of mixed classes.
    let dir = tempfile::tempdir().unwrap();
    let ds = data::synthetic(2000, 8, 4, 3).unwrap();
    let mut order: Vec<usize> = (0..2000).collect();
    order.sort_by_key(|&i| ds.y[i]);
    let sorted = ds.select(&order);
    let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    data::write_npy_features(&xp, sorted.x.view()).unwrap();
    data::write_npy_labels(&yp, &sorted.y).unwrap();
    let cfg = TrainConfig {
        epochs: 5,
        batch_size: 32,
        lr: 0.5,
        val_split: 0.0,
        memory_budget: Some(20_000),
        ..TrainConfig::default()
    };
    on.each(|name, make| {
        let mut s = make(Shape { d: 8, k: 4 });
        let mut npy = NpyRows::open(&xp, &yp, None).unwrap();
        let reports = train(s.as_mut(), &mut npy, &cfg);
        let io = reports[0].stream.unwrap();
        assert!(io.chunk_order_shuffled && io.chunks > 20, "{name}: {io:?}");
        // The same run again is the same run (seeded chunk order and row order).
        let mut again = make(Shape { d: 8, k: 4 });
        train(again.as_mut(), &mut npy, &cfg);
        assert_eq!(s.params().unwrap(), again.params().unwrap(), "{name}");
        let mut resident = make(Shape { d: 8, k: 4 });
        let mut mem =
            data::InMemory::from_arrays("x", sorted.x.clone(), sorted.y.clone(), 4).unwrap();
        let r = train(resident.as_mut(), &mut mem, &cfg);
        let last = reports.last().unwrap();
        // Learned about as well as with every row shuffled (the data are sorted by class, so batches are of one
        // class but chunks come in a random order): within 5 points of the resident run's accuracy.
        let want = r.last().unwrap().train_accuracy;
        assert!(
            last.train_accuracy > want - 0.05,
            "{name}: {} vs {want}",
            last.train_accuracy
        );
    });
}
per_backend!(streamed_training_shuffles_chunks_and_rows_and_learns);

fn a_streamed_held_out_set_is_evaluated_like_a_held_one(on: Backends) {
    let (_dir, xp, yp) = files(600, 16, 4);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 50,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    let small = TrainConfig {
        memory_budget: Some(STREAMING_BUDGET),
        ..cfg.clone()
    };
    let shape = Shape { d: 16, k: 4 };
    let x = data::read_npy_features(&xp).unwrap();
    let y = data::read_npy_labels(&yp, None).unwrap();
    on.each(|name, make| {
        let mut a = make(shape);
        let mut train_rows = data::InMemory::from_arrays("x", x.clone(), y.clone(), 4).unwrap();
        let mut held = NpyRows::open(&xp, &yp, None).unwrap();
        let streamed = fit(
            a.as_mut(),
            &mut train_rows,
            Some(&mut held),
            &small,
            &mut [],
        )
        .unwrap();
        let mut b = make(shape);
        let mut held = data::InMemory::from_arrays("x", x.clone(), y.clone(), 4).unwrap();
        let resident = fit(b.as_mut(), &mut train_rows, Some(&mut held), &cfg, &mut []).unwrap();
        // Same weights, same rows; the evaluation batches differ (chunks vs. the whole set) only in summation order.
        let (s, r) = (streamed[0].val_loss.unwrap(), resident[0].val_loss.unwrap());
        assert!((s - r).abs() < 1e-6 * r, "{name}: {s} vs {r}");
        assert_eq!(streamed[0].val_accuracy, resident[0].val_accuracy, "{name}");
    });
}
per_backend!(a_streamed_held_out_set_is_evaluated_like_a_held_one);

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

#[test]
fn sparse_files_stream_sparse_and_train_like_resident_ones() {
    use softmax_wgpu::gpu::{GpuBackend, GpuOptions};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.svm");
    let mut text = String::new();
    for i in 0..700u32 {
        let c = i % 3;
        text.push_str(&format!(
            "{c} {}:1 {}:0.5 {}:2\n",
            1 + c,
            4 + i % 11,
            20 + (i * 7) % 13
        ));
    }
    std::fs::write(&p, text).unwrap();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 40,
        lr: 0.3,
        val_split: 0.0,
        shuffle: false,
        ..TrainConfig::default()
    };
    let streaming = TrainConfig {
        memory_budget: Some(2_000),
        ..cfg.clone()
    };
    let shape = Shape { d: 32, k: 3 };
    let check = |name: &str, make: &mut dyn FnMut() -> Box<dyn Backend>| {
        check_sparse_streaming(&p, &cfg, &streaming, name, make)
    };
    check("cpu f32", &mut || {
        Box::new(softmax_wgpu::cpu::CpuBackend::<f32>::new(shape))
    });
    for ctx in common::gpus() {
        let o = GpuOptions {
            sparse: true,
            ..GpuOptions::default()
        };
        check_sparse_streaming(&p, &cfg, &streaming, &ctx.describe(), &mut || {
            Box::new(GpuBackend::new(&ctx, shape, &o).unwrap())
        });
    }
}

fn check_sparse_streaming<'c>(
    p: &std::path::Path,
    cfg: &TrainConfig,
    streaming: &TrainConfig,
    name: &str,
    make: &mut dyn FnMut() -> Box<dyn Backend + 'c>,
) {
    use softmax_wgpu::data::{LibsvmOptions, LibsvmRows};
    let mut file = LibsvmRows::open(p, &LibsvmOptions::default()).unwrap();
    let mut resident = make();
    assert_eq!(residency(resident.as_ref(), &file, cfg), Residency::Held);
    let held = train(resident.as_mut(), &mut file, cfg);
    let mut streamed = make();
    assert!(matches!(
        residency(streamed.as_ref(), &file, streaming),
        Residency::Streamed { .. }
    ));
    let reports = train(streamed.as_mut(), &mut file, streaming);
    assert!(reports[0].stream.unwrap().chunks > 5, "{name}");
    let (s, r) = (streamed.params().unwrap(), resident.params().unwrap());
    let d = relative_distance(s.w.iter().copied(), r.w.iter().map(|&v| f64::from(v)));
    // Straddling batches are accumulated in parts: only the order of f32 sums differs.
    assert!(d < 1e-5, "{name}: {d:e}");
    assert!(held[1].train_accuracy > 0.9, "{name}: {:?}", held[1]);
}

fn a_streamed_run_resumed_mid_epoch_ends_where_the_whole_run_ends(on: Backends) {
    use softmax_wgpu::checkpoint::{run_identity, Checkpoint, Checkpointer};
    use softmax_wgpu::train::Optimizer;
    // Shuffled by chunk and within chunks; batches of 12 straddle the 73-row chunks (with a budget of 40,000 bytes
    // the chunks are cut to whole batches: 72 rows), so the checkpoint falls inside a chunk.
    let (dir, xp, yp) = files(600, 16, 4);
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 12,
        lr: 0.05,
        val_split: 0.0,
        memory_budget: Some(STREAMING_BUDGET),
        optimizer: Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        ..TrainConfig::default()
    };
    let ck = dir.path().join("ck.json");
    let shape = Shape { d: 16, k: 4 };
    on.each(|name, make| {
        let mut source = data::NpyRows::open(&xp, &yp, None).unwrap();
        let mut whole = make(shape);
        let streamed = residency(whole.as_ref(), &source, &cfg);
        assert!(matches!(streamed, Residency::Streamed { .. }));
        let id = run_identity(&cfg, "x.npy", Some(600), shape, streamed);
        // 50 steps an epoch, 150 in all; a checkpoint every 33 steps: the last at step 132, step 32 of epoch 3.
        let mut saver = Checkpointer::new(&ck, 33, id.clone(), None).unwrap();
        fit(whole.as_mut(), &mut source, None, &cfg, &mut [&mut saver]).unwrap();
        let c = Checkpoint::load(&ck).unwrap();
        assert_eq!(
            (c.at.epoch, c.at.batches_done, c.at.steps),
            (3, 32, 132),
            "{name}"
        );
        let mut resumed = make(shape);
        c.restore(resumed.as_mut()).unwrap();
        let cont = TrainConfig {
            resume: Some(c.at),
            ..cfg.clone()
        };
        let reports = train(resumed.as_mut(), &mut source, &cont);
        // The resumed epoch reads only the chunks it still needs: 600 − 32·12 = 216 rows, from the chunk that
        // holds the 385th row of the epoch on.
        let rows = reports[0].stream.unwrap().rows;
        assert!((216..216 + 72).contains(&rows), "{name}: {rows} rows read");
        let (a, b) = (whole.params().unwrap(), resumed.params().unwrap());
        if name == "cpu f64" {
            // Checkpoints are f32: the f64 path resumes from its weights rounded.
            assert!(
                relative_distance(b.w.iter().copied(), a.w.iter().map(|&v| f64::from(v))) < 1e-5
            );
        } else {
            assert_eq!(a, b, "{name}: resumed bit for bit");
        }
    });
}
per_backend!(a_streamed_run_resumed_mid_epoch_ends_where_the_whole_run_ends);

fn streamed_sample_weights_follow_their_rows(on: Backends) {
    use softmax_wgpu::data::Weighted;
    // Unshuffled, with chunks of whole batches: the streamed run takes the resident run's steps, weights included.
    let (dir, xp, yp) = files(600, 16, 4);
    let w: std::sync::Arc<[f32]> = (0..600).map(|i| (i % 5) as f32 * 0.5).collect();
    let wp = dir.path().join("w");
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 8,
        lr: 0.05,
        val_split: 0.0,
        shuffle: false,
        ..TrainConfig::default()
    };
    let streamed = TrainConfig {
        memory_budget: Some(STREAMING_BUDGET),
        ..cfg.clone()
    };
    let shape = Shape { d: 16, k: 4 };
    on.each(|name, make| {
        let open =
            || Weighted::new(data::NpyRows::open(&xp, &yp, None).unwrap(), w.clone(), &wp).unwrap();
        let mut held = make(shape);
        let mut s = open();
        assert_eq!(residency(held.as_ref(), &s, &cfg), Residency::Held);
        let a = train(held.as_mut(), &mut s, &cfg);
        let mut st = make(shape);
        let mut s = open();
        assert!(matches!(
            residency(st.as_ref(), &s, &streamed),
            Residency::Streamed { .. }
        ));
        let b = train(st.as_mut(), &mut s, &streamed);
        assert_eq!(
            a.last().unwrap().train_loss,
            b.last().unwrap().train_loss,
            "{name}"
        );
        assert_eq!(held.params().unwrap(), st.params().unwrap(), "{name}");
        // And the weights matter: the unweighted run ends elsewhere.
        let mut plain = make(shape);
        let mut p = data::NpyRows::open(&xp, &yp, None).unwrap();
        train(plain.as_mut(), &mut p, &cfg);
        assert_ne!(plain.params().unwrap(), held.params().unwrap(), "{name}");
    });
}
per_backend!(streamed_sample_weights_follow_their_rows);
