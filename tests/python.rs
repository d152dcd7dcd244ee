//! The Python package (`python/`) through its own pytest suite, so that `cargo test` runs it too: a virtual
//! environment under cargo's test directory is made once (NumPy, SciPy, scikit-learn, pytest and maturin from the
//! package registry), the package is installed into it from this checkout (`pip install ./python`, which builds it
//! with maturin; cargo's incremental build keeps a rerun short), and `python -m pytest python/tests` runs there.
//! Without python3, its venv module or the registry the test says it was skipped, unless
//! `SOFTMAX_WGPU_REQUIRE_PYTHON=1` (as in CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `cmd`; its output when it fails.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed:\n{text}"))
    }
}

/// The environment, made if it is not there yet.
fn environment(dir: &Path) -> Result<PathBuf, String> {
    let python = dir.join("bin").join("python");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "-q",
            "numpy",
            "scipy",
            "scikit-learn",
            "pytest",
            "pandas",
            "maturin>=1.5,<2",
        ]))?;
    }
    Ok(python)
}

/// PATH with the environment's bin directory first.
fn with_bin(python: &Path) -> std::ffi::OsString {
    let bin = python.parent().map(Path::to_path_buf).unwrap_or_default();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&rest))).unwrap_or(rest)
}

#[test]
fn the_python_package_passes_its_tests() {
    let required = std::env::var("SOFTMAX_WGPU_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let python = match environment(&tmp.join("python-venv")) {
        Ok(p) => p,
        Err(why) if required => panic!("SOFTMAX_WGPU_REQUIRE_PYTHON=1 but no environment: {why}"),
        Err(why) => {
            eprintln!("skipped: no Python environment for the package's tests: {why}");
            return;
        }
    };
    // The package from this checkout, built in a target directory of its own (not the one cargo test holds).
    let installed = run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--force-reinstall",
            "--no-deps",
            "--no-build-isolation",
        ])
        .arg(Path::new(ROOT).join("python"))
        .env("CARGO_TARGET_DIR", tmp.join("python-build"))
        // The build backend runs the environment's own maturin.
        .env("PATH", with_bin(&python)));
    if let Err(why) = installed {
        panic!("the package did not build: {why}");
    }
    let tests = run(Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(Path::new(ROOT).join("python").join("tests"))
        .env("SOFTMAX_WGPU_BIN", env!("CARGO_BIN_EXE_softmax-wgpu"))
        .current_dir(tmp));
    match tests {
        Ok(out) => eprintln!("{}", out.lines().last().unwrap_or_default()),
        Err(why) => panic!("{why}"),
    }
}
