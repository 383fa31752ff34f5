//! The session table: a slab of entries, and one open-addressing index that
//! finds an entry by either of its two keys.
//!
//! A FULLNAT session has an inbound key (proto, cip, cport, vip, vport) and
//! an outbound key (proto, rip, rport, lip, lport); both lead to the same
//! entry. The table is generic over the entry `T` and never sees a key: the
//! caller hashes each key, passes the hashes in, and checks the real key in
//! the `eq` closure of [`Table::find`]. The index therefore holds small
//! words, not keys, and the memory per session stays well under the 64 bytes
//! of the entry itself.
//!
//! # The index word
//!
//! ```text
//!  63                                   29   28   27                   0
//! +---------------------------------------+-----+----------------------+
//! |   tag: bits 63..29 of the key's hash  | dir |  entry id + 1        |
//! |   (35 bits)                           |     |  (28 bits)           |
//! +---------------------------------------+-----+----------------------+
//! ```
//!
//! - `dir` is 0 for the inbound key, 1 for the outbound key.
//! - The id field holds `id + 1`, so a live word is never 0 and 0 means an
//!   empty slot. Ids run from 0 to [`MAX_CAPACITY`]` - 1` = 2^28 - 2.
//! - The home slot of a hash is its top `b` bits, for an index of `2^b`
//!   slots (`b` is at most 30, below the tag's 35). The tag is the hash's
//!   top 35 bits, so the home slot of a stored word is the word's own top
//!   `b` bits: deletion recomputes homes from the words alone, and two words
//!   whose homes differ never have equal tags. Hashes must be well mixed in
//!   their top bits (multiplicative hashes put their entropy there).
//!
//! # Probing and deletion
//!
//! Linear probing: a key lives at its home slot or after it, with no empty
//! slot in between, wrapping at the end of the index. [`Table::find`] walks
//! from the home slot to the first empty slot; for each word whose tag and
//! direction match it calls `eq` on the entry, because tags collide (35 bits
//! of hash, of which `35 - b` beyond the home slot: 13 bits at one million
//! sessions). Deletion shifts the rest of the run back (backward-shift
//! deletion): a later word moves into the hole when its home is not
//! cyclically inside the hole..word range, the hole moves to where the word
//! was, and it stops at an empty slot. No tombstones, so lookups never slow
//! down with churn.
//!
//! # Load factor and memory
//!
//! Two index words per entry. The index is the smallest power of two with
//! `2 * capacity <= 0.7 * slots` (and at least 8 slots, one cache line), so
//! at full capacity its load is between 0.35 and 0.7: a successful lookup
//! expects about 1.5–2.2 probes, almost always in the home cache line.
//!
//! Entry ids come from a hierarchical bitmap (one bit per id; above it one
//! bit per 64-bit word saying "that word is full", and so on up to a single
//! word), which finds the lowest free id in one step per level and costs
//! 1/8 byte per entry, where a free list of `u32` would cost 4 bytes. The
//! slab is a `Vec<T>` reserved for the full capacity in the constructor; it
//! grows by `push` within that reservation only, so nothing is allocated
//! after [`Table::with_capacity`].
//!
//! At one million entries the index has 2^22 slots (load 0.48), i.e.
//! 33.55 bytes per entry, and the bitmap 0.13 bytes: 33.7 bytes of index and
//! bookkeeping per entry, 97.7 bytes with a 64-byte entry.
//! [`Table::memory_for`] computes the figure for any capacity.
//!
//! # Panics
//!
//! None, on any input: every slot and entry access goes through `get`, slots
//! are masked, and loops are bounded by the index size.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::fmt;
use core::mem::size_of;

/// Bits of the index word that hold `id + 1`.
const ID_BITS: u32 = 28;
/// Mask of the id field.
const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// The direction bit: set for the outbound key.
const DIR_BIT: u64 = 1 << ID_BITS;
/// Position of the tag's lowest bit.
const TAG_SHIFT: u32 = ID_BITS + 1;
/// Number of tag bits (the top bits of the hash).
const TAG_BITS: u32 = 64 - TAG_SHIFT;
/// Mask of the tag field.
const TAG_MASK: u64 = !0 << TAG_SHIFT;
/// The bits a lookup compares: tag and direction.
const MATCH_MASK: u64 = TAG_MASK | DIR_BIT;
/// An empty index slot.
const EMPTY: u64 = 0;
/// The smallest index: one cache line of words.
const MIN_INDEX_BITS: u32 = 3;
/// The index is sized so that `2 * capacity <= LOAD_NUM / LOAD_DEN * slots`.
const LOAD_NUM: u64 = 7;
/// See [`LOAD_NUM`].
const LOAD_DEN: u64 = 10;

/// The largest capacity: ids are stored as `id + 1` in [`ID_BITS`] bits.
pub(crate) const MAX_CAPACITY: u32 = (1 << ID_BITS) - 1;

/// Why a table could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TableError {
    /// A table must hold at least one entry.
    #[error("a session table needs a capacity of at least one entry")]
    ZeroCapacity,
    /// The capacity exceeds what the index word can address.
    #[error("session table capacity {requested} exceeds the limit of {max} entries")]
    TooLarge {
        /// The capacity asked for.
        requested: u32,
        /// [`MAX_CAPACITY`].
        max: u32,
    },
    /// The allocator refused the table's memory.
    #[error("could not allocate {bytes} bytes for the session table")]
    OutOfMemory {
        /// The table's whole allocation, as [`Table::memory_for`] gives it.
        bytes: u64,
    },
}

