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

/// A line's labels as [`collect`] leaves them. Filled in place: returning it by value copied
/// its 512 bytes twice per sample (~3 % of trawl's CPU at 1M series in `memmove`).
pub(super) type PageLabels<'a> = SmallVec<[PageLabel<'a>; INLINE_LABELS]>;

/// The order to write a line's labels in: indexes into its [`PageLabels`], sorted by name, a
/// repeated name once (the last), empty values left out. The labels themselves stay where
/// [`collect`] put them: permuting them copied 32 bytes a label (~9 % of the pipeline bench on
/// the histogram page).
pub(super) struct Order {
    /// For up to [`INLINE_LABELS`] labels, on the stack.
    small: [u16; INLINE_LABELS],
    len: usize,
    /// For more (rare).
    big: Option<Vec<u16>>,
}

impl Order {
    pub fn new() -> Order {
        Order { small: [0; INLINE_LABELS], len: 0, big: None }
    }

    pub fn as_slice(&self) -> &[u16] {
        match &self.big {
            None => &self.small[..self.len],
            Some(big) => big,
        }
    }
}

/// The exposed labels of `s` (with `__name__`), sorted by name, with Prometheus' builder rules:
/// a later label of the same name wins, and an empty value means "absent". Escaped text is
/// unescaped into `scratch`, which must be empty (it is cleared by the caller per line).
pub(super) fn collect<'a>(s: &parse::Sample<'a>, scratch: &'a mut Vec<u8>, out: &mut PageLabels<'a>) {
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
    out.clear();
    out.extend(spans.iter().map(|(n, v)| (resolve(n), resolve(v))));
}

/// [`collect`] for a line the parser read on its fast path: the labels are the spans it
/// recorded ([`parse::Parser::fast_label_spans`]) into `input`, with nothing to unescape.
#[inline]
pub(super) fn collect_spans<'a>(
    name: &'a str,
    input: &'a [u8],
    spans: &[[u32; 4]],
    out: &mut PageLabels<'a>,
) {
    out.clear();
    out.push((crate::labels::METRIC_NAME.as_bytes(), name.as_bytes()));
    for &[ns, ne, vs, ve] in spans {
        let (Some(n), Some(v)) = (input.get(ns as usize..ne as usize), input.get(vs as usize..ve as usize))
        else {
            continue;
        };
        out.push((n, v));
    }
}

/// The order to write collected labels in, with the builder rules applied (see [`Order`] and
/// [`collect`]).
///
/// Many exporters write labels unsorted (client_python and the Java client in declaration
/// order, kube-state-metrics in its own), so sorting is per sample work. It compares each
/// name's first 8 bytes as one big-endian word (the whole name, for most), and moves only an
/// index per swap; names equal in their first 8 bytes are ordered by the full compare.
#[inline]
pub(super) fn order(labels: &PageLabels<'_>, order: &mut Order) {
    let n = labels.len();
    order.big = None;
    if n > INLINE_LABELS {
        // A stable sort: of two labels with one name the later stays later.
        let mut big: Vec<u16> = (0..n as u16).collect();
        big.sort_by(|&x, &y| cmp_name(labels[x as usize].0, labels[y as usize].0));
        let kept = dedup(labels, &mut big);
        big.truncate(kept);
        order.big = Some(big);
        return;
    }
    let mut keys = [0u64; INLINE_LABELS];
    let (mut sorted, mut empty) = (true, false);
    for (i, l) in labels.iter().enumerate() {
        keys[i] = prefix_key(l.0);
        order.small[i] = i as u16;
        sorted &= i == 0 || keys[i - 1] < keys[i];
        empty |= l.1.is_empty();
    }
    let idx = &mut order.small[..n];
    if sorted && !empty {
        // Strictly increasing first words: the names are distinct, so the builder rules keep
        // all of them (`dedup`, which compares whole names, was ~4 % of the pipeline bench).
        order.len = n;
        return;
    }
    if !sorted {
        let after = |x: u16, y: u16| {
            let (a, b) = (keys[x as usize], keys[y as usize]);
            a > b
                || (a == b
                    && cmp_name(labels[x as usize].0, labels[y as usize].0) == std::cmp::Ordering::Greater)
        };
        // Insertion sort of the indexes (stable: of two labels with one name the later stays
        // later).
        for i in 1..n {
            let mut j = i;
            while j > 0 && after(idx[j - 1], idx[j]) {
                idx.swap(j - 1, j);
                j -= 1;
            }
        }
        let distinct = |w: &[u16]| {
            let (a, b) = (w[0] as usize, w[1] as usize);
            keys[a] < keys[b] || !crate::labels::eq_bytes(labels[a].0, labels[b].0)
        };
        if !empty && idx.windows(2).all(distinct) {
            order.len = n;
            return;
        }
    }
    order.len = dedup(labels, idx);
}

