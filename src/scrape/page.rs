//! The synchronous page processor: one target's page bytes → a [`Batch`] of series records, with
//! staleness, metadata, exemplars and created timestamps. No HTTP, no channels, no tasks: the
//! scrape loop ([`super::target`]), the benches and the tests all call [`Page::process_page`].
//!
//! # Per sample (the hot path)
//!
//! ```text
//! key    = seeded xxh3 of the raw `name{labels}` bytes
//! entry  = table.hit(key)        one compare with the next entry in page order (series.rs)
//!          or, new: verdict.rs runs relabeling once and stores the outcome in the entry
//! record = record.rs: page labels (sorted) ⋈ target/external labels ⋈ the entry's diff
//! batch  ← record, timestamp, value
//! ```
//!
//! # Staleness
//!
//! A target's staleness set is its entries stamped in the last successful scrape with the SET
//! flag, and the records of those series, compressed ([`super::last`]). A scrape in which every
//! series of the last set came back and none is new (the steady state, checked by counting)
//! needs nothing more. Otherwise the *pass* runs: it hashes this scrape's records (the final
//! labels, so two raw spellings of one series are one series, as Prometheus keys its staleness
//! maps on label sets), drops later duplicates, writes a stale marker for every record of the
//! last set whose labels are not in this one, and compresses the new set. A failed scrape
//! stale-marks the whole last set. So the semantics are Prometheus' `seriesPrev`/`seriesCur`,
//! while a steady target keeps 16 bytes per series in its table plus a few compressed bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::last::LastSeries;
use super::protobuf::{Options, Translation};
use super::record::{self, Base};
use super::series::SeriesTable;
use super::verdict::{ALIAS, DIFF, DROP, INVALID, KIND, SET, Verdicts};
use super::{JobSettings, ScrapeError};
use crate::batch::{Batch, Exemplar, Keep, Metadata, STALE_NAN, side_entries};
use crate::labels::{self, Labels, eq_bytes};
use crate::parse::{self, Parser};

/// foldhash: seeded per process (so untrusted label values cannot flood the tables) and several
/// times faster than std's SipHash on short keys.
type Fast = foldhash::fast::RandomState;

/// Counts of one scrape, for the report series and trawl's own metrics.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Samples on the page.
    pub scraped: u64,
    /// Samples kept after metric relabeling.
    pub post_relabel: u64,
    /// Series new to the target's table (Prometheus: new scrape-cache entries).
    pub added: u64,
    /// Whether the staleness set changed (and so its copy was rewritten).
    pub series_changed: bool,
    /// Stale markers written.
    pub stale_markers: u64,
    /// OpenMetrics `_created` lines that belong to no metric point before them.
    pub created_unmatched: u64,
}

/// How often [`Page::process_page_within`] calls its check: a few hundred microseconds of work,
/// so a deadline is met within about that, at no measurable cost per sample.
pub const CHECK_EVERY_SAMPLES: u64 = 4096;

/// The names of the five series Prometheus writes per scrape, in [`Page::push_report`] order.
const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// One target's state between scrapes (see the module docs).
pub struct Page {
    settings: Arc<JobSettings>,
    target: Labels,
    external: Arc<Labels>,
    base: Base,
    table: SeriesTable,
    verdicts: Verdicts,
    /// This scrape's generation (never 0).
    generation: u32,
    /// The generation of the last successful scrape; 0 after a failure (no set).
    ok_generation: u32,
    /// Series in the last set.
    prev_count: u32,
    /// Their records.
    last: LastSeries,
    /// The next successful scrape runs the pass whatever the counts say (the records may have
    /// changed: a reload, or a set remembered from before a restart).
    force_pass: bool,
    /// Metric family name → its metadata, with the generation it was last seen in; the `Arc`
    /// is reused while HELP/TYPE/UNIT stay the same, so a steady scrape allocates none.
    families: HashMap<Box<str>, (Arc<Metadata>, u32), Fast>,
    /// `families` changed since [`Page::take_families`] last read it.
    families_changed: bool,
    /// The records of the report series, in [`REPORT_SERIES`] order.
    report: [Box<[u8]>; 5],
    /// Unescaped label text of the current line.
    scratch: Vec<u8>,
    /// Samples and record bytes of the last batch, to size the next one.
    last_size: (usize, usize),
    /// The last protobuf page's translation (its buffers are reused).
    protobuf: Translation,
}

