//! Rendering throughput, for `scripts/bench-render`: thumbnails per second
//! (512×512 CT → 256 px PNG, file read included) with 1 and 2 threads, and
//! decode megapixels per second per transfer syntax.
//!
//! Usage: cargo bench --bench render -- THUMB_DIR [DECODE_FILE...]
//! Prints one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "dcm"))
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

fn thumbs_per_second(files: &[PathBuf], threads: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let start = Instant::now();
    let made: usize = pool.install(|| {
        files
            .par_iter()
            .map(|f| {
                let bytes = std::fs::read(f).unwrap();
                usize::from(radhub::thumbs::thumbnail(&bytes).is_ok())
            })
            .sum()
    });
    assert_eq!(made, files.len(), "some thumbnails failed");
    files.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let thumbs = files(&args[0]);
    // Warm the page cache (every file) and the code.
    for f in &thumbs {
        std::hint::black_box(std::fs::read(f).unwrap());
    }
    thumbs_per_second(&thumbs[..thumbs.len().min(50)], 2);
    let one = thumbs_per_second(&thumbs, 1);
    let two = thumbs_per_second(&thumbs, 2);
    let mut decode = Vec::new();
    for f in &args[1..] {
        let bytes = std::fs::read(f).unwrap();
        let meta = radhub::dicom::extract::read_meta(&bytes).unwrap();
        let inst = radhub::render::Instance::open(&bytes).unwrap();
        let px = f64::from(inst.rows()) * f64::from(inst.columns()) * f64::from(inst.frames());
        let n = (2e7 / px).clamp(3.0, 500.0) as u32;
        let start = Instant::now();
        for _ in 0..n {
            for fr in 0..inst.frames() {
                std::hint::black_box(inst.raw_frame(fr).unwrap());
            }
        }
        let mps = px * f64::from(n) / start.elapsed().as_secs_f64() / 1e6;
        decode.push(serde_json::json!({"file": f, "transfer_syntax": meta.transfer_syntax, "rows": inst.rows(), "columns": inst.columns(), "frames": inst.frames(), "megapixels_per_second": mps}));
    }
    println!("{}", serde_json::json!({"files": thumbs.len(), "thumbs_per_second_1_thread": one, "thumbs_per_second_2_threads": two, "decode": decode}));
}
