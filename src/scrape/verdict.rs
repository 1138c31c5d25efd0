//! What a raw series becomes, decided once when a target first exposes it: kept as exposed,
//! kept with a diff, dropped by metric relabeling, or invalid (which fails the scrape).
//!
//! What this is: the slow path of the scrape loop, run for a series not in the target's table
//! ([`super::series`]): build the label set (exposed labels, target labels merged with
//! Prometheus' `mutateSampleLabels` rules, metric relabeling, limits) and store the outcome in
//! the entry's info word. A kept series whose final labels are not its base merge (relabeling
//! changed something, or an exposed label clashed with a target label and was renamed
//! `exported_…`) gets a [`Diff`], interned per target: `source_labels: [mode], target_label:
//! cpu_mode` gives a handful of distinct diffs for thousands of series, so a series costs the 4
//! bytes of its id. What this is not: the per-sample record writing ([`super::record`]).
//!
//! # The info word
//!
//! ```text
//! bits 0-1  kind: KEEP (as exposed), DIFF (with diff `id`), DROP, INVALID (reason `id`)
//! bit 2     SET: the series was in the staleness set at its last use (no explicit timestamp)
//! bit 3     ALIAS: another raw spelling has the same final labels (see `page::Page::pass`)
//! bits 4-31 id
//! ```

use std::collections::HashMap;

use super::record::{self, Diff, EncodedDiff};
use super::series::Entry;
use super::{JobSettings, ScrapeError};
use crate::labels::{self, Labels, Str};
use crate::parse;
use crate::relabel;

/// The kind bits of an info word.
pub(super) const KIND: u32 = 0b11;
/// Kept with the labels of its base merge.
pub(super) const KEEP: u32 = 0;
/// Kept with a diff.
pub(super) const DIFF: u32 = 1;
/// Dropped by metric relabeling.
pub(super) const DROP: u32 = 2;
/// Invalid: fails the scrape.
pub(super) const INVALID: u32 = 3;
/// In the staleness set at its last use.
pub(super) const SET: u32 = 1 << 2;
/// Shares its final labels with another raw spelling.
pub(super) const ALIAS: u32 = 1 << 3;
const ID_SHIFT: u32 = 4;
/// Distinct diffs or reasons a target can have (28 bits of id).
const MAX_IDS: usize = 1 << (32 - ID_SHIFT);

type Fast = foldhash::fast::RandomState;

/// A target's interned diffs and invalid-series reasons.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    diffs: Vec<EncodedDiff>,
    diff_ids: HashMap<Diff, u32, Fast>,
    reasons: Vec<Str>,
}

impl Verdicts {
    /// Decides the fate of page sample `s` and returns its info word (SET and ALIAS clear).
    pub fn judge(&mut self, s: &parse::Sample<'_>, settings: &JobSettings, target: &Labels) -> u32 {
        let exposed = exposed_labels(s);
        let base = record::base_labels(&exposed, target, settings.honor_labels);
        match build(exposed, settings, target) {
            Built::Keep(fin) => {
                let d = record::diff(&base, &fin);
                if d.0.is_empty() {
                    return KEEP;
                }
                let id = match self.diff_ids.get(&d) {
                    Some(&id) => id,
                    None if self.diffs.len() >= MAX_IDS => {
                        return self
                            .invalid("too many distinct metric relabeling outcomes for one target".into());
                    }
                    None => {
                        let id = self.diffs.len() as u32;
                        self.diffs.push(EncodedDiff::new(&d));
                        self.diff_ids.insert(d, id);
                        id
                    }
                };
                DIFF | id << ID_SHIFT
            }
            Built::Dropped => DROP,
            Built::Invalid(reason) => self.invalid(reason),
        }
    }

    fn invalid(&mut self, reason: Str) -> u32 {
        let id = match self.reasons.iter().position(|r| *r == reason) {
            Some(i) => i,
            None if self.reasons.len() < MAX_IDS => {
                self.reasons.push(reason);
                self.reasons.len() - 1
            }
            None => 0,
        };
        INVALID | (id as u32) << ID_SHIFT
    }

    /// The diff of a `DIFF` info word.
    #[inline]
    pub fn diff(&self, info: u32) -> Option<&EncodedDiff> {
        if info & KIND == DIFF { self.diffs.get((info >> ID_SHIFT) as usize) } else { None }
    }

    /// Why an `INVALID` series is invalid.
    pub fn reason(&self, info: u32) -> Str {
        self.reasons.get((info >> ID_SHIFT) as usize).cloned().unwrap_or_else(|| "invalid series".into())
    }

