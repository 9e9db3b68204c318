//! CT window presets (centre/width in HU), as radiologists use them; keys
//! 1–8 in the viewer, in this order.

pub const PRESETS: [(&str, f64, f64); 8] = [
    ("Brain", 40.0, 80.0),
    ("Subdural", 75.0, 215.0),
    ("Stroke", 40.0, 40.0),
    ("Lung", -600.0, 1500.0),
    ("Mediastinum", 50.0, 350.0),
    ("Abdomen", 40.0, 400.0),
    ("Liver", 60.0, 160.0),
    ("Bone", 400.0, 1800.0),
];