impl Page {
    /// A processor for a target with labels `target`, writing records with `external` labels.
    pub fn new(settings: Arc<JobSettings>, target: Labels, external: Arc<Labels>) -> Page {
        let base = Base::new(&target, &external, settings.honor_labels);
        let report = report_records(&target, &external);
        Page {
            settings,
            target,
            external,
            base,
            table: SeriesTable::default(),
            verdicts: Verdicts::default(),
            generation: 0,
            ok_generation: 0,
            prev_count: 0,
            last: LastSeries::default(),
            force_pass: false,
            families: HashMap::default(),
            families_changed: false,
            report,
            scratch: Vec::new(),
            last_size: (0, 0),
            protobuf: Translation::default(),
        }
    }

    /// Applies new settings, target labels or external labels. The table depends on the first
    /// two, so it starts over if they changed; the last set is kept, so what changed labels gets
    /// its stale markers at the next scrape (Prometheus' reload keeps its scrape loops' state
    /// the same way).
    pub fn reconfigure(&mut self, settings: Arc<JobSettings>, target: &Labels, external: &Arc<Labels>) {
        let relabel = *settings != *self.settings || *target != self.target;
        let records = relabel || **external != *self.external;
        if relabel {
            self.table.clear();
            self.verdicts = Verdicts::default();
            self.target = target.clone();
        }
        self.settings = settings;
        if records {
            self.external = external.clone();
            self.base = Base::new(&self.target, &self.external, self.settings.honor_labels);
            self.report = report_records(&self.target, &self.external);
            self.force_pass = true;
        }
    }

    /// Takes `last` as the last set (remembered from a previous run): the next successful scrape
    /// stale-marks what of it is gone, a failed one all of it.
    pub fn remember(&mut self, last: LastSeries) {
        self.last = last;
        self.force_pass = true;
    }

    /// An empty batch for the next scrape, sized like the last one (plus the report series), so
    /// it does not grow record by record.
    pub fn new_batch(&self) -> Batch {
        let (samples, bytes) = self.last_size;
        Batch::take(samples + REPORT_SERIES.len(), bytes + self.report.iter().map(|r| r.len()).sum::<usize>())
    }

    /// The external labels the records carry.
    pub fn external(&self) -> &Arc<Labels> {
        &self.external
    }

    /// The records of the last set.
    pub fn last(&self) -> &LastSeries {
        &self.last
    }

    /// Series in the last set (what a batch of stale markers for all of them holds).
    pub fn last_len(&self) -> usize {
        self.last.len()
    }

    /// Parses a page into `batch` (which should be empty). On error the caller discards `batch`
    /// and calls [`fail`](Self::fail).
    pub fn process_page(
        &mut self,
        body: &[u8],
        format: parse::Format,
        ts: i64,
        batch: &mut Batch,
    ) -> Result<Counts, (ScrapeError, Counts)> {
        self.process_page_within(body, format, ts, batch, |_| Ok(()))
    }

    /// [`process_page`](Self::process_page), calling `check` with the batch every
    /// [`CHECK_EVERY_SAMPLES`] samples: the scrape loop checks its deadline and grows its memory
    /// reservation there, and an error from `check` fails the scrape.
    pub fn process_page_within(
        &mut self,
        body: &[u8],
        format: parse::Format,
        ts: i64,
        batch: &mut Batch,
        check: impl FnMut(&Batch) -> Result<(), ScrapeError>,
    ) -> Result<Counts, (ScrapeError, Counts)> {
        if format != parse::Format::PrometheusProto {
            return self.process_text(body, format, ts, batch, check, None);
        }
        let mut tr = std::mem::take(&mut self.protobuf);
        let opts = Options {
            native: self.settings.scrape_native_histograms,
            classic_too: self.settings.always_scrape_classic_histograms,
        };
        let r = match tr.translate(body, opts) {
            Ok(()) => self.process_text(
                &tr.text,
                parse::Format::PrometheusText,
                ts,
                batch,
                check,
                Some((&tr, body)),
            ),
            Err(e) => Err((ScrapeError::Protobuf(e), Counts::default())),
        };
        self.protobuf = tr;
        r
    }

