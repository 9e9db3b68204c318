//! Every pixel decoder (native, RLE, JPEG baseline/extended/lossless,
//! JPEG-LS, JPEG 2000; C codecs included) and the display pipeline, on the
//! first frames of whatever a scan accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use radhub::render::Instance;

fuzz_target!(|data: &[u8]| {
    let Ok(inst) = Instance::open(data) else { return };
    for f in 0..inst.frames().min(2) {
        let _ = inst.raw_frame(f);
        let _ = inst.stored_frame_le(f);
        let _ = inst.native_frame(f);
        if let Ok(w) = inst.default_window(f) {
            let _ = inst.display(f, w);
        }
    }
});
