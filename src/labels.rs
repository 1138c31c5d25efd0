//! Label sets: the vocabulary every stage shares.
//!
//! A [`Labels`] is kept sorted by name with unique names and no empty values, which is the invariant
//! remote write demands (spec 1.0: "MUST be sorted", "MUST NOT have empty values") and the one
//! Prometheus' `labels.Builder` enforces (setting a label to `""` deletes it). Keeping it sorted on
//! every write makes encoding a straight copy and equality a slice compare.
//!
//! This is not the hot-path representation: per-sample work goes through borrowed slices and
//! interned label sets; `Labels` is what targets, relabel rules and the remote-write encoder agree
//! on. Names and values are [`Str`]s, shared rather than copied: the series of one target repeat
//! the same strings (the target's own labels on every series, metric names, `le`, `cpu`, `mode`
//! values), and a scrape loop interns them, so a series costs its label slots, not its text.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// An immutable string that clones by reference count: a label name or value.
///
/// One pointer wide ([`arcstr::ArcStr`] keeps the length in the allocation's header), not the
/// two words of an `Arc<str>`: a label is two of these, so a series' label slots take 16 bytes
/// a label instead of 32. At 1M active series with ~7 labels each that is ~110 MB of RSS
/// (perf/README.md, "Where the RSS goes").
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Str(arcstr::ArcStr);

impl Str {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `a` and `b` are the same allocation (not just equal text).
    pub fn ptr_eq(a: &Str, b: &Str) -> bool {
        arcstr::ArcStr::ptr_eq(&a.0, &b.0)
    }

    /// How many `Str`s share this allocation (for interners sweeping what nobody else holds).
    pub fn share_count(&self) -> usize {
        // `None` for a static literal (only the empty string here), which nobody frees.
        arcstr::ArcStr::strong_count(&self.0).unwrap_or(usize::MAX)
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str(arcstr::ArcStr::from(s))
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str(arcstr::ArcStr::from(s))
    }
}

impl From<&String> for Str {
    fn from(s: &String) -> Self {
        Str(arcstr::ArcStr::from(s.as_str()))
    }
}

impl From<std::borrow::Cow<'_, str>> for Str {
    fn from(s: std::borrow::Cow<'_, str>) -> Self {
        Str(arcstr::ArcStr::from(s.as_ref()))
    }
}