    /// The sample loop over a text page; `extras` is the translation of a protobuf page (whose
    /// text this is) and the protobuf body, for what the text lines do not carry.
    fn process_text(
        &mut self,
        body: &[u8],
        format: parse::Format,
        ts: i64,
        batch: &mut Batch,
        mut check: impl FnMut(&Batch) -> Result<(), ScrapeError>,
        extras: Option<(&Translation, &[u8])>,
    ) -> Result<Counts, (ScrapeError, Counts)> {
        self.generation = self.generation.wrapping_add(1).max(1);
        let generation = self.generation;
        let settings = self.settings.clone();
        batch.set_external(Some(self.external.clone()));
        let start = batch.len();
        let mut counts = Counts::default();
        let mut parser = Parser::new(body, format);
        let mut family = Family::default();
        self.table.begin_scrape();
        // OpenMetrics created timestamps: where the current metric point's samples start in the
        // batch, and its first sample (a `_created` line must have its labels).
        let om = format == parse::Format::OpenMetrics;
        let mut point: Option<(usize, parse::Sample<'_>)> = None;
        // What the staleness shortcut counts (see the module docs).
        let (mut tracked, mut from_last, mut new_tracked) = (0u32, 0u32, 0u32);
        let mut alias = false;
        // Cursors into a protobuf translation's side lists: TYPE lines, exemplars, created
        // timestamps, native histograms.
        let (mut type_lines, mut ex, mut cr, mut nat) = (0usize, 0usize, 0usize, 0usize);
        let max_schema = crate::histogram::pick_schema(settings.native_histogram_min_bucket_factor);
        loop {
            let entry = match parser.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err((ScrapeError::Parse(e), counts)),
            };
            let s = match entry {
                parse::Entry::Sample(s) => s,
                parse::Entry::Help { name, help } => {
                    family.start(name).help = help;
                    point = None;
                    continue;
                }
                parse::Entry::Type { name, kind } => {
                    let f = family.start(name);
                    f.kind = kind;
                    if let Some((tr, pb)) = extras
                        && let Some(info) = tr.families.get(type_lines)
                    {
                        f.kind = info.kind;
                        f.unit = std::str::from_utf8(&pb[info.unit.start as usize..info.unit.end as usize])
                            .unwrap_or("");
                    }
                    type_lines += 1;
                    point = None;
                    continue;
                }
                parse::Entry::Unit { name, unit } => {
                    family.start(name).unit = unit;
                    point = None;
                    continue;
                }
            };
            counts.scraped += 1;
            if counts.scraped % CHECK_EVERY_SAMPLES == 0
                && let Err(e) = check(batch)
            {
                return Err((e, counts));
            }
            if om && has_created(family.kind) {
                if is_created_of(&s, family.name) {
                    // A point's `_created` comes after its samples (OpenMetrics keeps a point's
                    // lines together), so it is the current point's if the labels match.
                    match point.take() {
                        Some((from, first)) if same_point(&first, &s) && s.value().is_finite() => {
                            batch.set_created_from(from, (s.value() * 1000.0).round() as i64);
                        }
                        _ => counts.created_unmatched += 1,
                    }
                } else if !point.as_ref().is_some_and(|(_, first)| same_point(first, &s)) {
                    point = Some((batch.len(), s));
                }
            }
            let key = raw_key(s.raw_series());
            let explicit = if settings.honor_timestamps { s.timestamp_ms() } else { None };
            // Series with explicit timestamps are neither stale-tracked nor deduplicated, unless
            // `track_timestamps_staleness` (Prometheus).
            let track = explicit.is_none() || settings.track_timestamps_staleness;
            let (info, was_last, new) = match self.table.hit(key, generation) {
                Some((pos, before)) => {
                    let e = self.table.entry_mut(pos);
                    if before == generation {
                        // Repeated on this page: Prometheus keeps the first sample.
                        if track && e.info & SET != 0 {
                            continue;
                        }
                        if track {
                            e.info |= SET;
                        }
                        (e.info, false, false)
                    } else {
                        let was_last =
                            self.ok_generation != 0 && before == self.ok_generation && e.info & SET != 0;
                        e.info = (e.info & !SET) | if track { SET } else { 0 };
                        (e.info, was_last, false)
                    }
                }
                None => {
                    let info = self.verdicts.judge(&s, &settings, &self.target) | if track { SET } else { 0 };
                    self.table.insert(key, info, generation);
                    (info, false, true)
                }
            };
            match info & KIND {
                DROP => continue,
                INVALID => return Err((ScrapeError::Series(self.verdicts.reason(info)), counts)),
                _ => {}
            }
            counts.post_relabel += 1;
            if settings.sample_limit > 0 && counts.post_relabel > settings.sample_limit {
                return Err((ScrapeError::SampleLimit, counts));
            }
            if new {
                counts.added += 1;
            }
            if track {
                tracked += 1;
                from_last += u32::from(was_last);
                new_tracked += u32::from(new);
            }
            alias |= info & ALIAS != 0;
            batch.set_metadata(self.family_metadata(&mut family, &s, generation));
            self.scratch.clear();
            let mut page = record::PageLabels::new();
            match parser.fast_label_spans() {
                Some(spans) => record::collect_spans(s.raw_name().0, body, spans, &mut page),
                None => record::collect(&s, &mut self.scratch, &mut page),
            }
            let mut order = record::Order::new();
            record::order(&page, &mut order);
            let diff = if info & KIND == DIFF { self.verdicts.diff(info) } else { None };
            let base = &self.base;
            batch.push_with(key, track, explicit.unwrap_or(ts), s.value(), |out| {
                record::write(&page, order.as_slice(), base, diff, out)
            });
            if let Some(e) = s.exemplar() {
                batch.push_exemplar(Exemplar {
                    labels: Labels::from_pairs(e.labels().map(|(n, v)| (n.into_owned(), v.into_owned()))),
                    value: e.value(),
                    // RW 2.0: an exemplar MUST have a timestamp; the scrape time when none is given.
                    timestamp_ms: e.timestamp_ms().unwrap_or(ts),
                });
            }
            if let Some((tr, _)) = extras {
                // The side lists are keyed by the sample's ordinal on the page.
                let ord = (counts.scraped - 1) as usize;
                let at = batch.len() - 1;
                for (_, e) in side_entries(&tr.exemplars, &mut ex, ord) {
                    let mut e = e.clone();
                    if e.timestamp_ms == i64::MIN {
                        e.timestamp_ms = ts;
                    }
                    batch.push_exemplar(e);
                }
                if let Some(&(_, ms)) = side_entries(&tr.created, &mut cr, ord).first() {
                    batch.set_created(at, ms);
                }
                if let Some((_, n)) = side_entries(&tr.natives, &mut nat, ord).first() {
                    // Prometheus' appender chain for a kept histogram: schema cap, bucket
                    // limit, validation; an error fails the scrape.
                    let mut n = n.clone();
                    let fail =
                        |e: crate::histogram::HistogramError| (ScrapeError::Protobuf(e.into()), counts);
                    n.limit(max_schema, settings.native_histogram_bucket_limit).map_err(fail)?;
                    n.validate().map_err(fail)?;
                    let mut out = Vec::with_capacity(64 + 12 * n.buckets());
                    n.encode(&mut out);
                    batch.push_histogram(out.into_boxed_slice());
                }
            }
        }
        // Forget series not seen for two scrapes, so the table follows churn instead of growing.
        if self.table.end_scrape(generation) > 0 {
            self.verdicts.sweep(self.table.entries_mut());
        }
        let families = self.families.len();
        self.families.retain(|_, (_, g)| generation.wrapping_sub(*g) <= 1);
        self.families_changed |= self.families.len() != families;
        let unchanged = !self.force_pass
            && !alias
            && new_tracked == 0
            && tracked == self.prev_count
            && from_last == self.prev_count;
        if !unchanged {
            counts.series_changed = self.pass(ts, start, batch, &mut counts);
        }
        self.ok_generation = generation;
        self.last_size = (batch.len(), batch.record_bytes());
        Ok(counts)
    }

