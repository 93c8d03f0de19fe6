//! How many websockets may be open: per account and in all (`[http]
//! max_websockets_per_account`, `max_websockets`). Every open socket holds buffers and a
//! task; before these caps, one district token opened 2,000 in 5 s (+270 MB of RSS).
//!
//! A socket past a cap is still upgraded, then closed at once with
//! [`CLOSE_ACCOUNT_LIMIT`] or [`CLOSE_HUB_LIMIT`] and a reason: a browser's `WebSocket`
//! reports the close code and reason of an upgraded socket, but only a bare failure for
//! a refused handshake, so this is the answer a board can show.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::edge::LogGate;

/// Close code: the account has [`WsSlots`]' per-account number of websockets open.
pub const CLOSE_ACCOUNT_LIMIT: u16 = 4429;
/// Close code: the hub has its total number of websockets open.
pub const CLOSE_HUB_LIMIT: u16 = 4503;

/// Open websockets, counted per account and in all.
#[derive(Debug)]
pub struct WsSlots {
    per_account: usize,
    total: usize,
    open: Mutex<Open>,
    /// Refusals are logged at most every 10 s (one token can ask thousands of times a
    /// second); every one is counted.
    pub(super) log: LogGate,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Accounts with at least one socket open (entries at zero are removed).
    by_account: HashMap<String, usize>,
}

/// Why a socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Account,
    Hub,
}

impl Refusal {
    pub fn close_code(self) -> u16 {
        match self {
            Refusal::Account => CLOSE_ACCOUNT_LIMIT,
            Refusal::Hub => CLOSE_HUB_LIMIT,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Account => "too many open websockets for this account; close another board",
            Refusal::Hub => "the hub has too many open websockets; try again later",
        }
    }

    /// The `reason` label of `anxin_http_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Account => "websockets_per_account",
            Refusal::Hub => "websockets_total",
        }
    }
}

/// One open socket's place; given back when dropped (the socket's task ended, or the
/// upgrade never happened).
#[derive(Debug)]
pub struct WsSlot {
    slots: Arc<WsSlots>,
    account: String,
}

impl WsSlots {
    pub fn new(per_account: usize, total: usize) -> Self {
        WsSlots {
            per_account,
            total,
            open: Mutex::new(Open::default()),
            log: LogGate::default(),
        }
    }

    /// Take a place for a socket of `account`, if both caps allow it.
    pub fn acquire(self: &Arc<Self>, account: &str) -> Result<WsSlot, Refusal> {
        // A poisoned lock (a panic while counting) must not close the boards: let it in.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.total {
            return Err(Refusal::Hub);
        }
        let n = open.by_account.get(account).copied().unwrap_or(0);
        if n >= self.per_account {
            return Err(Refusal::Account);
        }
        open.total += 1;
        open.by_account.insert(account.to_owned(), n + 1);
        Ok(WsSlot {
            slots: self.clone(),
            account: account.to_owned(),
        })
    }

    /// Sockets open now, in all and for `account`.
    pub fn open(&self, account: &str) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        (
            open.total,
            open.by_account.get(account).copied().unwrap_or(0),
        )
    }
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_account.get_mut(&self.account) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_account.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_capped_per_account_and_in_all_and_given_back() {
        let slots = Arc::new(WsSlots::new(2, 3));
        let a1 = slots.acquire("a").expect("first");
        let a2 = slots.acquire("a").expect("second");
        assert_eq!(slots.acquire("a").err(), Some(Refusal::Account));
        let b1 = slots.acquire("b").expect("another account");
        assert_eq!(slots.acquire("c").err(), Some(Refusal::Hub));
        assert_eq!(slots.open("a"), (3, 2));
        drop(a1);
        assert_eq!(slots.open("a"), (2, 1));
        let a3 = slots.acquire("a").expect("a place was given back");
        drop((a2, a3, b1));
        assert_eq!(slots.open("a"), (0, 0));
        assert!(slots.open.lock().expect("lock").by_account.is_empty());
    }
}
