//! Writing a sample's series record straight from the page bytes.
//!
//! What this is: the per-sample label work of the scrape hot path. A series' final label set is
//! its exposed labels (name and labels as written on the page) merged with the target's labels
//! (Prometheus' `mutateSampleLabels`: target labels win unless `honor_labels`), changed by
//! metric relabeling, then merged with the external labels (series labels win). Relabeling runs
//! once per new series ([`super::verdict`]) and leaves a *diff* (labels to set or remove) when it
//! changed anything; every scrape then writes the record as a sorted merge of three short sorted
//! lists, copying pre-encoded fields for the target and external labels:
//!
//! ```text
//! page:   __name__ cpu mode                 (collected from the line, sorted, empties dropped)
//! base:   instance job | cluster            (target labels | external labels, pre-encoded)
//! diff:   cpu_mode=idle                      (the series' relabeling outcome, usually none)
//! merge:  for each name in order: diff, else page/target by honor_labels, else external
//! ```
//!
//! What this is not: relabeling itself, or the staleness bookkeeping ([`super::page`]).
//! [`naive_record`] is the reference (build a `Labels`, merge, encode); the property test in
//! `scrape/tests.rs` checks the two agree.

use smallvec::SmallVec;

use crate::batch::{label_field_len, write_label_field};
use crate::labels::{Labels, Str};
use crate::parse;

/// A label the merge emits as a ready-made field.
#[derive(Clone, Debug, PartialEq)]
struct Field {
    name: Str,
    /// The encoded record field.
    bytes: Box<[u8]>,
}

impl Field {
    fn new(name: &str, value: &str) -> Field {
        let mut bytes = Vec::with_capacity(label_field_len(name.len(), value.len()));
        write_label_field(name.as_bytes(), value.as_bytes(), &mut bytes);
        Field { name: name.into(), bytes: bytes.into_boxed_slice() }
    }
}

/// One name of the target ∪ external labels, with the field each side would write.
#[derive(Clone, Debug, PartialEq)]
struct BaseLabel {
    name: Str,
    target: Option<Box<[u8]>>,
    external: Option<Box<[u8]>>,
}

/// What the merge of one target needs: its labels and the external labels, pre-encoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Base {
    labels: Vec<BaseLabel>,
    honor_labels: bool,
}

impl Base {
    /// The base of a target with labels `target`, `external` labels, and `honor_labels`.
    pub fn new(target: &Labels, external: &Labels, honor_labels: bool) -> Base {
        let mut labels: Vec<BaseLabel> = Vec::with_capacity(target.len() + external.len());
        let field = |n: &str, v: &str| Field::new(n, v).bytes;
        let (mut t, mut e) = (target.iter().peekable(), external.iter().peekable());
        loop {
            use std::cmp::Ordering::*;
            let order = match (t.peek(), e.peek()) {
                (None, None) => break,
                (Some(_), None) => Less,
                (None, Some(_)) => Greater,
                (Some(a), Some(b)) => a.name.cmp(&b.name),
            };
            let target = if order != Greater { t.next() } else { None };
            let external = if order != Less { e.next() } else { None };
            let Some(name) = target.or(external).map(|l| l.name.clone()) else { break };
            labels.push(BaseLabel {
                name,
                target: target.map(|l| field(&l.name, &l.value)),
                external: external.map(|l| field(&l.name, &l.value)),
            });
        }
        Base { labels, honor_labels }
    }
}

/// A series' relabeling outcome relative to its base merge: labels to set (`Some`) or remove
/// (`None`), sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct Diff(pub Box<[(Str, Option<Str>)]>);

/// One label of an [`EncodedDiff`]: its name and its encoded field, `None` to remove it.
type EncodedOp = (Str, Option<Box<[u8]>>);

/// [`Diff`] with each set label pre-encoded.
#[derive(Debug)]
pub(super) struct EncodedDiff {
    ops: Box<[EncodedOp]>,
}

impl EncodedDiff {
    pub fn new(d: &Diff) -> EncodedDiff {
        let ops = d.0.iter().map(|(n, v)| (n.clone(), v.as_ref().map(|v| Field::new(n, v).bytes))).collect();
        EncodedDiff { ops }
    }

    /// Bytes held (for the heap accounting).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.ops.iter().map(|(n, v)| 16 + n.len() + v.as_ref().map_or(0, |v| v.len())).sum()
    }
}

/// A page label, borrowed from the page or from the unescape scratch.
type PageLabel<'a> = (&'a [u8], &'a [u8]);

/// Labels of one line, collected in [`collect`]: at most this many stay on the stack.
const INLINE_LABELS: usize = 16;