    /// The staleness pass (see the module docs). Returns whether the set changed.
    fn pass(&mut self, ts: i64, start: usize, batch: &mut Batch, counts: &mut Counts) -> bool {
        let mut current: HashSet<u64, Fast> =
            HashSet::with_capacity_and_hasher(batch.len() - start, Fast::default());
        let mut duplicates = Vec::new();
        for (i, rec) in batch.recs().iter().enumerate().skip(start) {
            if rec.tracked() && !current.insert(final_key(batch.record_of(rec))) {
                duplicates.push(i);
            }
        }
        if !duplicates.is_empty() {
            // Another raw spelling of a series already on this page (or relabeling made two
            // series one): Prometheus keeps the first. The entry is marked, so the pass runs
            // on every scrape that has it, and left out of the set's count.
            for &i in &duplicates {
                if let Some(pos) = self.table.find(batch.recs()[i].series) {
                    let e = self.table.entry_mut(pos);
                    e.info = (e.info | ALIAS) & !SET;
                }
            }
            let mut next = duplicates.iter().copied().peekable();
            let mut i = 0;
            batch.retain_map(|_| {
                let drop = next.next_if_eq(&i).is_some();
                i += 1;
                if drop { Keep::Drop } else { Keep::Same }
            });
            counts.post_relabel -= duplicates.len() as u64;
        }
        let end = batch.len();
        batch.set_metadata(None);
        let old = std::mem::take(&mut self.last);
        let marked = old.for_each(|record| {
            if !current.contains(&final_key(record)) {
                batch.push_record(record, 0, ts, STALE_NAN);
            }
        });
        if marked.is_err() {
            tracing::error!(target = %self.target, "A target's last series set is damaged; its vanished series get no stale markers.");
        }
        counts.stale_markers += (batch.len() - end) as u64;
        self.last = LastSeries::encode(
            batch.recs()[start..end].iter().filter(|r| r.tracked()).map(|r| batch.record_of(r)),
        );
        self.prev_count = self.last.len() as u32;
        self.force_pass = false;
        batch.len() > end || self.last != old
    }