/// Applies the builder rules to sorted indexes in place: of a repeated name the last one, then
/// only non-empty values. Returns how many are kept (at the front).
#[inline]
fn dedup(labels: &PageLabels<'_>, idx: &mut [u16]) -> usize {
    let n = idx.len();
    let mut k = 0;
    for i in 0..n {
        let l = labels[idx[i] as usize];
        if i + 1 < n && crate::labels::eq_bytes(labels[idx[i + 1] as usize].0, l.0) {
            continue;
        }
        if !l.1.is_empty() {
            idx[k] = idx[i];
            k += 1;
        }
    }
    k
}

/// The first 8 bytes of a name as a big-endian word, zero-padded: ordering these orders the
/// names, except among names that share their first 8 bytes.
#[inline(always)]
fn prefix_key(name: &[u8]) -> u64 {
    if let Some(w) = name.first_chunk::<8>() {
        return u64::from_be_bytes(*w);
    }
    // Shorter: byte by byte into the register. (Copying into a stack array and loading it as a
    // word became a `memcpy` call and a store-forwarding stall: 40 % of `finish`.)
    let mut k = 0u64;
    for (i, &b) in name.iter().enumerate() {
        k |= u64::from(b) << (56 - 8 * i);
    }
    k
}

/// Orders label names. Names mostly differ in their first byte, so that byte is compared
/// before the slices: a `memcmp` call per compare was ~6 % of trawl's CPU at 1M series
/// (perf/README.md).
#[inline(always)]
fn cmp_name(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => crate::labels::cmp_bytes(a, b),
    }
}

/// Appends the record of a series: `page` labels (from [`collect`]) merged with `base`, changed
/// by `diff`. Must agree with [`naive_record`].
#[inline]
pub(super) fn write(
    page: &[PageLabel<'_>],
    order: &[u16],
    base: &Base,
    diff: Option<&EncodedDiff>,
    out: &mut Vec<u8>,
) {
    match diff {
        None => write_plain(page, order, base, out),
        Some(d) => write_with_diff(page, order, base, &d.ops, out),
    }
}

/// [`write`] without a diff (the usual case): a two-way merge.
#[inline]
fn write_plain(page: &[PageLabel<'_>], order: &[u16], base: &Base, out: &mut Vec<u8>) {
    use std::cmp::Ordering::*;
    let honor = base.honor_labels;
    let mut rest = base.labels.as_slice();
    for &(n, v) in order.iter().map(|&k| &page[k as usize]) {
        // Base labels before this page label: the target's, or else the external one.
        while let Some((b, tail)) = rest.split_first() {
            match cmp_name(b.name.as_bytes(), n) {
                Less => {
                    if let Some(f) = b.target.as_deref().or(b.external.as_deref()) {
                        out.extend_from_slice(f);
                    }
                    rest = tail;
                }
                Equal => break,
                Greater => break,
            }
        }
        match rest.split_first() {
            Some((b, tail)) if crate::labels::eq_bytes(b.name.as_bytes(), n) => {
                rest = tail;
                match b.target.as_deref() {
                    Some(t) if !honor => out.extend_from_slice(t),
                    _ => write_label_field(n, v, out),
                }
            }
            _ => write_label_field(n, v, out),
        }
    }
    for b in rest {
        if let Some(f) = b.target.as_deref().or(b.external.as_deref()) {
            out.extend_from_slice(f);
        }
    }
}

/// [`write`] with a diff: a three-way merge, the diff's labels winning.
fn write_with_diff(page: &[PageLabel<'_>], order: &[u16], base: &Base, ops: &[EncodedOp], out: &mut Vec<u8>) {
    let honor = base.honor_labels;
    let page: SmallVec<[PageLabel<'_>; INLINE_LABELS]> = order.iter().map(|&k| page[k as usize]).collect();
    let (mut i, mut j, mut k) = (0, 0, 0);
    loop {
        // The smallest name among the three heads.
        let p = page.get(i).map(|l| l.0);
        let b = base.labels.get(j).map(|l| l.name.as_bytes());
        let d = ops.get(k).map(|o| o.0.as_bytes());
        let Some(name) = [p, b, d].into_iter().flatten().min_by(|x, y| cmp_name(x, y)) else { return };
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
