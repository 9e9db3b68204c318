//! Index lookups at 100,000 studies: by Patient ID, by Study Date range,
//! by patient name prefix and by Accession Number. Run with
//! `scripts/bench-index` (criterion; results also in docs/BENCHMARKS.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use radhub::index::matching::DateRange;
use radhub::index::model::InstanceMeta;
use radhub::index::{Index, SledIndex, StudyFilter};

const STUDIES: u32 = 100_000;
const PATIENTS: u32 = 20_000;
const SURNAMES: [&str; 10] = ["SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "WILSON", "JOHNSON", "DAVIES", "ROBINSON", "WRIGHT"];

/// Study n: patient n % PATIENTS, dates spread over five years (2020–2024).
fn meta(n: u32) -> InstanceMeta {
    let p = n % PATIENTS;
    let day = (n * 7919) % (5 * 365);
    let (y, doy) = (2020 + day / 365, day % 365);
    InstanceMeta {
        site: ["RBD", "RD3", "R0D"][(p % 3) as usize].into(),
        issuer: ["RBD", "RD3", "R0D"][(p % 3) as usize].into(),
        patient_id: format!("P{p:07}"),
        issuer_of_patient_id: "RBD".into(),
        patient_name: format!("{}{}^ANNE", SURNAMES[(p % 10) as usize], p / 10),
        study_uid: format!("1.2.826.0.1.3680043.9.{n}"),
        study_date: format!("{y}{:02}{:02}", 1 + doy / 31 % 12, 1 + doy % 28),
        accession_number: format!("ACC{n:08}"),
        series_uid: format!("1.2.826.0.1.3680043.9.{n}.1"),
        modality: "CT".into(),
        sop_uid: format!("1.2.826.0.1.3680043.9.{n}.1.1"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        file_size: 526_000,
        ..Default::default()
    }
}

fn all(ix: &SledIndex, f: &StudyFilter) -> Vec<radhub::index::model::StudyRecord> {
    ix.find_studies(f).collect::<Result<_, _>>().unwrap()
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (ix, _) = SledIndex::open(&dir.path().join("index")).unwrap();
    let t = std::time::Instant::now();
    for n in 0..STUDIES {
        ix.upsert(&meta(n)).unwrap();
    }
    ix.sync().unwrap();
    eprintln!("indexed {STUDIES} studies in {:.1} s", t.elapsed().as_secs_f64());

    let mut g = c.benchmark_group("index_100k_studies");
    let mut i = 0u32;
    g.bench_function("patient_id", |b| {
        b.iter(|| {
            i = (i + 7) % PATIENTS;
            let f = StudyFilter { patient_id: Some(format!("P{i:07}")), ..Default::default() };
            let r = all(&ix, &f);
            assert_eq!(r.len(), 5);
            black_box(r)
        })
    });
    g.bench_function("accession", |b| {
        b.iter(|| {
            i = (i + 7) % STUDIES;
            let r = all(&ix, &StudyFilter { accession: Some(format!("ACC{i:08}")), ..Default::default() });
            assert_eq!(r.len(), 1);
            black_box(r)
        })
    });
    g.bench_function("study_date_one_day", |b| {
        b.iter(|| {
            let f = StudyFilter { date: Some(DateRange::parse("20230315").unwrap()), ..Default::default() };
            black_box(all(&ix, &f))
        })
    });
    g.bench_function("study_date_one_month", |b| {
        b.iter(|| {
            let f = StudyFilter { date: Some(DateRange::parse("20230301-20230331").unwrap()), ..Default::default() };
            black_box(all(&ix, &f))
        })
    });
    g.bench_function("study_date_one_month_limit_100", |b| {
        b.iter(|| {
            let f = StudyFilter { date: Some(DateRange::parse("20230301-20230331").unwrap()), ..Default::default() };
            black_box(ix.find_studies(&f).take(100).collect::<Result<Vec<_>, _>>().unwrap())
        })
    });
    g.bench_function("name_prefix", |b| {
        b.iter(|| {
            let f = StudyFilter { patient_name: Some("wright19*".into()), ..Default::default() };
            black_box(all(&ix, &f))
        })
    });
    g.finish();
    for (what, f) in [
        ("one day", StudyFilter { date: Some(DateRange::parse("20230315").unwrap()), ..Default::default() }),
        ("one month", StudyFilter { date: Some(DateRange::parse("20230301-20230331").unwrap()), ..Default::default() }),
        ("name prefix", StudyFilter { patient_name: Some("wright19*".into()), ..Default::default() }),
    ] {
        eprintln!("{what}: {} studies", all(&ix, &f).len());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = lookups
}
criterion_main!(benches);
