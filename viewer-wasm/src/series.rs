//! A series from its WADO-RS metadata (DICOM JSON): its slices in display
//! order (instance, then frame), each slice's pixel description, plane
//! geometry and windows. Slices of several series are matched by position
//! along the slice normal, for synchronised scrolling.

use serde_json::Value;

use crate::image::PixelDesc;
use crate::Error;

#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Slice {
    pub sop_uid: String,
    /// 1-based frame of the instance.
    pub frame: u32,
    pub frames_in_instance: u32,
    pub instance_number: i64,
    pub desc: PixelDesc,
    /// (row spacing, column spacing) in mm, from Pixel Spacing (or Imager
    /// Pixel Spacing for projection images).
    pub spacing: Option<(f64, f64)>,
    pub position: Option<[f64; 3]>,
    pub orientation: Option<[f64; 6]>,
    pub slice_location: Option<f64>,
    pub thickness: Option<f64>,
    pub windows: Vec<Window>,
    /// Milliseconds between frames for cine (Frame Time or Cine Rate).
    pub frame_ms: Option<f64>,
}

impl Slice {
    /// Unit normal of the image plane (row × column direction cosines).
    pub fn normal(&self) -> Option<[f64; 3]> {
        let o = self.orientation?;
        let n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        (len > 1e-6).then(|| n.map(|v| v / len))
    }

    /// Position along the normal, in mm: what synchronised scrolling and the
    /// overlay's "location" show.
    pub fn location(&self) -> Option<f64> {
        match (self.position, self.normal()) {
            (Some(p), Some(n)) => Some(p[0] * n[0] + p[1] * n[1] + p[2] * n[2]),
            _ => self.slice_location,
        }
    }
}

pub struct Series {
    pub slices: Vec<Slice>,
}

/// The tags read below; a series' metadata is mostly others, which are
/// skipped without being built.
const WANTED: [&str; 26] = [
    "00080018", "00200013", "00280008", "00280010", "00280011", "00280100", "00280101", "00280103", "00280002", "00280004", "00280006", "00281053", "00281052",
    "00281050", "00281051", "00281055", "00181063", "00180040", "00280030", "00181164", "00200032", "00200037", "00201041", "00180050", "52009229", "52009230",
];

/// One instance's attributes, only the `WANTED` ones.
struct Wanted(Value);

impl<'de> serde::Deserialize<'de> for Wanted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keep;
        impl<'de> serde::de::Visitor<'de> for Keep {
            type Value = Wanted;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a DICOM JSON data set")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Wanted, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if WANTED.contains(&k.as_ref()) {
                        out.insert(k.into_owned(), m.next_value()?);
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Wanted(Value::Object(out)))
            }
        }
        d.deserialize_map(Keep)
    }
}

fn attr<'a>(o: &'a Value, tag: &str) -> Option<&'a Value> {
    o.get(tag)?.get("Value")
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn nums(o: &Value, tag: &str) -> Vec<f64> {
    attr(o, tag).and_then(Value::as_array).map(|a| a.iter().filter_map(num).collect()).unwrap_or_default()
}

fn first(o: &Value, tag: &str) -> Option<f64> {
    nums(o, tag).first().copied()
}

fn text(o: &Value, tag: &str) -> Option<String> {
    attr(o, tag)?.as_array()?.first()?.as_str().map(str::to_owned)
}

fn texts(o: &Value, tag: &str) -> Vec<String> {
    attr(o, tag).and_then(Value::as_array).map(|a| a.iter().map(|v| v.as_str().unwrap_or("").to_owned()).collect()).unwrap_or_default()
}

/// The items of a sequence attribute.
fn items<'a>(o: &'a Value, tag: &str) -> &'a [Value] {
    attr(o, tag).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// An attribute from the instance, else from a functional group macro