    /// After a failed scrape (the caller discarded the page's samples): stale-marks every series
    /// of the last set into `batch` and empties the set. Returns the markers written.
    pub fn fail(&mut self, ts: i64, batch: &mut Batch) -> usize {
        batch.clear();
        batch.set_external(Some(self.external.clone()));
        let n = self.stale_mark_all(ts, batch);
        self.ok_generation = 0;
        self.prev_count = 0;
        self.force_pass = false;
        n
    }

    /// The target is gone: stale-marks every series of the last set and the report series.
    /// Returns the markers written.
    pub fn end_of_run(&mut self, ts: i64, batch: &mut Batch) -> usize {
        batch.set_external(Some(self.external.clone()));
        let n = self.stale_mark_all(ts, batch);
        for r in &self.report {
            batch.push_record(r, 0, ts, STALE_NAN);
        }
        n + self.report.len()
    }

    fn stale_mark_all(&mut self, ts: i64, batch: &mut Batch) -> usize {
        batch.set_metadata(None);
        let before = batch.len();
        let last = std::mem::take(&mut self.last);
        if last.for_each(|record| batch.push_record(record, 0, ts, STALE_NAN)).is_err() {
            tracing::error!(target = %self.target, "A target's last series set is damaged; its series get no stale markers.");
        }
        batch.len() - before
    }

