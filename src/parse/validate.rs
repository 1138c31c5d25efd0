//! Strict OpenMetrics 1.0 validation: the rules of the official parser test suite
//! (prometheus/OpenMetrics `tests/testdata/parsers`), on top of the scrape parser's syntax.
//!
//! The family and metric rules follow the reference implementation the suite is checked
//! against (Python `prometheus_client.openmetrics.parser`, which gets all 211 cases right):
//! families are recognised by name and type suffixes, each family name may be used once
//! (which also rejects split families), metadata comes before samples, samples of one
//! metric are contiguous with non-decreasing timestamps, and histogram, counter, stateset,
//! info and exemplar values obey their types. It allocates freely: it backs
//! `trawl check metrics`, not the scrape path.

use std::collections::HashSet;

use super::number::parse_value;
use super::parser::Parser;
use super::{CheckStats, Entry, ErrorKind, MetricType, ParseError, Sample, error_at};

type Labels = Vec<(String, String)>;

/// Exemplar label names and values may hold at most this many code points in total
/// (OpenMetrics 1.0, "Exemplars").
const EXEMPLAR_MAX_CODE_POINTS: usize = 128;

/// Validates a whole OpenMetrics exposition strictly: `Ok(())` exactly when it is valid
/// OpenMetrics 1.0 as the official test suite defines it. The error points at the record
/// that broke a rule (for whole-family rules such as histogram buckets, at the record
/// after the family).
pub fn validate_openmetrics(input: &[u8]) -> Result<(), ParseError> {
    validate(input).map(|_| ())
}

pub(crate) fn validate(input: &[u8]) -> Result<CheckStats, ParseError> {
    let mut parser = Parser::new_strict_openmetrics(input);
    let mut v = Validator { input, seen_names: HashSet::new(), family: None, samples: 0, families: 0 };
    while let Some(entry) = parser.next_entry()? {
        let at = parser.record_start();
        match entry {
            Entry::Help { name, .. } => v.metadata(name, at, |f| &mut f.help)?,
            Entry::Type { name, kind } => {
                v.metadata(name, at, |f| &mut f.typed)?;
                if let Some(f) = v.family.as_mut() {
                    f.typ = kind;
                }
            }
            Entry::Unit { name, unit } => {
                v.metadata(name, at, |f| &mut f.unit_seen)?;
                if let Some(f) = v.family.as_mut() {
                    f.unit = unit.to_owned();
                }
            }
            Entry::Sample(s) => v.sample(&s, at)?,
        }
    }
    v.finish_family(input.len())?;
    Ok(CheckStats { samples: v.samples, families: v.families })
}

struct Validator<'i> {
    input: &'i [u8],
    /// Every family name plus its type's suffixed names seen so far.
    seen_names: HashSet<String>,
    family: Option<Family>,
    samples: usize,
    families: usize,
}

struct Family {
    name: String,
    /// `Unknown` until a TYPE line says otherwise.
    typ: MetricType,
    typed: bool,
    help: bool,
    unit_seen: bool,
    unit: String,
    has_samples: bool,
    /// The current metric (label set without `le`/`quantile`/state label) and its last timestamp.
    group: Option<Labels>,
    group_ts: Option<f64>,
    seen_groups: HashSet<Labels>,
    /// Series seen in the current group at the current timestamp (duplicates are dropped).
    group_series: HashSet<(String, Labels)>,
    /// Samples kept for the histogram rules.
    hist: Vec<HistSample>,
}

struct HistSample {
    suffix: String,
    group: Labels,
    ts: Option<f64>,
    le: f64,
    value: f64,
}

impl Family {
    fn new(name: &str) -> Self {
        Family {
            name: name.to_owned(),
            typ: MetricType::Unknown,
            typed: false,
            help: false,
            unit_seen: false,
            unit: String::new(),
            has_samples: false,
            group: None,
            group_ts: None,
            seen_groups: HashSet::new(),
            group_series: HashSet::new(),
            hist: Vec::new(),
        }
    }

    /// Sample names that belong to this family.
    fn owns(&self, sample: &str) -> bool {
        let Some(suffix) = sample.strip_prefix(self.name.as_str()) else {
            return false;
        };
        if !self.typed {
            return suffix.is_empty();
        }
        suffixes(self.typ).contains(&suffix)
    }
}