/// (enhanced multi-frame: per-frame first, then shared).
fn grouped(o: &Value, per_frame: Option<&Value>, group: &str, tag: &str) -> Vec<f64> {
    let direct = nums(o, tag);
    if !direct.is_empty() {
        return direct;
    }
    let from = |g: Option<&Value>| g.and_then(|g| items(g, group).first()).map(|i| nums(i, tag)).unwrap_or_default();
    let v = from(per_frame);
    if !v.is_empty() {
        return v;
    }
    from(items(o, "52009229").first())
}

impl Series {
    pub fn from_metadata(json: &str) -> Result<Series, Error> {
        let list: Vec<Wanted> = serde_json::from_str(json).map_err(|e| Error::Metadata(format!("not an array of instances: {e}")))?;
        let mut slices = Vec::new();
        for Wanted(o) in &list {
            let Some(sop_uid) = text(o, "00080018") else { continue };
            let (Some(rows), Some(columns)) = (first(o, "00280010"), first(o, "00280011")) else { continue };
            let frames = first(o, "00280008").unwrap_or(1.0).max(1.0) as u32;
            let photometric = text(o, "00280004").unwrap_or_else(|| "MONOCHROME2".into());
            let desc = PixelDesc {
                rows: rows as u32,
                columns: columns as u32,
                bits_allocated: first(o, "00280100").unwrap_or(16.0) as u16,
                bits_stored: first(o, "00280101").or(first(o, "00280100")).unwrap_or(16.0) as u16,
                signed: first(o, "00280103") == Some(1.0),
                samples: first(o, "00280002").unwrap_or(1.0) as u16,
                planar: first(o, "00280006") == Some(1.0),
                photometric: photometric.trim().to_owned(),
                slope: first(o, "00281053").unwrap_or(1.0),
                intercept: first(o, "00281052").unwrap_or(0.0),
            };
            let centers = nums(o, "00281050");
            let widths = nums(o, "00281051");
            let names = texts(o, "00281055");
            let windows: Vec<Window> = centers
                .iter()
                .zip(&widths)
                .enumerate()
                .filter(|(_, (_, w))| **w >= 1.0)
                .map(|(i, (&center, &width))| Window {
                    center,
                    width,
                    name: names.get(i).cloned().filter(|n| !n.is_empty()).unwrap_or_else(|| format!("File {}", i + 1)),
                })
                .collect();
            let frame_ms = first(o, "00181063").or_else(|| first(o, "00180040").filter(|r| *r > 0.0).map(|r| 1000.0 / r));
            let per_frame = items(o, "52009230");
            for f in 1..=frames {
                let pf = per_frame.get(f as usize - 1);
                let spacing = {
                    let s = grouped(o, pf, "00289110", "00280030");
                    let s = if s.len() == 2 { s } else { nums(o, "00181164") };
                    (s.len() == 2 && s[0] > 0.0 && s[1] > 0.0).then(|| (s[0], s[1]))
                };
                let pos = grouped(o, pf, "00209113", "00200032");
                let ori = grouped(o, pf, "00209116", "00200037");
                slices.push(Slice {
                    sop_uid: sop_uid.clone(),
                    frame: f,
                    frames_in_instance: frames,
                    instance_number: first(o, "00200013").unwrap_or(0.0) as i64,
                    desc: desc.clone(),
                    spacing,
                    position: (pos.len() == 3).then(|| [pos[0], pos[1], pos[2]]),
                    orientation: (ori.len() == 6).then(|| [ori[0], ori[1], ori[2], ori[3], ori[4], ori[5]]),
                    slice_location: first(o, "00201041"),
                    thickness: grouped(o, pf, "00289110", "00180050").first().copied(),
                    windows: windows.clone(),
                    frame_ms,
                });
            }
        }
        if slices.is_empty() {
            return Err(Error::Metadata("the series has no images".into()));
        }
        // Acquisition order as the modality numbered it; position breaks ties.
        slices.sort_by(|a, b| {
            a.instance_number
                .cmp(&b.instance_number)
                .then(a.location().unwrap_or(0.0).total_cmp(&b.location().unwrap_or(0.0)))
                .then(a.sop_uid.cmp(&b.sop_uid))
                .then(a.frame.cmp(&b.frame))
        });
        Ok(Series { slices })
    }

