//! Handle tables: a handle is `kind << 56 | generation << 32 | (index + 1)`, so 0 is never a
//! handle, a handle whose slot was freed (and perhaps reused) is refused, and so is a handle of
//! another table (review: a queue handle closed the receiver with the same number).

use std::sync::{Arc, Mutex};

/// A table of `T`s shared by handle.
pub(crate) struct Table<T> {
    /// The table's tag in its handles' top byte: each table has its own.
    kind: u8,
    slots: Mutex<Vec<Slot<T>>>,
}

/// A slot's generation: 24 bits, never 0.
const GENERATIONS: u32 = 0xff_ffff;

struct Slot<T> {
    generation: u32,
    item: Option<Arc<T>>,
}

impl<T> Table<T> {
    /// A table whose handles carry `kind` (each table its own, not 0 and not 0xff).
    pub(crate) const fn new(kind: u8) -> Self {
        Table {
            kind,
            slots: Mutex::new(Vec::new()),
        }
    }

    fn handle(&self, index: usize, generation: u32) -> u64 {
        u64::from(self.kind) << 56 | u64::from(generation) << 32 | (index as u64 + 1)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot<T>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `item` in a free slot; its handle.
    pub(crate) fn insert(&self, item: T) -> u64 {
        let mut slots = self.slots();
        let index = match slots.iter().position(|s| s.item.is_none()) {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    generation: 0,
                    item: None,
                });
                slots.len() - 1
            }
        };
        let s = &mut slots[index];
        s.generation = (s.generation % GENERATIONS) + 1;
        s.item = Some(Arc::new(item));
        let generation = s.generation;
        self.handle(index, generation)
    }

    fn index(&self, handle: u64) -> Option<(usize, u32)> {
        let index = (handle & 0xffff_ffff) as usize;
        let generation = (handle >> 32) as u32 & GENERATIONS;
        (index > 0 && (handle >> 56) as u8 == self.kind).then_some((index - 1, generation))
    }

    /// The item of `handle`, if the handle is live.
    pub(crate) fn get(&self, handle: u64) -> Option<Arc<T>> {
        let (i, g) = self.index(handle)?;
        let slots = self.slots();
        let s = slots.get(i)?;
        if s.generation != g {
            return None;
        }
        s.item.clone()
    }

    /// Takes `handle`'s item out: the handle is dead from now on.
    pub(crate) fn remove(&self, handle: u64) -> Option<Arc<T>> {
        let (i, g) = self.index(handle)?;
        let mut slots = self.slots();
        let s = slots.get_mut(i)?;
        if s.generation != g {
            return None;
        }
        s.item.take()
    }

    /// The live handles whose item `keep` says yes to.
    pub(crate) fn handles_where(&self, mut keep: impl FnMut(&T) -> bool) -> Vec<u64> {
        self.slots()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let item = s.item.as_ref()?;
                keep(item).then(|| self.handle(i, s.generation))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_handle_is_refused_even_after_its_slot_is_reused() {
        let t = Table::new(1);
        let a = t.insert(1);
        assert_eq!(t.get(a).as_deref(), Some(&1));
        assert!(t.remove(a).is_some());
        let b = t.insert(2);
        assert_ne!(a, b);
        assert!(t.get(a).is_none());
        assert_eq!(t.get(b).as_deref(), Some(&2));
        assert!(t.get(0).is_none());
        assert!(t.get(u64::MAX).is_none());
        assert!(t.remove(a).is_none());
    }

    #[test]
    fn a_handle_of_another_table_is_refused_though_its_slot_and_generation_match() {
        let (queues, receivers) = (Table::new(1), Table::new(2));
        let q = queues.insert("queue");
        let r = receivers.insert("receiver");
        assert_eq!(q & 0xff_ffff_ffff_ffff, r & 0xff_ffff_ffff_ffff);
        assert!(receivers.get(q).is_none() && receivers.remove(q).is_none());
        assert!(queues.get(r).is_none());
        assert_eq!(receivers.get(r).as_deref(), Some(&"receiver"));
    }

    #[test]
    fn generations_wrap_in_24_bits_and_are_never_0() {
        let t = Table::new(3);
        let mut last = 0;
        for _ in 0..3 {
            let h = t.insert(());
            last = h;
            t.remove(h);
        }
        t.slots()[0].generation = GENERATIONS;
        let h = t.insert(());
        assert_eq!((h >> 32) as u32 & GENERATIONS, 1, "wrapped past 0");
        assert_ne!(h, last);
        assert_eq!(h >> 56, 3);
        assert!(t.get(h).is_some());
    }
}