/// The exposed labels of `s` (with `__name__`), sorted by name, with Prometheus' builder rules:
/// a later label of the same name wins, and an empty value means "absent". Escaped text is
/// unescaped into `scratch`, which must be empty (it is cleared by the caller per line).
pub(super) fn collect<'a>(
    s: &parse::Sample<'a>,
    scratch: &'a mut Vec<u8>,
) -> SmallVec<[PageLabel<'a>; INLINE_LABELS]> {
    // Spans first (into the page, or offsets into `scratch`), then slices: `scratch` cannot be
    // borrowed while it grows.
    enum Span<'a> {
        Page(&'a str),
        Scratch(usize, usize),
    }
    let mut spans: SmallVec<[(Span<'a>, Span<'a>); INLINE_LABELS]> = SmallVec::new();
    let unescape = |text: &'a str, escaped: bool, scratch: &mut Vec<u8>| {
        if escaped {
            let start = scratch.len();
            parse::unescape_label_into(text, scratch);
            Span::Scratch(start, scratch.len())
        } else {
            Span::Page(text)
        }
    };
    let (name, name_escaped) = s.raw_name();
    let name = unescape(name, name_escaped, scratch);
    spans.push((Span::Page(crate::labels::METRIC_NAME), name));
    let mut it = s.labels();
    while let Some(l) = it.next_raw() {
        let n = unescape(l.name, l.name_escaped, scratch);
        let v = unescape(l.value, l.value_escaped, scratch);
        spans.push((n, v));
    }
    let scratch: &'a [u8] = scratch;
    let resolve = |s: &Span<'a>| match *s {
        Span::Page(t) => t.as_bytes(),
        Span::Scratch(a, b) => &scratch[a..b],
    };
    let mut out: SmallVec<[PageLabel<'a>; INLINE_LABELS]> =
        spans.iter().map(|(n, v)| (resolve(n), resolve(v))).collect();
    // Insertion sort: exporters mostly write labels sorted, so this is one compare per label.
    // Stable, so of two labels with one name the later stays later.
    for i in 1..out.len() {
        let mut j = i;
        while j > 0 && out[j - 1].0 > out[j].0 {
            out.swap(j - 1, j);
            j -= 1;
        }
    }
    // A repeated name: the last one wins (the parser refuses repeats between the braces, but
    // the quoted syntax can name `__name__` twice); then empty values are absent.
    let mut k = 0;
    for i in 0..out.len() {
        if i + 1 < out.len() && out[i + 1].0 == out[i].0 {
            continue;
        }
        if !out[i].1.is_empty() {
            out[k] = out[i];
            k += 1;
        }
    }
    out.truncate(k);
    out
}

/// Appends the record of a series: `page` labels (from [`collect`]) merged with `base`, changed
/// by `diff`. Must agree with [`naive_record`].
#[inline]
pub(super) fn write(page: &[PageLabel<'_>], base: &Base, diff: Option<&EncodedDiff>, out: &mut Vec<u8>) {
    let honor = base.honor_labels;
    let ops: &[EncodedOp] = diff.map_or(&[], |d| &d.ops);
    let (mut i, mut j, mut k) = (0, 0, 0);
    loop {
        // The smallest name among the three heads.
        let p = page.get(i).map(|l| l.0);
        let b = base.labels.get(j).map(|l| l.name.as_bytes());
        let d = ops.get(k).map(|o| o.0.as_bytes());
        let Some(name) = [p, b, d].into_iter().flatten().min() else { return };
        let p = p.filter(|&n| n == name).map(|_| {
            i += 1;
            page[i - 1]
        });
        let b = b.filter(|&n| n == name).map(|_| {
            j += 1;
            &base.labels[j - 1]
        });
        let d = d.filter(|&n| n == name).map(|_| {
            k += 1;
            &ops[k - 1].1
        });
        // The series' own value: the diff's if it has this name, else page or target label.
        let target = b.and_then(|b| b.target.as_deref());
        let own: Option<Own<'_>> = match d {
            Some(Some(field)) => Some(Own::Field(field)),
            Some(None) => None,
            None => match (p, target) {
                (Some(p), Some(_)) if honor => Some(Own::Page(p)),
                (_, Some(t)) => Some(Own::Field(t)),
                (Some(p), None) => Some(Own::Page(p)),
                (None, None) => None,
            },
        };
        match own {
            Some(Own::Field(f)) => out.extend_from_slice(f),
            Some(Own::Page((n, v))) => write_label_field(n, v, out),
            None => {
                if let Some(e) = b.and_then(|b| b.external.as_deref()) {
                    out.extend_from_slice(e);
                }
            }
        }
    }
}

enum Own<'a> {
    Field(&'a [u8]),
    Page(PageLabel<'a>),
}

/// The base merge as a label set: exposed labels with the target's merged in, the target's
/// winning unless `honor_labels` (what relabeling sees before the `exported_` renames).
pub(super) fn base_labels(exposed: &Labels, target: &Labels, honor_labels: bool) -> Labels {
    let mut l = exposed.clone();
    for t in target.iter() {
        if !honor_labels || !exposed.contains(&t.name) {
            l.set(t.name.clone(), t.value.clone());
        }
    }
    l
}

/// The diff that turns `base` into `fin` (both sorted label sets).
pub(super) fn diff(base: &Labels, fin: &Labels) -> Diff {
    let mut ops: Vec<(Str, Option<Str>)> = Vec::new();
    for l in fin.iter() {
        if base.get(&l.name) != Some(l.value.as_str()) {
            ops.push((l.name.clone(), Some(l.value.clone())));
        }
    }
    for l in base.iter() {
        if !fin.contains(&l.name) {
            ops.push((l.name.clone(), None));
        }
    }
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    Diff(ops.into_boxed_slice())
}

/// The reference for [`write`]: the final label set (`fin`, as relabeling left it) with the
/// external labels merged in, encoded.
#[cfg(test)]
pub(super) fn naive_record(fin: &Labels, external: &Labels, out: &mut Vec<u8>) {
    crate::batch::write_merged(fin, external, out);
}