/// The sample-name suffixes of each type (OpenMetrics 1.0, "Metric types").
fn suffixes(typ: MetricType) -> &'static [&'static str] {
    match typ {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Summary => &["", "_count", "_sum", "_created"],
        MetricType::Histogram => &["_count", "_sum", "_bucket", "_created"],
        MetricType::GaugeHistogram => &["_gcount", "_gsum", "_bucket"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    }
}

impl Validator<'_> {
    fn err(&self, kind: ErrorKind, at: usize) -> ParseError {
        error_at(self.input, kind, at)
    }

    /// A HELP, TYPE or UNIT line for `name`; `flag` selects which one.
    fn metadata(
        &mut self,
        name: &str,
        at: usize,
        flag: impl FnOnce(&mut Family) -> &mut bool,
    ) -> Result<(), ParseError> {
        if self.family.as_ref().is_some_and(|f| f.name == name) {
            if self.family.as_ref().is_some_and(|f| f.has_samples) {
                return Err(self.err(ErrorKind::MetadataAfterSamples, at));
            }
        } else {
            self.finish_family(at)?;
            self.family = Some(Family::new(name));
        }
        let Some(family) = self.family.as_mut() else {
            return Ok(());
        };
        let seen = flag(family);
        if *seen {
            return Err(self.err(ErrorKind::DuplicateMetadata, at));
        }
        *seen = true;
        Ok(())
    }

    fn sample(&mut self, s: &Sample<'_>, at: usize) -> Result<(), ParseError> {
        use ErrorKind::*;
        self.samples += 1;
        let name = s.name().into_owned();
        if !self.family.as_ref().is_some_and(|f| f.owns(&name)) {
            self.finish_family(at)?;
            let mut f = Family::new(&name);
            // A family started by a sample is `unknown`; a later TYPE is metadata-after-samples.
            f.typed = true;
            self.family = Some(f);
        }
        let input = self.input;
        let err = |kind| error_at(input, kind, at);
        let Some(family) = self.family.as_mut() else {
            return Ok(());
        };
        family.has_samples = true;
        let fam = family.name.clone();
        let typ = family.typ;
        let suffix = name[fam.len()..].to_owned();
        let labels: Labels = s.labels().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |key: &str| labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let is_hist = matches!(typ, MetricType::Histogram | MetricType::GaugeHistogram);
        let is_bucket = is_hist && suffix == "_bucket";
        let is_quantile = typ == MetricType::Summary && suffix.is_empty();

        if typ == MetricType::StateSet && get(&fam).is_none() {
            return Err(err(MissingStateLabel));
        }
        let mut le = f64::NAN;
        if is_bucket {
            let raw = get("le").ok_or(err(InvalidBucketLabel))?;
            le = parse_value(raw.as_bytes()).ok_or(err(InvalidBucketLabel))?;
            // `+Inf` must be spelled canonically; other values may be written any way.
            if le.is_nan() || (le == f64::INFINITY && raw != "+Inf") {
                return Err(err(InvalidBucketLabel));
            }
        }
        if is_quantile {
            let q = get("quantile").and_then(|q| parse_value(q.as_bytes()));
            if !q.is_some_and(|q| (0.0..=1.0).contains(&q)) {
                return Err(err(InvalidQuantileLabel));
            }
        }

        // Grouping: one metric's samples are contiguous; its timestamps are all present or
        // all absent, and do not go backwards (except for info, which has a single group).
        let drop_label = match typ {
            MetricType::Summary if is_quantile => Some("quantile"),
            MetricType::StateSet => Some(fam.as_str()),
            _ if is_bucket => Some("le"),
            _ => None,
        };
        let mut group: Labels = if typ == MetricType::Info {
            Vec::new()
        } else {
            labels.iter().filter(|(k, _)| Some(k.as_str()) != drop_label).cloned().collect()
        };
        group.sort();
        let ts = s.timestamp_ms.map(|_| s.timestamp_secs);
        if family.group.as_ref().is_some_and(|g| *g != group) && family.seen_groups.contains(&group) {
            return Err(err(InterleavedMetric));
        }
        if family.group.as_ref() == Some(&group) {
            if ts.is_some() != family.group_ts.is_some() {
                return Err(err(MixedTimestamps));
            }
            if let (Some(prev), Some(t)) = (family.group_ts, ts)
                && prev > t
                && typ != MetricType::Info
            {
                return Err(err(DecreasingTimestamp));
            }
        } else {
            family.group_series.clear();
        }
        let mut sorted_labels = labels.clone();
        sorted_labels.sort();
        let series = (name.clone(), sorted_labels);
        let duplicate = ts == family.group_ts && family.group_series.contains(&series);
        family.group_series.insert(series);
        if !duplicate && is_hist {
            let hist_group = if is_bucket {
                labels.iter().filter(|(k, _)| k != "le").cloned().collect()
            } else {
                labels.clone()
            };
            family.hist.push(HistSample {
                suffix: suffix.clone(),
                group: hist_group,
                ts,
                le,
                value: s.value,
            });
        }
        family.seen_groups.insert(group.clone());
        family.group = Some(group);
        family.group_ts = ts;

        let v = s.value;
        if typ == MetricType::StateSet && v != 0.0 && v != 1.0 {
            return Err(err(InvalidStateSetValue));
        }
        if typ == MetricType::Info && v != 1.0 {
            return Err(err(InvalidInfoValue));
        }
        if is_quantile && v < 0.0 {
            return Err(err(NegativeValue));
        }
        let counter_like = ["_total", "_sum", "_count", "_bucket", "_gcount", "_gsum"];
        if counter_like.contains(&suffix.as_str()) && v.is_nan() {
            return Err(err(NanValue));
        }
        if counter_like[..5].contains(&suffix.as_str()) && v < 0.0 {
            return Err(err(NegativeValue));
        }
        if let Some(ex) = s.exemplar() {
            let allowed = (is_hist && name.ends_with("_bucket"))
                || (typ == MetricType::Counter && name.ends_with("_total"));
            if !allowed {
                return Err(err(ExemplarNotAllowed));
            }
            let len: usize = ex.labels().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
            if len > EXEMPLAR_MAX_CODE_POINTS {
                return Err(err(ExemplarTooLong));
            }
        }
        Ok(())
    }

    /// Closes the current family: name clashes, unit rules and histogram rules. `at` is
    /// where the next family (or the end) starts.
    fn finish_family(&mut self, at: usize) -> Result<(), ParseError> {
        use ErrorKind::*;
        let Some(f) = self.family.take() else {
            return Ok(());
        };
        self.families += 1;
        let typ = f.typ;
        let extra: &[&str] = if suffixes(typ).contains(&"") { &[] } else { &[""] };
        for suffix in suffixes(typ).iter().chain(extra) {
            if !self.seen_names.insert(format!("{}{}", f.name, suffix)) {
                return Err(self.err(ClashingName, at));
            }
        }
        if !f.unit.is_empty() {
            if !f.name.ends_with(&format!("_{}", f.unit)) {
                return Err(self.err(UnitNotSuffix, at));
            }
            if matches!(typ, MetricType::Info | MetricType::StateSet) {
                return Err(self.err(UnitNotAllowed, at));
            }
        }
        if matches!(typ, MetricType::Histogram | MetricType::GaugeHistogram) {
            check_histogram(&f.hist).map_err(|kind| self.err(kind, at))?;
        }
        Ok(())
    }
}