/// Which of a session's two keys a hash belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The inbound key: (proto, client ip, client port, vip, vport).
    In,
    /// The outbound key: (proto, rs ip, rs port, local ip, local port).
    Out,
}

impl Dir {
    /// The direction bit of an index word.
    const fn bit(self) -> u64 {
        match self {
            Dir::In => 0,
            Dir::Out => DIR_BIT,
        }
    }
}

/// The sizes a table of a given capacity allocates.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Entries.
    capacity: u32,
    /// log2 of the index's slot count.
    index_bits: u32,
}

impl Plan {
    /// Checks `capacity` and sizes the index for it.
    fn new(capacity: u32) -> Result<Plan, TableError> {
        if capacity == 0 {
            return Err(TableError::ZeroCapacity);
        }
        let too_large = TableError::TooLarge {
            requested: capacity,
            max: MAX_CAPACITY,
        };
        if capacity > MAX_CAPACITY {
            return Err(too_large);
        }
        // Smallest power of two `slots` with 2 * capacity <= 0.7 * slots.
        let keys = u64::from(capacity).saturating_mul(2);
        let need = keys.saturating_mul(LOAD_DEN).div_ceil(LOAD_NUM);
        let index_bits = need
            .checked_next_power_of_two()
            .map_or(64, u64::trailing_zeros)
            .max(MIN_INDEX_BITS);
        // The home slot is read from the tag: it must fit in it.
        if index_bits > TAG_BITS {
            return Err(too_large);
        }
        Ok(Plan {
            capacity,
            index_bits,
        })
    }

    /// Slots in the index.
    fn slots(self) -> u64 {
        1 << self.index_bits
    }

    /// Bitmap words per level, lowest level first; the last level is one
    /// word.
    fn level_words(self) -> impl Iterator<Item = u64> {
        let ids = u64::from(self.capacity);
        core::iter::successors(Some(ids.div_ceil(64)), |&words| {
            (words > 1).then(|| words.div_ceil(64))
        })
    }

    /// The whole allocation of a `Table<T>` of this plan, in bytes.
    fn memory<T>(self) -> u64 {
        let word = size_of::<u64>() as u64;
        let entries = u64::from(self.capacity).saturating_mul(size_of::<T>() as u64);
        let index = self.slots().saturating_mul(word);
        let levels = self.level_words().count() as u64;
        let bitmap = self
            .level_words()
            .fold(0u64, |sum, words| {
                sum.saturating_add(words.saturating_mul(word))
            })
            .saturating_add(levels.saturating_mul(size_of::<Vec<u64>>() as u64));
        (size_of::<Table<T>>() as u64)
            .saturating_add(entries)
            .saturating_add(index)
            .saturating_add(bitmap)
    }
}

/// The set of live ids: a hierarchical bitmap that finds the lowest free id
/// in one step per level.
///
/// `levels[0]` has bit `i` set when id `i` is live; `levels[k]` has bit `i`
/// set when word `i` of `levels[k - 1]` is all ones. The last level is one
/// word. Bits past the end (ids at or above the capacity, words past the end
/// of the level below) are set, so they look occupied and are never chosen.
struct Ids {
    /// The levels, lowest first.
    levels: Vec<Vec<u64>>,
}

impl Ids {
    /// All ids `0..capacity` free.
    fn new(plan: Plan) -> Result<Ids, TryReserveError> {
        let mut levels: Vec<Vec<u64>> = Vec::new();
        levels.try_reserve_exact(plan.level_words().count())?;
        // Bits of the level being built that stand for something below.
        let mut used = u64::from(plan.capacity);
        for words in plan.level_words() {
            let mut level: Vec<u64> = Vec::new();
            let len = usize::try_from(words).unwrap_or(usize::MAX);
            level.try_reserve_exact(len)?;
            let below = levels.last();
            for w in 0..words {
                // Bits of word `w` that stand for real ids or words.
                let real = used.saturating_sub(w.saturating_mul(64)).min(64);
                let mut value = if real >= 64 { 0 } else { !0u64 << real };
                if let Some(below) = below {
                    for bit in 0..real {
                        let child = w.saturating_mul(64).saturating_add(bit);
                        let full = usize::try_from(child)
                            .ok()
                            .and_then(|c| below.get(c))
                            .is_some_and(|&c| c == !0);
                        if full {
                            value |= 1 << bit;
                        }
                    }
                }
                level.push(value);
            }
            used = words;
            levels.push(level);
        }
        Ok(Ids { levels })
    }

    /// Whether `id` is live (or past the capacity: check that first).
    fn contains(&self, id: u32) -> bool {
        let id = id as usize;
        self.levels
            .first()
            .and_then(|level| level.get(id / 64))
            .is_some_and(|word| word & (1 << (id % 64)) != 0)
    }

    /// The lowest free id, or `None` when every id is live.
    fn first_free(&self) -> Option<u32> {
        let mut pos: usize = 0;
        for level in self.levels.iter().rev() {
            let word = *level.get(pos)?;
            let bit = (!word).trailing_zeros();
            if bit >= 64 {
                return None;
            }
            // `pos` is a word of this level (checked by `get`), fewer than
            // 2^22 for a capacity of at most 2^28: `pos * 64 + bit` fits,
            // and the next level's `get` (or the `try_from`) checks it.
            pos = pos << 6 | bit as usize;
        }
        u32::try_from(pos).ok()
    }

    /// Marks `id` live.
    fn insert(&mut self, id: u32) {
        let mut pos = id as usize;
        for level in &mut self.levels {
            let Some(word) = level.get_mut(pos / 64) else {
                return;
            };
            *word |= 1 << (pos % 64);
            if *word != !0 {
                return;
            }
            pos /= 64;
        }
    }