    /// Appends the five report series: `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
    /// `scrape_samples_post_metric_relabeling`, `scrape_series_added`.
    pub fn push_report(&self, batch: &mut Batch, ts: i64, values: [f64; 5]) {
        batch.set_metadata(None);
        for (record, value) in self.report.iter().zip(values) {
            batch.push_record(record, 0, ts, value);
        }
    }

    /// The metadata of sample `s` if it belongs to the family whose HELP/TYPE/UNIT came last
    /// (its name is the family name, or that plus a suffix such as `_total` or `_bucket`), as
    /// Prometheus' scrape cache looks metadata up by family.
    /// Borrowed from `family`, so a steady scrape touches no reference count per sample.
    fn family_metadata<'f, 'p>(
        &mut self,
        family: &'f mut Family<'p>,
        s: &parse::Sample<'p>,
        generation: u32,
    ) -> Option<&'f Arc<Metadata>> {
        let name = family.name?;
        // Consecutive samples mostly share their name (a histogram's buckets): one compare
        // with the last member's name instead of the suffix walk (~160 instructions a sample on
        // the histogram page, callgrind).
        let (raw, escaped) = s.raw_name();
        if escaped || !family.member.is_some_and(|m| eq_bytes(m.as_bytes(), raw.as_bytes())) {
            if !belongs_to_family(&s.name(), name) {
                return None;
            }
            if !escaped {
                family.member = Some(raw);
            }
        }
        if family.resolved.is_some() {
            return family.resolved.as_ref();
        }
        let same = |m: &Metadata| {
            m.kind == family.kind
                && eq_bytes(m.help.as_bytes(), family.help.as_bytes())
                && eq_bytes(m.unit.as_bytes(), family.unit.as_bytes())
        };
        let m = match self.families.get_mut(name) {
            Some((m, g)) if same(m) => {
                *g = generation;
                m.clone()
            }
            _ => {
                let m = Arc::new(Metadata {
                    kind: family.kind,
                    help: family.help.clone().into_owned(),
                    unit: family.unit.to_owned(),
                });
                self.families.insert(name.into(), (m.clone(), generation));
                self.families_changed = true;
                m
            }
        };
        family.resolved = Some(m);
        family.resolved.as_ref()
    }

    /// The metadata of the families seen in the last two scrapes (for `/api/v1/targets/metadata`),
    /// sorted by name, if it changed since the last call; a steady target costs nothing here.
    pub fn take_families(&mut self) -> Option<Vec<(Box<str>, Arc<Metadata>)>> {
        if !std::mem::take(&mut self.families_changed) {
            return None;
        }
        let mut out: Vec<_> = self.families.iter().map(|(k, (m, _))| (k.clone(), m.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Some(out)
    }

    /// Heap bytes held per kind of state: (table, verdicts, last set). For the heap figures.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> (usize, usize, usize) {
        (self.table.heap_bytes(), self.verdicts.heap_bytes(), self.last.heap_bytes())
    }

    /// Series in the table.
    #[cfg(test)]
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Distinct relabeling diffs held.
    #[cfg(test)]
    pub fn diff_count(&self) -> usize {
        self.verdicts.diff_count()
    }
}

/// The records of a target's report series.
fn report_records(target: &Labels, external: &Labels) -> [Box<[u8]>; 5] {
    REPORT_SERIES.map(|name| {
        let mut l = target.clone();
        l.set(labels::METRIC_NAME, name);
        let mut out = Vec::new();
        crate::batch::write_merged(&l, external, &mut out);
        out.into_boxed_slice()
    })
}