/// The bucket rules, per metric and timestamp: `le` increasing, values cumulative, a
/// `+Inf` bucket equal to `_count`, `_sum` and `_count` together, no `_sum` with negative
/// buckets, no negative `_gsum` without negative buckets.
fn check_histogram(samples: &[HistSample]) -> Result<(), ErrorKind> {
    use ErrorKind::*;
    #[derive(Default)]
    struct State {
        count: Option<f64>,
        bucket: Option<f64>,
        negative_buckets: bool,
        sum: bool,
        gsum: bool,
        negative_gsum: bool,
        value: f64,
    }
    fn done(s: &State) -> Result<(), ErrorKind> {
        if s.bucket != Some(f64::INFINITY) {
            return Err(MissingInfBucket);
        }
        if s.count.is_some_and(|c| c != s.value) {
            return Err(CountMismatch);
        }
        if (s.sum || s.gsum) != s.count.is_some() {
            return Err(SumCountMismatch);
        }
        if s.negative_buckets && s.sum {
            return Err(SumWithNegativeBuckets);
        }
        if !s.negative_buckets && s.negative_gsum {
            return Err(NegativeGsum);
        }
        Ok(())
    }
    let mut state = State::default();
    let mut current: Option<(&Labels, Option<f64>)> = None;
    for s in samples {
        let key = (&s.group, s.ts);
        if current != Some(key) {
            if current.is_some() {
                done(&state)?;
            }
            state = State::default();
        }
        current = Some(key);
        match s.suffix.as_str() {
            "_bucket" => {
                if s.le < 0.0 {
                    state.negative_buckets = true;
                }
                if state.bucket.is_some_and(|b| s.le <= b) {
                    return Err(BucketsOutOfOrder);
                }
                if s.value < state.value {
                    return Err(BucketValuesDecrease);
                }
                state.bucket = Some(s.le);
                state.value = s.value;
            }
            "_count" | "_gcount" => state.count = Some(s.value),
            "_sum" => state.sum = true,
            "_gsum" => {
                state.gsum = true;
                if s.value < 0.0 {
                    state.negative_gsum = true;
                }
            }
            _ => {}
        }
    }
    if current.is_some() {
        done(&state)?;
    }
    Ok(())
}