    /// Marks `id` free.
    fn remove(&mut self, id: u32) {
        let mut pos = id as usize;
        for level in &mut self.levels {
            let Some(word) = level.get_mut(pos / 64) else {
                return;
            };
            let was_full = *word == !0;
            *word &= !(1 << (pos % 64));
            if !was_full {
                return;
            }
            pos /= 64;
        }
    }

    /// Bytes allocated.
    fn bytes(&self) -> usize {
        let words: usize = self.levels.iter().map(Vec::capacity).sum();
        words
            .saturating_mul(size_of::<u64>())
            .saturating_add(self.levels.capacity().saturating_mul(size_of::<Vec<u64>>()))
    }
}

/// A bounded table of entries `T`, each found by either of two key hashes.
///
/// See the [module documentation](self) for the index layout. `T` is the
/// engine's 64-byte session; it is `Copy`, so a freed slot simply keeps its
/// stale bytes until reused.
pub(crate) struct Table<T> {
    /// The slab: `entries[id]`; its length is [`Table::id_bound`], its
    /// capacity the table's capacity.
    entries: Vec<T>,
    /// The open-addressing index of both keys (see the module docs).
    index: Vec<u64>,
    /// Which ids are live.
    ids: Ids,
    /// `index.len() - 1`.
    mask: usize,
    /// `64 - log2(index.len())`: `hash >> shift` is the home slot.
    shift: u32,
    /// Live entries.
    len: u32,
    /// Maximum live entries.
    capacity: u32,
}

impl<T> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("id_bound", &self.entries.len())
            .field("index_slots", &self.index.len())
            .finish_non_exhaustive()
    }
}

/// The index word of key `hash`, direction `dir`, entry `id`.
const fn word(hash: u64, dir: Dir, id: u32) -> u64 {
    (hash & TAG_MASK) | dir.bit() | ((id as u64 + 1) & ID_MASK)
}

/// The entry id of a live index word (`u32::MAX`, never a valid id, for an
/// empty one).
const fn word_id(word: u64) -> u32 {
    (word & ID_MASK).wrapping_sub(1) as u32
}

impl<T: Copy> Table<T> {
    /// A table for up to `capacity` entries, with everything it will ever
    /// use allocated now.
    ///
    /// Errors: a capacity of 0 or above [`MAX_CAPACITY`], or the allocator
    /// refusing the memory ([`Table::memory_for`] bytes).
    pub(crate) fn with_capacity(capacity: u32) -> Result<Table<T>, TableError> {
        let plan = Plan::new(capacity)?;
        let oom = TableError::OutOfMemory {
            bytes: plan.memory::<T>(),
        };
        let slots = usize::try_from(plan.slots()).map_err(|_| oom)?;
        let mut index: Vec<u64> = Vec::new();
        index.try_reserve_exact(slots).map_err(|_| oom)?;
        index.resize(slots, EMPTY);
        let mut entries: Vec<T> = Vec::new();
        let cap = usize::try_from(capacity).map_err(|_| oom)?;
        entries.try_reserve_exact(cap).map_err(|_| oom)?;
        let ids = Ids::new(plan).map_err(|_| oom)?;
        Ok(Table {
            entries,
            index,
            ids,
            mask: slots.wrapping_sub(1),
            shift: 64 - plan.index_bits,
            len: 0,
            capacity,
        })
    }

    /// The bytes a `Table<T>` of `capacity` allocates: entries, index,
    /// bitmap and the struct itself. The published memory figure.
    #[cfg(test)]
    pub(crate) fn memory_for(capacity: u32) -> Result<u64, TableError> {
        Plan::new(capacity).map(Plan::memory::<T>)
    }

    /// The maximum number of live entries.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The number of live entries.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Whether there are no live entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether [`Table::insert`] would refuse.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// One past the highest id ever used: an expiry sweep walks
    /// `0..id_bound()` (in slices) calling [`Table::get`]. Freed ids are
    /// reused, lowest first, so this only grows when no freed id is left.
    pub(crate) fn id_bound(&self) -> u32 {
        u32::try_from(self.entries.len()).unwrap_or(u32::MAX)
    }

    /// Bytes allocated for the index.
    pub(crate) fn index_bytes(&self) -> usize {
        self.index.capacity().saturating_mul(size_of::<u64>())
    }