/// The metric family whose HELP/TYPE/UNIT lines were read last, borrowed from the page.
struct Family<'a> {
    name: Option<&'a str>,
    kind: parse::MetricType,
    help: std::borrow::Cow<'a, str>,
    unit: &'a str,
    /// Its shared metadata, once a sample of it was kept.
    resolved: Option<Arc<Metadata>>,
    /// The name of the last sample found to belong to it (as written, unescaped).
    member: Option<&'a str>,
}

impl Default for Family<'_> {
    fn default() -> Self {
        Family {
            name: None,
            kind: parse::MetricType::Unknown,
            help: "".into(),
            unit: "",
            resolved: None,
            member: None,
        }
    }
}

impl<'a> Family<'a> {
    /// The family `name`: the current one, or a fresh one if the name differs.
    fn start(&mut self, name: &'a str) -> &mut Self {
        if !self.name.is_some_and(|n| eq_bytes(n.as_bytes(), name.as_bytes())) {
            *self = Family { name: Some(name), ..Family::default() };
        }
        self.resolved = None;
        self
    }
}

/// Suffixes a family's samples may add to its name (text format and OpenMetrics).
const FAMILY_SUFFIXES: [&str; 8] =
    ["_total", "_bucket", "_count", "_sum", "_created", "_info", "_gcount", "_gsum"];

/// Whether a sample named `sample` belongs to the family `family`.
#[inline]
fn belongs_to_family(sample: &str, family: &str) -> bool {
    let (s, f) = (sample.as_bytes(), family.as_bytes());
    match s.split_at_checked(f.len()) {
        Some((head, rest)) if eq_bytes(head, f) => {
            rest.is_empty() || FAMILY_SUFFIXES.iter().any(|x| eq_bytes(rest, x.as_bytes()))
        }
        _ => false,
    }
}

/// An xxh3 secret, random per process.
type Secret = xxhash_rust::xxh3::SecretInput<[u8; SECRET_BYTES]>;
/// xxh3's default secret size.
const SECRET_BYTES: usize = 192;
/// The secret of [`raw_key`].
static RAW_SECRET: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
/// The secret of [`final_key`].
static FINAL_SECRET: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();

/// The secret in `cell`, made on first use. A random secret, not a random seed: xxh3 derives a
/// secret from a seed on every call for inputs over 240 bytes (kube-state-metrics lines are),
/// ~160 instructions a sample (callgrind, the dense-node bench's kube-state-metrics page).
fn secret(cell: &'static std::sync::OnceLock<Secret>) -> &'static Secret {
    cell.get_or_init(|| {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Secret::new(bytes)
    })
}

/// A target's table key for a series' raw `name{labels}` bytes: a 64-bit xxh3 hash with a
/// secret random per process (label values come from scraped pages, so the hash must not be
/// predictable). Two spellings colliding would give one the other's relabeling verdict (the
/// labels themselves still come from the page); at 64 bits that is ~10⁻¹² for a 5,000-series
/// target.
pub(super) fn raw_key(raw: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_secret_input(raw, secret(&RAW_SECRET))
}

/// The key of a series' final labels (its record), for the staleness pass.
fn final_key(record: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_secret_input(record, secret(&FINAL_SECRET))
}

/// Whether a family of this type may have `_created` lines (OpenMetrics: counters,
/// histograms and summaries).
fn has_created(kind: parse::MetricType) -> bool {
    matches!(kind, parse::MetricType::Counter | parse::MetricType::Histogram | parse::MetricType::Summary)
}

/// Whether `s` is the `_created` line of the family `family`.
fn is_created_of(s: &parse::Sample<'_>, family: Option<&str>) -> bool {
    family.is_some_and(|f| s.name().strip_prefix(f) == Some("_created"))
}

/// Whether two samples of a family belong to one metric point: the same labels in the same
/// order, but for a bucket's `le` or a quantile's `quantile` (OpenMetrics keeps a point's lines
/// together, `_created` last).
fn same_point(a: &parse::Sample<'_>, b: &parse::Sample<'_>) -> bool {
    let point =
        |(n, _): &(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)| n != "le" && n != "quantile";
    a.labels().filter(point).eq(b.labels().filter(point))
}
