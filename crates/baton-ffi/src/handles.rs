//! Handle tables: a handle is `generation << 32 | (index + 1)`, so 0 is never a handle, and a
//! handle whose slot was freed (and perhaps reused) is refused.

use std::sync::{Arc, Mutex};

/// A table of `T`s shared by handle.
pub(crate) struct Table<T> {
    slots: Mutex<Vec<Slot<T>>>,
}

struct Slot<T> {
    generation: u32,
    item: Option<Arc<T>>,
}

impl<T> Table<T> {
    pub(crate) const fn new() -> Self {
        Table {
            slots: Mutex::new(Vec::new()),
        }
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
        s.generation = s.generation.wrapping_add(1).max(1);
        s.item = Some(Arc::new(item));
        u64::from(s.generation) << 32 | (index as u64 + 1)
    }

    fn index(handle: u64) -> Option<(usize, u32)> {
        let index = (handle & 0xffff_ffff) as usize;
        let generation = (handle >> 32) as u32;
        (index > 0).then_some((index - 1, generation))
    }

    /// The item of `handle`, if the handle is live.
    pub(crate) fn get(&self, handle: u64) -> Option<Arc<T>> {
        let (i, g) = Self::index(handle)?;
        let slots = self.slots();
        let s = slots.get(i)?;
        if s.generation != g {
            return None;
        }
        s.item.clone()
    }

    /// Takes `handle`'s item out: the handle is dead from now on.
    pub(crate) fn remove(&self, handle: u64) -> Option<Arc<T>> {
        let (i, g) = Self::index(handle)?;
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
                keep(item).then(|| u64::from(s.generation) << 32 | (i as u64 + 1))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_handle_is_refused_even_after_its_slot_is_reused() {
        let t = Table::new();
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
}