    /// Bytes allocated for the whole table: entries, index, bitmap and the
    /// struct itself. Equal to [`Table::memory_for`] of the capacity.
    pub(crate) fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            .saturating_add(self.entries.capacity().saturating_mul(size_of::<T>()))
            .saturating_add(self.index_bytes())
            .saturating_add(self.ids.bytes())
    }

    /// The home slot of a hash (or of an index word: same top bits): its
    /// top `log2(index.len())` bits, below the index's length without a
    /// mask.
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// The slot after `slot`, wrapping.
    fn next(&self, slot: usize) -> usize {
        slot.wrapping_add(1) & self.mask
    }

    /// Adds `entry`, found by `in_hash` inbound and `out_hash` outbound,
    /// and returns its id (the lowest free one).
    ///
    /// The table does not look for an existing entry with the same key: the
    /// caller has done [`Table::find`] first. When the table is full the
    /// entry comes back as `Err` and nothing changes.
    pub(crate) fn insert(&mut self, entry: T, in_hash: u64, out_hash: u64) -> Result<u32, T> {
        if self.is_full() {
            return Err(entry);
        }
        let Some(id) = self.ids.first_free() else {
            return Err(entry);
        };
        let slot = id as usize;
        // Free ids below `id_bound` come first, so `id <= id_bound`.
        if slot > self.entries.len() || slot >= self.entries.capacity() {
            return Err(entry);
        }
        let in_word = word(in_hash, Dir::In, id);
        let out_word = word(out_hash, Dir::Out, id);
        // The index always has room: it holds at most 2 * capacity words in
        // more than 2 * capacity slots. The checks only keep it panic-free.
        if !self.place(in_word) {
            return Err(entry);
        }
        if !self.place(out_word) {
            self.unplace(in_word);
            return Err(entry);
        }
        if let Some(stale) = self.entries.get_mut(slot) {
            *stale = entry;
        } else {
            // `slot == len < capacity`: no reallocation.
            self.entries.push(entry);
        }
        self.ids.insert(id);
        self.len = self.len.saturating_add(1);
        Ok(id)
    }

    /// The id of the entry whose key hashes to `hash` in direction `dir`
    /// and for which `eq` says the real key matches.
    ///
    /// Walks the probe run from the hash's home slot; `eq` is called only
    /// on entries whose tag and direction match, and must compare the whole
    /// key, since tags collide.
    #[inline(always)]
    pub(crate) fn find(&self, hash: u64, dir: Dir, mut eq: impl FnMut(&T) -> bool) -> Option<u32> {
        let want = (hash & TAG_MASK) | dir.bit();
        let mut slot = self.home(hash);
        for _ in 0..self.index.len() {
            let word = *self.index.get(slot)?;
            if word == EMPTY {
                return None;
            }
            if word & MATCH_MASK == want {
                let id = word_id(word);
                // Index words only name live entries: no bitmap check.
                if self.entries.get(id as usize).is_some_and(&mut eq) {
                    return Some(id);
                }
            }
            slot = self.next(slot);
        }
        None
    }

    /// [`Table::find`] that also lends the entry for changing: one walk
    /// and no second check of the id (index words only name live
    /// entries). The fields its key hashes were computed from must not
    /// change.
    #[inline]
    pub(crate) fn find_mut(
        &mut self,
        hash: u64,
        dir: Dir,
        mut eq: impl FnMut(&T) -> bool,
    ) -> Option<(u32, &mut T)> {
        let id = self.find(hash, dir, &mut eq)?;
        self.entries.get_mut(id as usize).map(|e| (id, e))
    }

    /// The first id in `hash`'s probe run whose tag and direction match,
    /// without checking the key: the entry [`Table::find`] will most likely
    /// return, for the batch path to [`Table::touch_entry`] before it calls
    /// `find`.
    pub(crate) fn candidate(&self, hash: u64, dir: Dir) -> Option<u32> {
        let want = (hash & TAG_MASK) | dir.bit();
        let mut slot = self.home(hash);
        for _ in 0..self.index.len() {
            let word = *self.index.get(slot)?;
            if word == EMPTY {
                return None;
            }
            if word & MATCH_MASK == want {
                return Some(word_id(word));
            }
            slot = self.next(slot);
        }
        None
    }

    /// Reads the index word at `hash`'s home slot and returns it.
    ///
    /// The batch path calls this for every packet before any lookup, so
    /// that the cache misses on the index overlap; returning the word keeps
    /// the load from being optimised away (fold it into a value the caller
    /// passes to `core::hint::black_box`).
    #[must_use]
    pub(crate) fn touch(&self, hash: u64) -> u64 {
        self.index.get(self.home(hash)).copied().unwrap_or(EMPTY)
    }

    /// Reads from the entry slot `id` with `read` and returns the result,
    /// or `R::default()` for an id at or above [`Table::id_bound`].
    ///
    /// The batch path's second stage, after [`Table::candidate`]: it loads
    /// the entry's cache line so that the misses overlap. It does not check
    /// that `id` is live (that would be one more miss); a freed slot holds
    /// its last entry's bytes.
    pub(crate) fn touch_entry<R: Default>(&self, id: u32, read: impl FnOnce(&T) -> R) -> R {
        self.entries.get(id as usize).map(read).unwrap_or_default()
    }

    /// The live entry `id`, or `None` for a free or out-of-range id.
    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        if id >= self.capacity || !self.ids.contains(id) {
            return None;
        }
        self.entries.get(id as usize)
    }

    /// The live entry `id` for changing, or `None` for a free or
    /// out-of-range id. The fields its two key hashes were computed from
    /// must not change (remove and insert again instead).
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        if id >= self.capacity || !self.ids.contains(id) {
            return None;
        }
        self.entries.get_mut(id as usize)
    }

    /// Removes entry `id`, whose keys hash to `in_hash` and `out_hash` (the
    /// hashes given to [`Table::insert`]), and returns it; its id becomes
    /// free for reuse.
    ///
    /// `None`, with nothing changed, when `id` is not live or either hash
    /// does not lead to it.
    pub(crate) fn remove(&mut self, id: u32, in_hash: u64, out_hash: u64) -> Option<T> {
        let entry = *self.get(id)?;
        let in_word = word(in_hash, Dir::In, id);
        let out_word = word(out_hash, Dir::Out, id);
        let in_slot = self.locate(in_word)?;
        self.locate(out_word)?;
        self.erase(in_slot);
        // Erasing may have shifted the outbound word back: find it again.
        self.unplace(out_word);
        self.ids.remove(id);
        self.len = self.len.saturating_sub(1);
        Some(entry)
    }

    /// Writes `word` into the first empty slot of its probe run; `false`
    /// when the index is full (which sizing rules out).
    fn place(&mut self, word: u64) -> bool {
        let mut slot = self.home(word);
        for _ in 0..self.index.len() {
            let Some(cell) = self.index.get_mut(slot) else {
                return false;
            };
            if *cell == EMPTY {
                *cell = word;
                return true;
            }
            slot = self.next(slot);
        }
        false
    }

    /// The slot holding exactly `word`, if any.
    fn locate(&self, word: u64) -> Option<usize> {
        let mut slot = self.home(word);
        for _ in 0..self.index.len() {
            let here = *self.index.get(slot)?;
            if here == word {
                return Some(slot);
            }
            if here == EMPTY {
                return None;
            }
            slot = self.next(slot);
        }
        None
    }

    /// Removes `word` from the index if it is there.
    fn unplace(&mut self, word: u64) {
        if let Some(slot) = self.locate(word) {
            self.erase(slot);
        }
    }

    /// Empties `hole` and shifts the rest of its probe run back so that
    /// every word stays reachable from its home without crossing an empty
    /// slot.
    fn erase(&mut self, mut hole: usize) {
        let mut slot = hole;
        for _ in 0..self.index.len() {
            slot = self.next(slot);
            let Some(&word) = self.index.get(slot) else {
                break;
            };
            if word == EMPTY {
                break;
            }
            // The word may fill the hole unless its home lies cyclically in
            // (hole, slot]: i.e. when it is at least as far from its home
            // as from the hole.
            let from_home = slot.wrapping_sub(self.home(word)) & self.mask;
            let from_hole = slot.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                if let Some(cell) = self.index.get_mut(hole) {
                    *cell = word;
                }
                hole = slot;
            }
        }
        if let Some(cell) = self.index.get_mut(hole) {
            *cell = EMPTY;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::test_rng::Rng;
    use alloc::collections::BTreeMap;
    use alloc::vec;

    /// A 64-byte stand-in for the engine's session.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Entry {
        in_key: u64,
        out_key: u64,
        payload: u64,
        pad: [u64; 5],
    }

    fn entry(in_key: u64, out_key: u64, payload: u64) -> Entry {
        Entry {
            in_key,
            out_key,
            payload,
            pad: [0; 5],
        }
    }

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A well-mixed hash.
    fn h(key: u64) -> u64 {
        mix(key ^ 0x5EED)
    }

    /// A hash with deliberate collisions: one key in eight shares one of
    /// three whole hashes, one in eight has the same tag as every other
    /// such key (only bits below the tag differ), one in eight has its home
    /// in the last slot so that its run wraps around.
    fn nasty(key: u64) -> u64 {
        let r = mix(key ^ 0xC0FFEE);
        match r % 8 {
            0 => [0x1234_5678_9ABC_DEF0, 0xFFFF_FFFF_0000_0000, 7][(r >> 3) as usize % 3],
            1 => (0xDEAD_BEEF_u64 << TAG_SHIFT) | (r >> 40),
            2 => (!0u64 << 40) | (r >> 24),
            _ => r,
        }
    }

    fn find_in(t: &Table<Entry>, hash: u64, key: u64) -> Option<u32> {
        t.find(hash, Dir::In, |e| e.in_key == key)
    }

    fn find_out(t: &Table<Entry>, hash: u64, key: u64) -> Option<u32> {
        t.find(hash, Dir::Out, |e| e.out_key == key)
    }

    /// Every structural invariant of the table.
    fn check_invariants(t: &Table<Entry>) {
        let words: Vec<(usize, u64)> = t
            .index
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, w)| w != EMPTY)
            .collect();
        assert_eq!(words.len(), 2 * t.len as usize, "two index words per entry");
        let mut seen = vec![0u8; t.entries.len()];
        for &(slot, w) in &words {
            // Reachable from its home without crossing an empty slot.
            let mut s = t.home(w);
            while s != slot {
                assert_ne!(t.index[s], EMPTY, "hole between home and word");
                s = t.next(s);
            }
            let id = word_id(w);
            assert!(t.get(id).is_some(), "index word names a free id");
            seen[id as usize] |= if w & DIR_BIT == 0 { 1 } else { 2 };
        }
        let live = (0..t.id_bound()).filter(|&id| t.get(id).is_some()).count();
        assert_eq!(live, t.len as usize);
        for id in 0..t.id_bound() {
            let want = if t.get(id).is_some() { 3 } else { 0 };
            assert_eq!(
                seen[id as usize], want,
                "id {id}: both keys indexed iff live"
            );
        }
        // The bitmap summary levels agree with the level below.
        for k in 1..t.ids.levels.len() {
            let (below, level) = (&t.ids.levels[k - 1], &t.ids.levels[k]);
            for (i, &w) in below.iter().enumerate() {
                assert_eq!(
                    (level[i / 64] >> (i % 64)) & 1 == 1,
                    w == !0,
                    "level {k} bit {i}"
                );
            }
        }
    }

    #[test]
    fn insert_and_find_both_directions() {
        let mut t = Table::<Entry>::with_capacity(100).unwrap();
        assert!(t.is_empty());
        let mut ids = Vec::new();
        for k in 0..100u64 {
            let e = entry(k, 1000 + k, k * 7);
            ids.push(t.insert(e, h(k), h(1000 + k)).unwrap());
        }
        assert_eq!(t.len(), 100);
        assert!(t.is_full());
        for k in 0..100u64 {
            let id = ids[k as usize];
            assert_eq!(find_in(&t, h(k), k), Some(id));
            assert_eq!(find_out(&t, h(1000 + k), 1000 + k), Some(id));
            assert_eq!(t.get(id).unwrap().payload, k * 7);
            // The wrong direction does not find it.
            assert_eq!(t.find(h(k), Dir::Out, |e| e.in_key == k), None);
            assert_eq!(
                t.find(h(1000 + k), Dir::In, |e| e.out_key == 1000 + k),
                None
            );
        }
        assert_eq!(find_in(&t, h(5000), 5000), None);
        check_invariants(&t);
    }

    #[test]
    fn remove_then_find_fails_and_others_stay() {
        let mut t = Table::<Entry>::with_capacity(64).unwrap();
        for k in 0..64u64 {
            t.insert(entry(k, !k, k), nasty(k), nasty(!k)).unwrap();
        }
        for k in (0..64u64).step_by(3) {
            let id = find_in(&t, nasty(k), k).unwrap();
            let e = t.remove(id, nasty(k), nasty(!k)).unwrap();
            assert_eq!(e.in_key, k);
            assert_eq!(find_in(&t, nasty(k), k), None);
            assert_eq!(find_out(&t, nasty(!k), !k), None);
            assert_eq!(t.get(id), None);
            assert_eq!(t.remove(id, nasty(k), nasty(!k)), None, "removed twice");
            check_invariants(&t);
        }
        for k in 0..64u64 {
            let found = find_in(&t, nasty(k), k);
            assert_eq!(found.is_some(), k % 3 != 0, "key {k}");
            assert_eq!(find_out(&t, nasty(!k), !k), found);
        }
    }

    #[test]
    fn remove_with_wrong_hashes_changes_nothing() {
        let mut t = Table::<Entry>::with_capacity(8).unwrap();
        let id = t.insert(entry(1, 2, 3), h(1), h(2)).unwrap();
        assert_eq!(t.remove(id, h(9), h(2)), None);
        assert_eq!(t.remove(id, h(1), h(9)), None);
        assert_eq!(t.remove(id, h(2), h(1)), None, "hashes swapped");
        assert_eq!(t.remove(id + 1, h(1), h(2)), None, "free id");
        assert_eq!(t.remove(u32::MAX, h(1), h(2)), None, "out of range");
        assert_eq!(t.len(), 1);
        assert_eq!(find_in(&t, h(1), 1), Some(id));
        assert_eq!(find_out(&t, h(2), 2), Some(id));
        check_invariants(&t);
        assert_eq!(t.remove(id, h(1), h(2)), Some(entry(1, 2, 3)));
        assert!(t.is_empty());
        check_invariants(&t);
    }

    #[test]
    fn wraparound_runs_survive_deletion() {
        // Every hash homes in the last slot or the first: the run wraps.
        let mut t = Table::<Entry>::with_capacity(3).unwrap();
        assert_eq!(t.index.len(), 16);
        let last = |k: u64| (!0u64 << 60) | k;
        let first = |k: u64| k;
        let hashes = [last(1), last(2), first(3), last(4), first(5), last(6)];
        for k in 0..3u64 {
            let (i, o) = (hashes[2 * k as usize], hashes[2 * k as usize + 1]);
            t.insert(entry(k, 100 + k, 0), i, o).unwrap();
        }
        check_invariants(&t);
        t.remove(0, hashes[0], hashes[1]).unwrap();
        check_invariants(&t);
        for k in 1..3u64 {
            let (i, o) = (hashes[2 * k as usize], hashes[2 * k as usize + 1]);
            assert_eq!(find_in(&t, i, k), Some(k as u32));
            assert_eq!(find_out(&t, o, 100 + k), Some(k as u32));
        }
    }

    #[test]
    fn full_table_refuses_and_keeps_entries() {
        let mut t = Table::<Entry>::with_capacity(8).unwrap();
        for k in 0..8u64 {
            assert_eq!(t.insert(entry(k, k + 50, k), h(k), h(k + 50)), Ok(k as u32));
        }
        assert!(t.is_full());
        let refused = entry(99, 149, 99);
        assert_eq!(t.insert(refused, h(99), h(149)), Err(refused));
        assert_eq!(t.len(), 8);
        assert_eq!(find_in(&t, h(99), 99), None);
        for k in 0..8u64 {
            assert_eq!(find_in(&t, h(k), k), Some(k as u32));
            assert_eq!(find_out(&t, h(k + 50), k + 50), Some(k as u32));
            assert_eq!(t.get(k as u32), Some(&entry(k, k + 50, k)));
        }
        check_invariants(&t);
        // Room again after a removal.
        t.remove(5, h(5), h(55)).unwrap();
        assert_eq!(t.insert(refused, h(99), h(149)), Ok(5));
        assert_eq!(find_in(&t, h(99), 99), Some(5));
        check_invariants(&t);
    }

    #[test]
    fn ids_are_reused_lowest_first() {
        let mut t = Table::<Entry>::with_capacity(200).unwrap();
        for k in 0..150u64 {
            assert_eq!(t.insert(entry(k, !k, 0), h(k), h(!k)), Ok(k as u32));
        }
        assert_eq!(t.id_bound(), 150);
        for k in [70u64, 3, 129, 64] {
            t.remove(k as u32, h(k), h(!k)).unwrap();
        }
        assert_eq!(t.id_bound(), 150, "removal does not lower the bound");
        for want in [3u32, 64, 70, 129, 150] {
            let k = 1000 + u64::from(want);
            assert_eq!(t.insert(entry(k, !k, 1), h(k), h(!k)), Ok(want));
        }
        assert_eq!(t.id_bound(), 151);
        assert_eq!(
            t.get(70).unwrap().in_key,
            1070,
            "the reused slot holds the new entry"
        );
        check_invariants(&t);
    }

    #[test]
    fn get_and_get_mut_reject_free_and_out_of_range_ids() {
        let mut t = Table::<Entry>::with_capacity(10).unwrap();
        assert_eq!(t.get(0), None);
        let id = t.insert(entry(1, 2, 3), h(1), h(2)).unwrap();
        t.get_mut(id).unwrap().payload = 42;
        assert_eq!(t.get(id).unwrap().payload, 42);
        for bad in [1, 9, 10, 11, MAX_CAPACITY, u32::MAX] {
            assert_eq!(t.get(bad), None);
            assert_eq!(t.get_mut(bad), None);
        }
        t.remove(id, h(1), h(2)).unwrap();
        assert_eq!(t.get(id), None);
        assert_eq!(t.get_mut(id), None);
    }

    #[test]
    fn find_verifies_the_key_on_tag_matches() {
        let mut t = Table::<Entry>::with_capacity(16).unwrap();
        // Three keys with one and the same hash, in both directions.
        let hash = 0xABCD_EF01_2345_6789;
        for k in 1..=3u64 {
            assert_eq!(t.insert(entry(k, k + 10, 0), hash, hash), Ok(k as u32 - 1));
        }
        // Equal tag, different bits below the tag.
        let same_tag = hash ^ 0x1234;
        assert_eq!(same_tag & TAG_MASK, hash & TAG_MASK);
        let mut calls = 0;
        let found = t.find(same_tag, Dir::In, |e| {
            calls += 1;
            e.in_key == 3
        });
        assert_eq!(found, Some(2));
        assert_eq!(
            calls, 3,
            "eq is called on each tag match until the key matches"
        );
        let mut calls = 0;
        let found = t.find(hash, Dir::In, |e| {
            calls += 1;
            e.in_key == 4
        });
        assert_eq!(found, None, "tag matches whose key differs are rejected");
        assert_eq!(calls, 3);
        let mut calls = 0;
        assert_eq!(
            t.find(hash, Dir::Out, |e| {
                calls += 1;
                e.out_key == 12
            }),
            Some(1)
        );
        assert_eq!(calls, 2, "inbound words are skipped on an outbound lookup");
        // A different tag never reaches `eq`.
        let mut calls = 0;
        assert_eq!(
            t.find(hash ^ (1 << 40), Dir::In, |_| {
                calls += 1;
                true
            }),
            None
        );
        assert_eq!(calls, 0);
    }

    #[test]
    fn touch_candidate_and_touch_entry() {
        let mut t = Table::<Entry>::with_capacity(16).unwrap();
        assert_eq!(t.touch(h(1)), EMPTY);
        assert_eq!(t.candidate(h(1), Dir::In), None);
        let id = t.insert(entry(1, 2, 77), h(1), h(2)).unwrap();
        assert_eq!(t.touch(h(1)), word(h(1), Dir::In, id));
        assert_eq!(t.candidate(h(1), Dir::In), Some(id));
        assert_eq!(t.candidate(h(2), Dir::Out), Some(id));
        assert_eq!(t.candidate(h(1), Dir::Out), None);
        assert_eq!(t.touch_entry(id, |e| e.payload), 77);
        assert_eq!(t.touch_entry(id + 1, |e| e.payload), 0);
        assert_eq!(t.touch_entry(u32::MAX, |e| e.payload), 0);
    }

    #[test]
    fn constructor_rejects_bad_capacities() {
        assert_eq!(
            Table::<Entry>::with_capacity(0).unwrap_err(),
            TableError::ZeroCapacity
        );
        for bad in [MAX_CAPACITY + 1, u32::MAX] {
            assert_eq!(
                Table::<Entry>::with_capacity(bad).unwrap_err(),
                TableError::TooLarge {
                    requested: bad,
                    max: MAX_CAPACITY
                }
            );
            assert!(Table::<Entry>::memory_for(bad).is_err());
        }
        // The largest capacity's index still fits in the tag.
        let plan = Plan::new(MAX_CAPACITY).unwrap();
        assert_eq!(plan.index_bits, 30);
        let t = Table::<Entry>::with_capacity(1).unwrap();
        assert_eq!(t.capacity(), 1);
        assert_eq!(t.index.len(), 8);
    }

    #[test]
    fn load_factor_stays_within_bounds() {
        for cap in [1u32, 2, 3, 63, 64, 65, 1000, 4096, 1_000_000, MAX_CAPACITY] {
            let plan = Plan::new(cap).unwrap();
            let load = 2.0 * f64::from(cap) / plan.slots() as f64;
            assert!(load <= 0.7, "capacity {cap}: load {load}");
            if plan.index_bits > MIN_INDEX_BITS {
                assert!(load > 0.35, "capacity {cap}: load {load}");
            }
        }
    }

    #[test]
    fn memory_per_entry_at_one_million() {
        assert_eq!(size_of::<Entry>(), 64);
        // The formula matches the real allocation.
        for cap in [1u32, 64, 65, 4097, 100_000] {
            let t = Table::<Entry>::with_capacity(cap).unwrap();
            assert_eq!(
                t.memory_bytes() as u64,
                Table::<Entry>::memory_for(cap).unwrap()
            );
        }
        let cap = 1_000_000u64;
        let total = Table::<Entry>::memory_for(1_000_000).unwrap();
        let overhead = total - 64 * cap;
        // 2^22 index slots of 8 bytes, the bitmap, the struct.
        assert!(
            overhead <= 34 * cap,
            "{overhead} bytes of index and bookkeeping"
        );
        assert!(total <= 100 * cap, "{total} bytes in all");
        let plan = Plan::new(1_000_000).unwrap();
        assert_eq!(plan.slots(), 1 << 22);
    }

    #[test]
    fn bitmap_hands_out_the_lowest_free_id_across_levels() {
        use alloc::collections::BTreeSet;
        // 129 words, then 3, then 1: three levels, partial words in each.
        let capacity = 64 * 64 * 2 + 5;
        let mut ids = Ids::new(Plan::new(capacity).unwrap()).unwrap();
        assert_eq!(ids.levels.len(), 3);
        let mut free: BTreeSet<u32> = (0..capacity).collect();
        let mut rng = Rng(5);
        for _ in 0..30_000 {
            // Mostly fill, sometimes drain, so that it runs full and back.
            if rng.below(16) < 9 {
                let got = ids.first_free();
                assert_eq!(got, free.first().copied());
                if let Some(id) = got {
                    assert!(!ids.contains(id));
                    ids.insert(id);
                    free.remove(&id);
                }
            } else {
                let id = rng.below(capacity as usize) as u32;
                assert_eq!(ids.contains(id), !free.contains(&id));
                ids.remove(id);
                free.insert(id);
            }
        }
        for k in 1..ids.levels.len() {
            let (below, level) = (&ids.levels[k - 1], &ids.levels[k]);
            for (i, &w) in below.iter().enumerate() {
                assert_eq!((level[i / 64] >> (i % 64)) & 1 == 1, w == !0);
            }
        }
        assert!((0..capacity).all(|id| ids.contains(id) != free.contains(&id)));
    }

    #[test]
    fn a_million_entry_table_allocates_what_the_formula_says() {
        let t = Table::<Entry>::with_capacity(1_000_000).unwrap();
        assert_eq!(t.index_bytes(), 8 << 22);
        assert_eq!(
            t.memory_bytes() as u64,
            Table::<Entry>::memory_for(1_000_000).unwrap()
        );
    }

    /// Thousands of random inserts, removals and lookups, checked against a
    /// `BTreeMap`, with colliding hashes, equal tags and wrapping runs.
    fn randomized(capacity: u32, ops: u32, seed: u64) {
        #[derive(Clone, Copy)]
        struct Rec {
            id: u32,
            out_key: u64,
            payload: u64,
        }
        let mut rng = Rng(seed);
        let mut t = Table::<Entry>::with_capacity(capacity).unwrap();
        let mut by_in: BTreeMap<u64, Rec> = BTreeMap::new();
        let mut by_out: BTreeMap<u64, u64> = BTreeMap::new();
        for op in 0..ops {
            match rng.below(10) {
                0..5 => {
                    // Inbound keys have the top bit clear, outbound set.
                    let in_key = rng.next() >> 1;
                    let out_key = rng.next() | 1 << 63;
                    if by_in.contains_key(&in_key) || by_out.contains_key(&out_key) {
                        continue;
                    }
                    let payload = rng.next();
                    let e = entry(in_key, out_key, payload);
                    let was_full = t.is_full();
                    match t.insert(e, nasty(in_key), nasty(out_key)) {
                        Ok(id) => {
                            assert!(!was_full);
                            assert!(
                                by_in.values().all(|r| r.id != id),
                                "id {id} handed out twice"
                            );
                            by_in.insert(
                                in_key,
                                Rec {
                                    id,
                                    out_key,
                                    payload,
                                },
                            );
                            by_out.insert(out_key, in_key);
                        }
                        Err(back) => {
                            assert!(was_full);
                            assert_eq!(back, e);
                            assert_eq!(by_in.len(), capacity as usize);
                        }
                    }
                }
                5..8 => {
                    let start = rng.next() >> 1;
                    let Some((&in_key, &rec)) =
                        by_in.range(start..).next().or_else(|| by_in.iter().next())
                    else {
                        continue;
                    };
                    let got = t.remove(rec.id, nasty(in_key), nasty(rec.out_key)).unwrap();
                    assert_eq!(got, entry(in_key, rec.out_key, rec.payload));
                    by_in.remove(&in_key);
                    by_out.remove(&rec.out_key);
                    assert_eq!(find_in(&t, nasty(in_key), in_key), None);
                    assert_eq!(find_out(&t, nasty(rec.out_key), rec.out_key), None);
                }
                _ => {
                    let start = rng.next() >> 1;
                    if let Some((&in_key, rec)) = by_in.range(start..).next() {
                        assert_eq!(find_in(&t, nasty(in_key), in_key), Some(rec.id));
                        assert_eq!(find_out(&t, nasty(rec.out_key), rec.out_key), Some(rec.id));
                    }
                    let missing = rng.next() >> 1;
                    if !by_in.contains_key(&missing) {
                        assert_eq!(find_in(&t, nasty(missing), missing), None);
                    }
                }
            }
            assert_eq!(t.len() as usize, by_in.len());
            if op % 256 == 0 {
                check_invariants(&t);
            }
        }
        check_invariants(&t);
        for (&in_key, rec) in &by_in {
            assert_eq!(find_in(&t, nasty(in_key), in_key), Some(rec.id));
            assert_eq!(find_out(&t, nasty(rec.out_key), rec.out_key), Some(rec.id));
            assert_eq!(t.get(rec.id).unwrap().payload, rec.payload);
            assert_eq!(by_out[&rec.out_key], in_key);
        }
    }

    #[test]
    fn randomized_against_btreemap() {
        randomized(300, 8000, 1);
        randomized(70, 4000, 2);
    }

    #[test]
    fn randomized_tiny_tables() {
        // One entry in 8 slots, and a few: every run wraps and collides.
        randomized(1, 500, 3);
        randomized(5, 2000, 4);
    }
}