    /// Forgets diffs and reasons no entry uses any more (after evictions), renumbering the rest.
    pub fn sweep(&mut self, entries: &mut [Entry]) {
        if self.diffs.is_empty() && self.reasons.is_empty() {
            return;
        }
        let mut diff_map = vec![u32::MAX; self.diffs.len()];
        let mut reason_map = vec![u32::MAX; self.reasons.len()];
        let (mut diffs, mut reasons) = (0u32, 0u32);
        for e in entries.iter_mut() {
            let (kind, id) = (e.info & KIND, (e.info >> ID_SHIFT) as usize);
            let map = match kind {
                DIFF => (&mut diff_map, &mut diffs),
                INVALID => (&mut reason_map, &mut reasons),
                _ => continue,
            };
            let Some(slot) = map.0.get_mut(id) else { continue };
            if *slot == u32::MAX {
                *slot = *map.1;
                *map.1 += 1;
            }
            e.info = (e.info & ((1 << ID_SHIFT) - 1)) | *slot << ID_SHIFT;
        }
        // New ids were handed out in first-use order: move each kept item to its new id.
        let mut placed: Vec<Option<EncodedDiff>> = (0..diffs).map(|_| None).collect();
        for (d, &to) in std::mem::take(&mut self.diffs).into_iter().zip(&diff_map) {
            if let Some(slot) = placed.get_mut(to as usize) {
                *slot = Some(d);
            }
        }
        self.diffs =
            placed.into_iter().map(|d| d.unwrap_or_else(|| EncodedDiff::new(&Diff::default()))).collect();
        self.diff_ids.retain(|_, id| diff_map.get(*id as usize).is_some_and(|&to| to != u32::MAX));
        for id in self.diff_ids.values_mut() {
            *id = diff_map[*id as usize];
        }
        let mut new_reasons = vec![Str::default(); reasons as usize];
        for (i, &to) in reason_map.iter().enumerate() {
            if to != u32::MAX {
                new_reasons[to as usize] = self.reasons[i].clone();
            }
        }
        self.reasons = new_reasons;
    }

    /// Distinct diffs held.
    #[cfg(test)]
    pub fn diff_count(&self) -> usize {
        self.diffs.len()
    }

    /// Heap bytes held, roughly (for the heap-per-series figures).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.diffs.iter().map(|d| d.heap_bytes() + 48).sum::<usize>() + self.reasons.len() * 32
    }
}

/// A series' label set as built by [`build`].
pub(super) enum Built {
    Keep(Labels),
    Dropped,
    Invalid(Str),
}

/// The exposed labels of a page sample: `__name__` first, then the labels in order (a later one
/// of the same name wins, an empty value removes), as Prometheus' label builder does.
pub(super) fn exposed_labels(s: &parse::Sample<'_>) -> Labels {
    let mut exposed = Labels::new();
    exposed.set(labels::METRIC_NAME, s.name().into_owned());
    for (n, v) in s.labels() {
        exposed.set(n.into_owned(), v.into_owned());
    }
    exposed
}

/// Builds the final label set of a page series from its exposed labels: target labels merged
/// with Prometheus' `mutateSampleLabels` rules, metric relabeling, then the limits.
pub(super) fn build(exposed: Labels, settings: &JobSettings, target: &Labels) -> Built {
    let mut l = exposed.clone();
    if settings.honor_labels {
        for t in target.iter() {
            if !exposed.contains(&t.name) {
                l.set(t.name.as_str(), t.value.as_str());
            }
        }
    } else {
        let mut conflicts: Vec<(&str, &str)> = Vec::new();
        for t in target.iter() {
            if let Some(v) = exposed.get(&t.name) {
                conflicts.push((t.name.as_str(), v));
            }
            l.set(t.name.as_str(), t.value.as_str());
        }
        // Shorter names first, then `exported_` prepended until the name is free.
        conflicts.sort_by_key(|(n, _)| n.len());
        for (name, value) in conflicts {
            let mut new_name = name.to_owned();
            loop {
                new_name.insert_str(0, "exported_");
                if !l.contains(&new_name) {
                    l.set(new_name, value);
                    break;
                }
            }
        }
    }
    if !relabel::process(&settings.metric_relabel, &mut l) {
        return Built::Dropped;
    }
    if l.is_empty() {
        return Built::Dropped;
    }
    let Some(name) = l.get(labels::METRIC_NAME).map(str::to_owned) else {
        return Built::Invalid("__name__ label is mandatory".into());
    };
    // `metric_name_validation_scheme: legacy` fails the scrape on a name outside the legacy
    // character sets, after relabeling (which may have fixed it), as Prometheus 3 does.
    if !settings.metric_name_validation_utf8
        && !l.iter().all(|lb| {
            labels::is_valid_label_name(&lb.name)
                && (lb.name.as_str() != labels::METRIC_NAME || labels::is_valid_metric_name(&lb.value))
        })
    {
        return Built::Invalid(
            format!("invalid metric name or label names: {}", go_labels_string(&l)).into(),
        );
    }
    let st = settings;
    if st.label_limit > 0 && l.len() as u64 > st.label_limit {
        return Built::Invalid(ScrapeError::LabelLimit(name, l.len(), st.label_limit).to_string().into());
    }
    for lb in l.iter() {
        if st.label_name_length_limit > 0 && lb.name.len() as u64 > st.label_name_length_limit {
            let e = ScrapeError::LabelNameLength(name, lb.name.to_string(), st.label_name_length_limit);
            return Built::Invalid(e.to_string().into());
        }
        if st.label_value_length_limit > 0 && lb.value.len() as u64 > st.label_value_length_limit {
            let e = ScrapeError::LabelValueLength(name, lb.name.to_string(), st.label_value_length_limit);
            return Built::Invalid(e.to_string().into());
        }
    }
    Built::Keep(l)
}

/// Go's `labels.Labels.String()`: names outside the legacy set quoted, values quoted. (Go's
/// `strconv.Quote` also escapes non-printable characters as `\x..`/`\u....`; this escapes only
/// `\`, `"` and newline, as the text format does.)
fn go_labels_string(l: &Labels) -> String {
    let mut out = String::from("{");
    for (i, lb) in l.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if labels::is_valid_label_name(&lb.name) {
            out.push_str(&lb.name);
        } else {
            out.push('"');
            out.push_str(&labels::escape_value(&lb.name));
            out.push('"');
        }
        out.push_str("=\"");
        out.push_str(&labels::escape_value(&lb.value));
        out.push('"');
    }
    out.push('}');
    out
}
