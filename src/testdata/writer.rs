//! Builds one DICOM Part 10 file per planned instance and writes them all.

use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use rayon::prelude::*;

use super::phantom::{self, Variation};
use super::plan::{Modality, MrSeq, SeriesKind, StudyPlan, Tomo};
use super::projection;
use super::raster::Raster;
use super::sites::{CtStorage, Equipment, CODES, PROFILES};
use super::{civil_from_days, da, ds, tm, uid, Noise, Plan, Rng, TestdataError, WriteSummary};

const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Fixed, so files do not change when the dicom-rs version does.
const IMPLEMENTATION_CLASS_UID: &str = "2.25.171842075291433498166405843212391675603";
const IMPLEMENTATION_VERSION: &str = "RADHUB_TD_1";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TestdataError + '_ {
    move |source| TestdataError::Io { path: path.to_owned(), source }
}

impl Plan {
    /// Writes every instance as `out/<SITE>/<study>/<series>/<instance>.dcm`
    /// (0-based indices; studies numbered per site in date order), in
    /// parallel. `on_file` gets each file's size once it is written.
    pub fn write_all(&self, out: &Path, on_file: &(dyn Fn(u64) + Sync)) -> Result<WriteSummary, TestdataError> {
        std::fs::create_dir_all(out).map_err(io_err(out))?;
        let mut jobs = Vec::new();
        for (s, st) in self.studies.iter().enumerate() {
            for (k, se) in st.series.iter().enumerate() {
                let dir = out.join(CODES[st.site]).join(st.index.to_string()).join(k.to_string());
                // Sequentially, so parallel writers never race on directories.
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                jobs.extend((0..se.instances).map(|i| (s, k, i, dir.clone())));
            }
        }
        let bytes = jobs
            .par_iter()
            .map(|(s, k, i, dir)| {
                let path = dir.join(format!("{i}.dcm"));
                let data = self.encode(&self.studies[*s], *k, *i, &path)?;
                std::fs::write(&path, &data).map_err(io_err(&path))?;
                on_file(data.len() as u64);
                Ok(data.len() as u64)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b))?;
        Ok(WriteSummary { files: jobs.len() as u64, bytes })
    }