impl From<Str> for String {
    fn from(s: Str) -> Self {
        s.0.as_str().to_owned()
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.0.as_str() == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Str {
    fn eq(&self, other: &String) -> bool {
        &*self.0 == other.as_str()
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The metric name label.
pub const METRIC_NAME: &str = "__name__";
/// The label that carries a target's scrape address.
pub const ADDRESS: &str = "__address__";
/// The label that carries a target's scheme.
pub const SCHEME: &str = "__scheme__";
/// The label that carries a target's metrics path.
pub const METRICS_PATH: &str = "__metrics_path__";
/// Prefix of the labels that carry URL parameters.
pub const PARAM_PREFIX: &str = "__param_";
/// The label that carries a target's scrape interval.
pub const SCRAPE_INTERVAL: &str = "__scrape_interval__";
/// The label that carries a target's scrape timeout.
pub const SCRAPE_TIMEOUT: &str = "__scrape_timeout__";
/// The job label.
pub const JOB: &str = "job";
/// The instance label.
pub const INSTANCE: &str = "instance";
/// Labels with this prefix are internal and removed after target relabeling.
pub const RESERVED_PREFIX: &str = "__";

/// One label: a name and a non-empty value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// The label name.
    pub name: Str,
    /// The label value; never empty inside a [`Labels`].
    pub value: Str,
}

/// A sorted set of labels with unique names and no empty values.
///
/// It also caches its [`content_hash`](Labels::content_hash): an interned set is hashed by
/// every remote-write request that carries one of its samples (the encoders group a batch's
/// samples by series), and rehashing ~7 labels per sample was 8.6 % of trawl's CPU at 1M
/// active series (`perf/compare.py --flamegraph`). And it can keep one derived byte string,
/// [`derived_bytes`](Labels::derived_bytes): the remote-write 1.0 encoder keeps a series'
/// encoded label fields there, so a steady-state request copies them instead of re-encoding
/// every label of every series (protobuf encoding was ~20 % of trawl's CPU in the same profile).
///
/// Last, it carries two [set marks](Labels::mark): a scrape loop keeps the series of this
/// scrape and of the last one in two sets whose membership test is a read of the mark, in the
/// cache line the loop has just touched to take a reference, instead of a probe into a hash table
/// that is cold by the time the target's next scrape comes (18 % of `process_page` at 1M series,
/// perf/README.md). The marks fit in the allocator size class the set already used (80 bytes).
#[derive(Default)]
pub struct Labels(Vec<Label>, AtomicU64, OnceLock<Box<[u8]>>, [AtomicU32; 2]);

/// Bytes of the key stored in front of [`Labels::derived_bytes`] (a `(u64, Box<[u8]>)` pair
/// would make every `Labels` 8 bytes larger, cached bytes or not).
const DERIVED_KEY_BYTES: usize = 8;

impl Clone for Labels {
    /// The clone keeps the cached hash but not the derived bytes: a clone is usually made to be
    /// changed, and copying the bytes would cost an allocation for nothing.
    fn clone(&self) -> Self {
        Labels(self.0.clone(), AtomicU64::new(self.1.load(Relaxed)), OnceLock::new(), Default::default())
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// The hasher behind [`Labels::content_hash`]: seeded once per process (label values come from
/// scraped pages, so the seed must not be guessable), the same for every set.
static CONTENT_HASHER: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();

impl Labels {
    /// An empty set.
    pub const fn new() -> Self {
        Labels(Vec::new(), AtomicU64::new(0), OnceLock::new(), [AtomicU32::new(0), AtomicU32::new(0)])
    }

    /// Bytes derived from this set by `make`, made on first use and kept until the set changes.
    /// One derivation is kept per set: `key` names it (the caller folds in whatever else the
    /// bytes depend on), and a call with another key than the kept one gets `None` and should
    /// derive the bytes itself without caching them. `make` appends the bytes to the vector it
    /// is given.
    pub fn derived_bytes(&self, key: u64, make: impl FnOnce(&Labels, &mut Vec<u8>)) -> Option<&[u8]> {
        let kept = self.2.get_or_init(|| {
            let mut b = key.to_le_bytes().to_vec();
            make(self, &mut b);
            b.into_boxed_slice()
        });
        let (k, bytes) = kept.split_first_chunk::<DERIVED_KEY_BYTES>()?;
        // One 8-byte load and compare (a slice compare here was 2.3 % of trawl's CPU).
        (u64::from_le_bytes(*k) == key).then_some(bytes)
    }

    /// The mark in slot `slot` (0 or 1); 0 until [`set_mark`](Labels::set_mark) is called, and 0
    /// in a clone. The owner of a set of label sets (a scrape loop) stores its set's current id
    /// here to say "member", so one label set must belong to the sets of one owner only.
    pub fn mark(&self, slot: usize) -> u32 {
        self.3[slot].load(Relaxed)
    }

    /// Stores `id` in mark slot `slot` (see [`mark`](Labels::mark)).
    pub fn set_mark(&self, slot: usize, id: u32) {
        self.3[slot].store(id, Relaxed);
    }

    /// Marks the set changed: the cached hash and derived bytes are dropped.
    fn changed(&mut self) {
        self.1.store(0, Relaxed);
        self.2.take();
    }

    /// A hash of the labels (equal sets, equal hashes), computed on first use and kept until
    /// the set changes.
    pub fn content_hash(&self) -> u64 {
        match self.1.load(Relaxed) {
            0 => {
                use std::hash::BuildHasher as _;
                // 0 marks "not computed", so a real 0 is stored as 1.
                let h = CONTENT_HASHER.get_or_init(Default::default).hash_one(&self.0).max(1);
                self.1.store(h, Relaxed);
                h
            }
            h => h,
        }
    }

    /// Builds a set from pairs: sorted, a later duplicate name wins, empty values dropped.
    pub fn from_pairs<N, V, I>(pairs: I) -> Self
    where
        N: Into<Str>,
        V: Into<Str>,
        I: IntoIterator<Item = (N, V)>,
    {
        let mut out = Labels::new();
        for (n, v) in pairs {
            out.set(n, v);
        }
        out
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.0[i].value.as_str())
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name` to `value`; an empty value removes the label, as Prometheus' builder does.
    pub fn set(&mut self, name: impl Into<Str>, value: impl Into<Str>) {
        let name = name.into();
        let value = value.into();
        self.changed();
        match self.find(&name) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label { name, value }),
        }
    }

    /// Removes `name`; returns its value if it was present.
    pub fn remove(&mut self, name: &str) -> Option<Str> {
        self.changed();
        self.find(name).ok().map(|i| self.0.remove(i).value)
    }

    /// Replaces every name and value with `intern(it)`, equal text by contract, so that label
    /// sets can share one copy of each string (see [`Str`]).
    ///
    /// It also gives back spare capacity: a set built label by label (exposed labels, then
    /// target labels, then relabeling) ends with room for up to twice its labels, 32 bytes each,
    /// and an interned set lives as long as its series (a node-exporter-shaped series held
    /// ~150 bytes less in `tests/pipeline_alloc.rs`).
    pub fn share_strings(&mut self, mut intern: impl FnMut(&Str) -> Str) {
        for l in &mut self.0 {
            l.name = intern(&l.name);
            l.value = intern(&l.value);
        }
        self.0.shrink_to_fit();
    }

    /// Keeps only the labels for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) {
        self.changed();
        self.0.retain(|l| keep(l));
    }

    /// The labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// The labels as a sorted slice.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|l| l.name.as_str().cmp(name))
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Formats as Prometheus does: `{a="1", b="2"}` with values escaped.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"{}\"", l.name, escape_value(&l.value))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Escapes a label value for the text format: `\`, `"` and newline.
pub fn escape_value(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether two byte strings are equal, compared a word at a time inline. Names, HELP texts and
/// label values compared per sample on the scrape path are short, and `memcmp`'s call and
/// dispatch dominated such compares (~15 % of the in-process pipeline bench on the node-exporter
/// page, perf/README.md).
#[inline]
pub fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (aw, ar) = a.as_chunks::<8>();
    let (bw, br) = b.as_chunks::<8>();
    aw.iter().zip(bw).all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
        && ar.iter().zip(br).all(|(x, y)| x == y)
}

/// Orders two byte strings as `a.cmp(b)` does, a word at a time inline (see [`eq_bytes`]).
#[inline]
pub fn cmp_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let (aw, _) = a.as_chunks::<8>();
    let (bw, _) = b.as_chunks::<8>();
    let mut i = 0;
    for (x, y) in aw.iter().zip(bw) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    let (ra, rb) = (&a[i..], &b[i..]);
    for (x, y) in ra.iter().zip(rb) {
        if x != y {
            return x.cmp(y);
        }
    }
    ra.len().cmp(&rb.len())
}

/// Whether `name` is a valid label name in the legacy (pre-UTF-8) scheme: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `name` is a valid metric name in the legacy scheme: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_sorted_and_unique() {
        let mut l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", "3")]);
        l.set("b", "x");
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(l.get("b"), Some("x"));
    }

    #[test]
    fn content_hash_follows_the_content() {
        let a = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let b = Labels::from_pairs([("b", "2"), ("a", "1")]);
        assert_eq!(a.content_hash(), b.content_hash(), "equal sets, equal hashes");
        let mut c = a.clone();
        assert_eq!(c.content_hash(), a.content_hash(), "a clone keeps the cached hash");
        c.set("b", "3");
        assert_ne!(c.content_hash(), a.content_hash(), "a change recomputes it");
        c.set("b", "2");
        assert_eq!(c.content_hash(), a.content_hash());
        c.remove("a");
        assert_ne!(c.content_hash(), a.content_hash(), "remove recomputes it");
        let mut d = a.clone();
        d.retain(|l| l.name != "b");
        assert_eq!(d.content_hash(), Labels::from_pairs([("a", "1")]).content_hash(), "retain recomputes it");
    }

    #[test]
    fn derived_bytes_are_kept_per_key_and_dropped_on_change() {
        let mut l = Labels::from_pairs([("a", "1")]);
        let mut made = 0;
        let mut make = |_: &Labels, b: &mut Vec<u8>| {
            made += 1;
            b.push(b'x');
        };
        assert_eq!(l.derived_bytes(7, &mut make), Some(&b"x"[..]), "made on first use");
        assert_eq!(l.derived_bytes(7, &mut make), Some(&b"x"[..]), "then kept");
        assert_eq!(l.derived_bytes(8, &mut make), None, "another key is not cached");
        assert!(l.clone().2.get().is_none(), "a clone does not copy them");
        l.set("b", "2");
        assert!(l.2.get().is_none(), "a change drops them");
        assert_eq!(l.derived_bytes(8, &mut make), Some(&b"x"[..]), "and the next key may fill them");
        l.remove("b");
        assert!(l.2.get().is_none(), "remove drops them");
        l.derived_bytes(8, &mut make);
        l.retain(|_| true);
        assert!(l.2.get().is_none(), "retain drops them");
        assert_eq!(made, 3, "made once per fill");
    }

    #[test]
    fn empty_value_deletes() {
        let mut l = Labels::from_pairs([("a", "1"), ("b", "")]);
        assert_eq!(l.len(), 1, "an empty value is never stored");
        l.set("a", "");
        assert!(l.is_empty(), "setting an empty value removes the label");
    }

    #[test]
    fn display_escapes() {
        let l = Labels::from_pairs([("a", "x\"y\\z\nw")]);
        assert_eq!(l.to_string(), r#"{a="x\"y\\z\nw"}"#);
    }

    proptest::proptest! {
        /// The inline compares against the slice ones they stand in for.
        #[test]
        fn inline_compares_match_the_slice_ones(
            a in proptest::collection::vec(proptest::sample::select(vec![0u8, 1, b'a', b'b', 0xff]), 0..40),
            b in proptest::collection::vec(proptest::sample::select(vec![0u8, 1, b'a', b'b', 0xff]), 0..40),
            prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
        ) {
            let (a, b) = ([&prefix[..], &a].concat(), [&prefix[..], &b].concat());
            proptest::prop_assert_eq!(eq_bytes(&a, &b), a == b);
            proptest::prop_assert_eq!(cmp_bytes(&a, &b), a.cmp(&b));
            proptest::prop_assert!(eq_bytes(&a, &a.clone()));
            proptest::prop_assert_eq!(cmp_bytes(&a, &a.clone()), std::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn name_validity() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a:b"), "colons are for metric names only");
        assert!(is_valid_metric_name("a:b"));
        assert!(!is_valid_metric_name(""));
    }
}
