//! The VM slots: at most [`MAX_VMS`] VMs run at once, since TCG is slow and
//! the machine small. A test takes its slots before it boots and gives them
//! back when its consoles are dropped.

use std::sync::{Condvar, Mutex, OnceLock};

/// How many VMs may run at once.
pub const MAX_VMS: usize = 2;

/// The global VM slots.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        used: Mutex::new(0),
        freed: Condvar::new(),
    })
}

/// `n` of the [`MAX_VMS`] slots, given back on drop.
pub struct Permit(usize);

impl Permit {
    /// Waits until `n` slots are free at once and takes them.
    pub fn acquire(n: usize) -> Permit {
        assert!(n <= MAX_VMS, "a test may hold at most {MAX_VMS} VM slots");
        let slots = slots();
        let mut used = slots.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used + n > MAX_VMS {
            used = slots.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += n;
        Permit(n)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let slots = slots();
        let mut used = slots.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= self.0;
        slots.freed.notify_all();
    }
}