    /// The complete Part 10 byte stream of one instance.
    pub(crate) fn encode(&self, st: &StudyPlan, k: usize, i: u32, path: &Path) -> Result<Vec<u8>, TestdataError> {
        let profile = &PROFILES[st.site];
        let eq = match st.modality {
            Modality::Ct => &profile.ct,
            Modality::Mr => &profile.mr,
            Modality::Cr | Modality::Dx => &profile.xr,
            Modality::Us => &profile.us,
        };
        let sop_uid = uid(self.key, &[3, st.site as u64, st.index as u64, k as u64, u64::from(i)]);
        let obj = self.dataset(st, k, i, eq, &sop_uid);
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(EXPLICIT_VR_LE)
            .media_storage_sop_class_uid(st.modality.sop_class())
            .media_storage_sop_instance_uid(sop_uid)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION)
            .source_application_entity_title(eq.ae)
            .build()
            .map_err(|source| TestdataError::Meta { path: path.to_owned(), source: Box::new(source) })?;
        let file = obj.with_exact_meta(meta);
        let se = &st.series[k];
        // Enough for RGB 8-bit and greyscale 16-bit pixel data plus header.
        let mut buf = Vec::with_capacity(usize::from(se.rows) * usize::from(se.cols) * 3 + 4096);
        file.write_all(&mut buf).map_err(|source| TestdataError::Encode { path: path.to_owned(), source: Box::new(source) })?;
        Ok(buf)
    }

    fn dataset(&self, st: &StudyPlan, k: usize, i: u32, eq: &Equipment, sop_uid: &str) -> InMemDicomObject {
        let person = &self.people[st.person];
        let profile = &PROFILES[st.site];
        let se = &st.series[k];
        let (site, study) = (st.site as u64, st.index as u64);
        let mut o = InMemDicomObject::new_empty();

        if person.latin1 {
            o.s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
        }
        let image_type = match st.modality {
            Modality::Ct => "ORIGINAL\\PRIMARY\\AXIAL",
            Modality::Mr => "ORIGINAL\\PRIMARY\\M\\ND",
            Modality::Cr | Modality::Dx => "ORIGINAL\\PRIMARY",
            Modality::Us => "ORIGINAL\\PRIMARY\\ABDOMINAL",
        };
        o.s(tags::IMAGE_TYPE, VR::CS, image_type);
        o.s(tags::SOP_CLASS_UID, VR::UI, st.modality.sop_class());
        o.s(tags::SOP_INSTANCE_UID, VR::UI, sop_uid);

        // Series start a few minutes apart; CT/MR slices a second apart.
        let series_s = i64::from(st.time_s + se.offset_s);
        let content_s = series_s + i64::from(i);
        let date_time = |secs: i64| (da(st.date + secs / 86_400), tm((secs % 86_400) as u32));
        let (study_da, study_tm) = date_time(i64::from(st.time_s));
        let (series_da, series_tm) = date_time(series_s);
        let (content_da, content_tm) = date_time(content_s);
        o.s(tags::INSTANCE_CREATION_DATE, VR::DA, &content_da);
        o.s(tags::INSTANCE_CREATION_TIME, VR::TM, &content_tm);
        o.s(tags::STUDY_DATE, VR::DA, &study_da);
        o.s(tags::SERIES_DATE, VR::DA, &series_da);
        o.s(tags::ACQUISITION_DATE, VR::DA, &content_da);
        o.s(tags::CONTENT_DATE, VR::DA, &content_da);
        o.s(tags::STUDY_TIME, VR::TM, &study_tm);
        o.s(tags::SERIES_TIME, VR::TM, &series_tm);
        o.s(tags::ACQUISITION_TIME, VR::TM, &content_tm);
        o.s(tags::CONTENT_TIME, VR::TM, &content_tm);
        o.s(tags::ACCESSION_NUMBER, VR::SH, &st.accession);
        o.s(tags::MODALITY, VR::CS, st.modality.code());
        o.s(tags::MANUFACTURER, VR::LO, eq.manufacturer);
        o.s(tags::INSTITUTION_NAME, VR::LO, profile.institution);
        o.s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, st.referrer);
        o.s(tags::STATION_NAME, VR::SH, eq.station);
        o.s(tags::STUDY_DESCRIPTION, VR::LO, st.description);
        o.s(tags::SERIES_DESCRIPTION, VR::LO, se.description);
        o.s(tags::INSTITUTIONAL_DEPARTMENT_NAME, VR::LO, profile.department);
        o.s(tags::MANUFACTURER_MODEL_NAME, VR::LO, eq.model);

        let mrn = person.sites.iter().find(|(s, _)| *s == st.site).map_or("", |(_, m)| m.as_str());
        o.s(tags::PATIENT_NAME, VR::PN, &person.pn());
        o.s(tags::PATIENT_ID, VR::LO, mrn);
        o.s(tags::ISSUER_OF_PATIENT_ID, VR::LO, CODES[st.site]);
        o.s(tags::PATIENT_BIRTH_DATE, VR::DA, &da(person.birth));
        o.s(tags::PATIENT_SEX, VR::CS, person.sex);
        o.s(tags::PATIENT_AGE, VR::AS, &age(person.birth, st.date));
        o.s(tags::BODY_PART_EXAMINED, VR::CS, st.body_part);
        o.s(tags::PROTOCOL_NAME, VR::LO, st.description);

        o.s(tags::STUDY_INSTANCE_UID, VR::UI, &uid(self.key, &[1, site, study]));
        o.s(tags::SERIES_INSTANCE_UID, VR::UI, &uid(self.key, &[2, site, study, k as u64]));
        o.s(tags::STUDY_ID, VR::SH, &st.study_id);
        o.s(tags::SERIES_NUMBER, VR::IS, &se.number.to_string());
        o.s(tags::ACQUISITION_NUMBER, VR::IS, "1");
        o.s(tags::INSTANCE_NUMBER, VR::IS, &(i + 1).to_string());
        o.s(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
        o.s(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");

        let (rows, cols) = (usize::from(se.rows), usize::from(se.cols));
        let noise = |sigma| Noise::new(Rng::derive(self.key, &[5, site, study, k as u64, u64::from(i)]), sigma);
        let pixels = match &se.kind {
            SeriesKind::Ct(t) => {
                let storage = profile.ct_storage;
                o.s(tags::KVP, VR::DS, "120");
                o.s(tags::CONVOLUTION_KERNEL, VR::SH, t.kernel);
                o.s(tags::GANTRY_DETECTOR_TILT, VR::DS, "0");
                o.s(tags::RESCALE_INTERCEPT, VR::DS, "-1024");
                o.s(tags::RESCALE_SLOPE, VR::DS, "1");
                o.s(tags::RESCALE_TYPE, VR::LO, "HU");
                let join = |f: fn(&(f64, f64)) -> f64| t.windows.iter().map(|w| ds(f(w))).collect::<Vec<_>>().join("\\");
                o.s(tags::WINDOW_CENTER, VR::DS, &join(|w| w.0));
                o.s(tags::WINDOW_WIDTH, VR::DS, &join(|w| w.1));
                if st.contrast {
                    o.s(tags::CONTRAST_BOLUS_AGENT, VR::LO, "OMNIPAQUE 350");
                }
                let (stored, pixel_rep) = match storage {
                    CtStorage::Unsigned12 => (12, 0),
                    CtStorage::Signed16Padded => (16, 1),
                };
                geometry(&mut o, t, i, rows, cols, &uid(self.key, &[4, site, study]));
                grey(&mut o, rows, cols, stored, pixel_rep);
                let (r, labels) = tomo_labels(t, i, st.variant, rows, cols);
                let mut n = noise(if t.kernel == "STANDARD" { 5.0 } else { 12.0 });
                let bytes = phantom::ct_bytes(&r, &labels, &phantom::ct_lut(st.contrast), storage, &mut n);
                (VR::OW, bytes)
            }
            SeriesKind::Mr(t, seq) => {
                let (scan, variant, tr, te, ti, wc, ww) = match seq {
                    MrSeq::T1 | MrSeq::T1Post => ("SE", "SP", "550", "12", None, "750", "1500"),
                    MrSeq::T2 => ("SE", "SK\\SP", "4200", "102", None, "1100", "2400"),
                    MrSeq::Flair => ("SE\\IR", "SK\\SP\\MP", "9000", "120", Some("2500"), "900", "1800"),
                };
                o.s(tags::SCANNING_SEQUENCE, VR::CS, scan);
                o.s(tags::SEQUENCE_VARIANT, VR::CS, variant);
                o.s(tags::SCAN_OPTIONS, VR::CS, "");
                o.s(tags::MR_ACQUISITION_TYPE, VR::CS, "2D");
                o.s(tags::REPETITION_TIME, VR::DS, tr);
                o.s(tags::ECHO_TIME, VR::DS, te);
                if let Some(ti) = ti {
                    o.s(tags::INVERSION_TIME, VR::DS, ti);
                }
                o.s(tags::MAGNETIC_FIELD_STRENGTH, VR::DS, "1.5");
                o.s(tags::IMAGING_FREQUENCY, VR::DS, "63.87");
                o.s(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(t.spacing));
                o.s(tags::WINDOW_CENTER, VR::DS, wc);
                o.s(tags::WINDOW_WIDTH, VR::DS, ww);
                if *seq == MrSeq::T1Post {
                    o.s(tags::CONTRAST_BOLUS_AGENT, VR::LO, "GADOVIST");
                }
                geometry(&mut o, t, i, rows, cols, &uid(self.key, &[4, site, study]));
                grey(&mut o, rows, cols, 12, 0);
                let (r, labels) = tomo_labels(t, i, st.variant, rows, cols);
                (VR::OW, phantom::mr_bytes(&r, &labels, &phantom::mr_lut(*seq), &mut noise(18.0)))
            }
            SeriesKind::Xr { lateral } => {
                let spacing = ds(0.35 * 1024.0 / cols as f64);
                o.s(tags::VIEW_POSITION, VR::CS, if *lateral { "LL" } else { "PA" });
                o.s(tags::PATIENT_ORIENTATION, VR::CS, if *lateral { "P\\F" } else { "L\\F" });
                o.s(tags::IMAGER_PIXEL_SPACING, VR::DS, &format!("{spacing}\\{spacing}"));
                o.s(tags::KVP, VR::DS, if *lateral { "110" } else { "125" });
                o.s(tags::DISTANCE_SOURCE_TO_DETECTOR, VR::DS, "1800");
                o.s(tags::WINDOW_CENTER, VR::DS, "2048");
                o.s(tags::WINDOW_WIDTH, VR::DS, "4096");
                if st.modality == Modality::Dx {
                    o.s(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION");
                    o.s(tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG");
                    o.s(tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
                    o.s(tags::RESCALE_INTERCEPT, VR::DS, "0");
                    o.s(tags::RESCALE_SLOPE, VR::DS, "1");
                    o.s(tags::RESCALE_TYPE, VR::LO, "US");
                }
                grey(&mut o, rows, cols, 12, 0);
                let variant = st.variant ^ u64::from(*lateral);
                (VR::OW, projection::chest_xray(cols, rows, *lateral, variant, &mut noise(22.0)))
            }
            SeriesKind::Us { renal } => {
                o.s(tags::SAMPLES_PER_PIXEL, VR::US, "3"); // placeholder, replaced below
                let variant = st.variant.wrapping_add(u64::from(i) + 1);
                (VR::OB, projection::ultrasound(cols, rows, *renal, variant))
            }
        };

        match &se.kind {
            SeriesKind::Us { .. } => {
                o.us(tags::SAMPLES_PER_PIXEL, 3);
                o.s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
                o.us(tags::PLANAR_CONFIGURATION, 0);
                o.us(tags::ROWS, se.rows);
                o.us(tags::COLUMNS, se.cols);
                o.us(tags::BITS_ALLOCATED, 8);
                o.us(tags::BITS_STORED, 8);
                o.us(tags::HIGH_BIT, 7);
                o.us(tags::PIXEL_REPRESENTATION, 0);
                o.put(us_regions(rows, cols));
            }
            SeriesKind::Ct(_) if profile.ct_storage == CtStorage::Signed16Padded => {
                o.put(DataElement::new(tags::PIXEL_PADDING_VALUE, VR::SS, PrimitiveValue::from(phantom::PADDING)));
            }
            _ => {}
        }
        if st.modality == Modality::Dx {
            o.put(DataElement::new(tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN, VR::SS, PrimitiveValue::from(1i16)));
        }
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(tags::PATIENT_ID, VR::LO, person.nhs.as_str()),
            DataElement::new(tags::ISSUER_OF_PATIENT_ID, VR::LO, "NHS"),
            DataElement::new(tags::TYPE_OF_PATIENT_ID, VR::CS, "TEXT"),
        ]);
        o.put(DataElement::new(tags::OTHER_PATIENT_I_DS_SEQUENCE, VR::SQ, DataSetSequence::from(vec![item])));
        o.put(DataElement::new(tags::PIXEL_DATA, pixels.0, PrimitiveValue::from(pixels.1)));
        o
    }
}

/// Terse setters; US values must be binary, not text.
trait Put {
    fn s(&mut self, tag: Tag, vr: VR, v: &str);
    fn us(&mut self, tag: Tag, v: u16);
}

impl Put for InMemDicomObject {
    fn s(&mut self, tag: Tag, vr: VR, v: &str) {
        self.put_str(tag, vr, v);
    }

    fn us(&mut self, tag: Tag, v: u16) {
        self.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
}

/// Patient's Age (AS) at the study date, e.g. `067Y`.
fn age(birth: i64, at: i64) -> String {
    let (by, bm, bd) = civil_from_days(birth);
    let (y, m, d) = civil_from_days(at);
    let years = y - by - i64::from((m, d) < (bm, bd));
    format!("{:03}Y", years.clamp(0, 999))
}

fn tomo_labels(t: &Tomo, i: u32, variant: u64, rows: usize, cols: usize) -> (Raster, Vec<u8>) {
    let r = Raster::new(cols, rows);
    let mut labels = vec![0u8; rows * cols];
    let (z, _) = t.slice_z(i);
    phantom::slice(t.anatomy, &r, z as f32, &Variation::new(variant, t.anatomy), &mut labels);
    (r, labels)
}

/// Axial geometry in LPS: rows run to the patient's left, columns posterior.
fn geometry(o: &mut InMemDicomObject, t: &Tomo, i: u32, rows: usize, cols: usize, frame_of_ref: &str) {
    let (_, z_mm) = t.slice_z(i);
    let px = t.fov_mm / cols as f64; // square pixels
    let (x0, y0) = (-(cols as f64) * px / 2.0 + px / 2.0, -(rows as f64) * px / 2.0 + px / 2.0);
    o.s(tags::PATIENT_POSITION, VR::CS, "HFS");
    o.s(tags::SLICE_THICKNESS, VR::DS, &ds(t.thickness));
    o.s(tags::IMAGE_POSITION_PATIENT, VR::DS, &format!("{}\\{}\\{}", ds(x0), ds(y0), ds(z_mm)));
    o.s(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0");
    o.s(tags::SLICE_LOCATION, VR::DS, &ds(z_mm));
    // One frame of reference per study: all its axial series share the table.
    o.s(tags::FRAME_OF_REFERENCE_UID, VR::UI, frame_of_ref);
    o.s(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
    o.s(tags::PIXEL_SPACING, VR::DS, &format!("{}\\{}", ds(px), ds(px)));
}

/// Image Pixel module for 16-bit-allocated greyscale.
fn grey(o: &mut InMemDicomObject, rows: usize, cols: usize, stored: u16, pixel_rep: u16) {
    o.us(tags::SAMPLES_PER_PIXEL, 1);
    o.s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    o.us(tags::ROWS, rows as u16);
    o.us(tags::COLUMNS, cols as u16);
    o.us(tags::BITS_ALLOCATED, 16);
    o.us(tags::BITS_STORED, stored);
    o.us(tags::HIGH_BIT, stored - 1);
    o.us(tags::PIXEL_REPRESENTATION, pixel_rep);
}

/// One calibrated 2D tissue region covering the image, so viewers can measure.
fn us_regions(rows: usize, cols: usize) -> DataElement<InMemDicomObject> {
    let depth_cm = 16.0;
    let delta = depth_cm / (rows as f64 * 0.92);
    let ul = |tag, v: usize| DataElement::new(tag, VR::UL, PrimitiveValue::from(v as u32));
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let fd = |tag, v: f64| DataElement::new(tag, VR::FD, PrimitiveValue::from(v));
    let region = InMemDicomObject::from_element_iter([
        us(tags::REGION_SPATIAL_FORMAT, 1),
        us(tags::REGION_DATA_TYPE, 1),
        ul(tags::REGION_FLAGS, 0),
        ul(tags::REGION_LOCATION_MIN_X0, 0),
        ul(tags::REGION_LOCATION_MIN_Y0, 0),
        ul(tags::REGION_LOCATION_MAX_X1, cols - 1),
        ul(tags::REGION_LOCATION_MAX_Y1, rows - 1),
        us(tags::PHYSICAL_UNITS_X_DIRECTION, 3),
        us(tags::PHYSICAL_UNITS_Y_DIRECTION, 3),
        fd(tags::PHYSICAL_DELTA_X, delta),
        fd(tags::PHYSICAL_DELTA_Y, delta),
    ]);
    DataElement::new(tags::SEQUENCE_OF_ULTRASOUND_REGIONS, VR::SQ, DataSetSequence::from(vec![region]))
}
