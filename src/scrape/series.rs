//! A target's series table: one 16-byte entry per raw series it has exposed lately, kept in the
//! order its page lists them.
//!
//! What this is: the only per-series state a target keeps between scrapes (besides the
//! compressed copy of its last series, [`super::last`]): the series' key (a seeded hash of its
//! `name{labels}` bytes on the page), the scrape generation it was last seen in, and a word of
//! [`info`](Entry::info) (the cached relabeling verdict, whether it is in the staleness set).
//! What this is not: the labels. A kept series' record is written from the page bytes at every
//! scrape ([`super::record`]), so no label text is held per series.
//!
//! # Why page order, and no hash index in the steady state
//!
//! At 1M series over 400 targets, a target's state is cold when its next scrape comes (399 other
//! targets ran in between). Exporters list their series in the same order every scrape, so each
//! line is compared with the entry after the previous line's: a sequential walk the hardware
//! prefetcher streams (a hash probe per line was 38 % of the old `process_page`, perf/README.md).
//! A hash index is built only when a line is not where the walk expects it (a new series, a
//! reordered page), and the table is then re-sorted into that scrape's order, so the next scrape
//! walks again; the index is kept only for pages that keep reordering. A steady target holds 16
//! bytes a series and nothing else here.
//!
//! The reference model is a `HashMap<u64, (info, generation)>` whose entries unused for two
//! scrapes are evicted; a property test in `scrape/tests.rs` compares the two.

use hashbrown::HashTable;

/// One raw series of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// Seeded hash of the series' raw `name{labels}` bytes.
    pub hash: u64,
    /// The scrape generation it was last seen in.
    pub seen: u32,
    /// The verdict and flags, see [`super::page`].
    pub info: u32,
}

/// The entries of one target (see the module docs).
#[derive(Debug, Default)]
pub(super) struct SeriesTable {
    entries: Vec<Entry>,
    /// Hash → position, only while lines are not where the walk expects them.
    index: Option<HashTable<u32>>,
    /// Where the next line is expected: the position after the previous line's entry.
    cursor: usize,
    /// Lines of this scrape that reached the table.
    lines: u32,
    /// This scrape's entry positions in page order, from the first line that was not where
    /// expected (before it, line `i` was entry `i`).
    order: Option<Vec<u32>>,
    /// Lines found through the index rather than the walk.
    jumps: usize,
}

impl SeriesTable {
    /// Starts a scrape.
    pub fn begin_scrape(&mut self) {
        self.cursor = 0;
        self.lines = 0;
        self.jumps = 0;
        self.order = None;
    }

    /// Finds `hash`; on a hit stamps the entry seen in `generation` and returns its position and
    /// the generation it was seen in before.
    #[inline]
    pub fn hit(&mut self, hash: u64, generation: u32) -> Option<(usize, u32)> {
        let pos = match self.entries.get(self.cursor) {
            Some(e) if e.hash == hash => {
                if let Some(order) = &mut self.order {
                    order.push(self.cursor as u32);
                }
                self.cursor
            }
            _ => {
                self.start_order();
                let pos = self.find(hash)?;
                self.jumps += 1;
                if let Some(order) = &mut self.order {
                    order.push(pos as u32);
                }
                pos
            }
        };
        self.cursor = pos + 1;
        self.lines += 1;
        let e = &mut self.entries[pos];
        let before = e.seen;
        e.seen = generation;
        Some((pos, before))
    }

    /// Adds `hash` (not in the table) as seen in `generation`; returns its position. The cursor
    /// stays: the next line is most likely the one it expects.
    pub fn insert(&mut self, hash: u64, info: u32, generation: u32) -> usize {
        self.start_order();
        let pos = self.entries.len();
        self.entries.push(Entry { hash, seen: generation, info });
        if let Some(index) = &mut self.index {
            let entries = &self.entries;
            index.insert_unique(hash, pos as u32, |&p| entries[p as usize].hash);
        }
        if let Some(order) = &mut self.order {
            order.push(pos as u32);
        }
        self.lines += 1;
        pos
    }

    /// The position of `hash`, through the index (built on first need).
    pub fn find(&mut self, hash: u64) -> Option<usize> {
        if self.index.is_none() {
            self.build_index();
        }
        let entries = &self.entries;
        let index = self.index.as_ref()?;
        index.find(hash, |&p| entries[p as usize].hash == hash).map(|&p| p as usize)
    }

    fn build_index(&mut self) {
        let entries = &self.entries;
        let mut t = HashTable::with_capacity(entries.len());
        for (p, e) in entries.iter().enumerate() {
            t.insert_unique(e.hash, p as u32, |&q| entries[q as usize].hash);
        }
        self.index = Some(t);
    }

    /// From here on, remember the page order (lines so far were entries `0..lines`).
    fn start_order(&mut self) {
        if self.order.is_none() {
            self.order = Some((0..self.lines).collect());
        }
    }

    pub fn entry_mut(&mut self, pos: usize) -> &mut Entry {
        &mut self.entries[pos]
    }

    /// Ends a scrape: evicts entries unused in this scrape and the one before (the table
    /// follows churn instead of growing), and puts the entries into this scrape's page order
    /// when lines were not where the walk expected them. Returns how many were evicted. In the
    /// steady state (every line where expected, every entry used) this is O(1).
    pub fn end_scrape(&mut self, generation: u32) -> usize {
        let before = self.entries.len();
        let stale = |e: &Entry| generation.wrapping_sub(e.seen) > 1;
        match self.order.take() {
            None if self.lines as usize == before => return 0,
            None => {
                // Lines matched entries `0..lines` in order; the rest were not on this page.
                let lines = self.lines as usize;
                let mut k = lines;
                for i in lines..before {
                    if !stale(&self.entries[i]) {
                        self.entries[k] = self.entries[i];
                        k += 1;
                    }
                }
                self.entries.truncate(k);
            }
            Some(order) => {
                // This scrape's entries in page order (a repeated line once), then the last
                // scrape's leftovers in their old order. A taken entry is stamped as if seen two
                // scrapes ago, so the leftover pass skips it along with the evicted ones.
                let taken = generation.wrapping_sub(2);
                let mut out = Vec::with_capacity(before);
                for &p in &order {
                    let e = &mut self.entries[p as usize];
                    if e.seen == generation {
                        out.push(*e);
                        e.seen = taken;
                    }
                }
                out.extend(self.entries.iter().filter(|e| !stale(e)).copied());
                self.entries = out;
                // Pages that keep reordering keep the index; the rest walk next time.
                self.index = None;
                if self.jumps > 16 && self.jumps > before / 8 {
                    self.build_index();
                }
                self.trim();
                return before - self.entries.len();
            }
        }
        if self.index.is_some() && self.entries.len() < before {
            // Positions moved.
            self.index = None;
        }
        self.trim();
        before - self.entries.len()
    }

    /// Gives back the vector's slack beyond an eighth: the first scrape grew it by doubling, and
    /// an eviction shrinks it. O(1) when there is nothing to give back.
    fn trim(&mut self) {
        let len = self.entries.len();
        if self.entries.capacity() > len + len / 4 + 64 {
            self.entries.shrink_to(len + len / 8);
        }
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        *self = SeriesTable::default();
    }

    /// Every entry, in table order.
    pub fn entries_mut(&mut self) -> &mut [Entry] {
        &mut self.entries
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Heap bytes held (for the heap-per-series figures).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.as_ref().map_or(0, |i| i.capacity() * 5)
    }
}