    /// The slice nearest `location` (mm along this series' normal), if
    /// the series has positions.
    pub fn nearest(&self, location: f64) -> Option<usize> {
        self.slices.iter().enumerate().filter_map(|(i, s)| s.location().map(|l| (i, (l - location).abs()))).min_by(|a, b| a.1.total_cmp(&b.1)).map(|(i, _)| i)
    }

    /// Indices of the slices not yet `loaded`, nearest `current` first
    /// (ties go forward, the way a reader scrolls).
    pub fn fetch_order(&self, current: usize, loaded: &[bool]) -> Vec<u32> {
        let n = self.slices.len();
        let mut order = Vec::with_capacity(n);
        let mut take = |i: usize| {
            if i < n && !loaded.get(i).copied().unwrap_or(false) {
                order.push(i as u32);
            }
        };
        take(current);
        for d in 1..n {
            take(current + d);
            if let Some(i) = current.checked_sub(d) {
                take(i);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(uid: &str, number: i64, z: f64) -> String {
        format!(
            r#"{{"00080018":{{"vr":"UI","Value":["{uid}"]}},"00200013":{{"vr":"IS","Value":[{number}]}},
            "00280010":{{"vr":"US","Value":[4]}},"00280011":{{"vr":"US","Value":[4]}},"00280103":{{"vr":"US","Value":[1]}},
            "00280030":{{"vr":"DS","Value":["0.5","0.7"]}},"00200032":{{"vr":"DS","Value":[0,0,{z}]}},
            "00200037":{{"vr":"DS","Value":[1,0,0,0,1,0]}},"00281050":{{"vr":"DS","Value":[40,400]}},
            "00281051":{{"vr":"DS","Value":[80,1500]}},"00281055":{{"vr":"LO","Value":["BRAIN"]}}}}"#
        )
    }

    #[test]
    fn slices_sorted_with_geometry_and_windows() {
        let json = format!("[{},{},{}]", instance("1.3", 3, -5.0), instance("1.1", 1, 5.0), instance("1.2", 2, 0.0));
        let s = Series::from_metadata(&json).unwrap();
        let uids: Vec<&str> = s.slices.iter().map(|s| s.sop_uid.as_str()).collect();
        assert_eq!(uids, ["1.1", "1.2", "1.3"]);
        let a = &s.slices[0];
        assert_eq!(a.spacing, Some((0.5, 0.7)));
        assert_eq!(a.location(), Some(5.0));
        assert!(a.desc.signed);
        assert_eq!(a.windows.len(), 2);
        assert_eq!(a.windows[0], Window { center: 40.0, width: 80.0, name: "BRAIN".into() });
        assert_eq!(a.windows[1].name, "File 2");
        assert_eq!(s.nearest(-4.0), Some(2));
        assert_eq!(s.fetch_order(1, &[false, true, false]), vec![2, 0]);
        assert!(Series::from_metadata("[]").is_err());
        assert!(Series::from_metadata("{").is_err());
    }

    #[test]
    fn multiframe_is_one_slice_per_frame() {
        let json = r#"[{"00080018":{"vr":"UI","Value":["9"]},"00280010":{"vr":"US","Value":[2]},"00280011":{"vr":"US","Value":[2]},
            "00280008":{"vr":"IS","Value":["3"]},"00181063":{"vr":"DS","Value":[33.3]}}]"#;
        let s = Series::from_metadata(json).unwrap();
        assert_eq!(s.slices.iter().map(|s| s.frame).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(s.slices[0].frame_ms, Some(33.3));
        assert_eq!(Series { slices: s.slices.clone() }.fetch_order(0, &[false; 3]), vec![0, 1, 2]);
    }
}
