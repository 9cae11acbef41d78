//! The relay (`federation-spec.md` section 13): the slots that listeners behind NAT hold on
//! this node, the conversations waiting for a listener, the spliced conversations, and
//! their limits. The HTTP side is in `http`, the byte copying in `splice`, the slot's
//! control connection in `slot`.
//!
//! The relay never sees the content of a conversation: the two peers run the TLS channel
//! of section 12 end to end over the spliced streams, and the relay copies ciphertext.
//! What it knows: the listener's address (it is its user), the connecting peer's IP
//! address, when and how many bytes. Not who connects (the peer's certificate travels
//! inside TLS 1.3, encrypted), nor what is said.
//!
//! Invariants: every task (slot, conversation) lives in the relay's [`JoinSet`] and ends
//! with [`Relay::shutdown`]; every count (slots, conversations, per user and in total) is
//! held by a guard that gives it back when dropped, so no path leaks a slot or a
//! conversation.

pub(crate) mod http;
mod slot;
mod splice;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use hyper::upgrade::OnUpgrade;
use pd_proto::Address;
use pd_proto::relay::ControlFrame;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::RelayConfig;
use crate::listener::IdleSwitch;
use crate::metrics::Metrics;

/// Control frames queued for one slot, at most.
const SLOT_QUEUE: usize = 32;

/// The length of the window of the per-user byte budget.
const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// Why the relay refused a request (before the upgrade).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The operator turned the relay off.
    #[error("this node does not offer a relay")]
    Disabled,
    /// The user holds as many slots as allowed.
    #[error("{0} already holds {1} relay slot(s), the most allowed")]
    UserSlots(Address, usize),
    /// The node holds as many slots as allowed.
    #[error("the relay holds as many slots as it can; retry later")]
    Slots,
    /// The user has as many relayed conversations as allowed.
    #[error("{0} already has {1} relayed conversation(s) open, the most allowed")]
    UserConversations(Address, usize),
    /// The node relays as many conversations as allowed.
    #[error("the relay carries as many conversations as it can; retry later")]
    Conversations,
    /// The user's relayed conversations used up the hourly budget.
    #[error("the relayed conversations of {0} used up their hourly byte budget; retry later")]
    Budget(Address),
    /// The user holds no slot.
    #[error("{0} is not listening through this relay")]
    NoSlot(Address),
    /// No conversation waits with this id for this user.
    #[error("no conversation is waiting for {0} with this id")]
    NoConversation(Address),
    /// The listener did not take the conversation in time.
    #[error("{0} did not take the conversation through its relay slot in time")]
    NotTaken(Address),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl Refusal {
    /// The label of the refusal counter.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::UserSlots(..) => "user_slots",
            Self::Slots => "slots",
            Self::UserConversations(..) => "user_conversations",
            Self::Conversations => "conversations",
            Self::Budget(_) => "budget",
            Self::NoSlot(_) => "no_slot",
            Self::NoConversation(_) => "no_conversation",
            Self::NotTaken(_) => "not_taken",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

/// One slot as the admin pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotView {
    /// Whose.
    pub address: String,
    /// Where the listener connects from.
    pub from: String,
    /// Unix seconds when the slot was taken.
    pub since: u64,
    /// Conversations offered through it.
    pub offered: u64,
}

/// One relayed conversation as the admin pages show it (never its content).
#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    /// The listener's address.
    pub address: String,
    /// The connecting peer's IP address.
    pub from: String,
    /// Unix seconds when it was opened.
    pub since: u64,
    /// Bytes carried, both directions.
    pub bytes: u64,
}

/// The relay of this node.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    metrics: Arc<Metrics>,
    idle: IdleSwitch,
    inner: Mutex<Inner>,
    tasks: Mutex<Tasks>,
    stop: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Tasks {
    set: JoinSet<()>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    slots: HashMap<Address, Vec<SlotEntry>>,
    slot_count: usize,
    pending: HashMap<String, Pending>,
    conversations: HashMap<u64, ConversationEntry>,
    per_user: HashMap<Address, usize>,
    budgets: HashMap<Address, Arc<Budget>>,
}

#[derive(Debug)]
struct SlotEntry {
    id: u64,
    from: SocketAddr,
    since: SystemTime,
    offered: u64,
    control: mpsc::Sender<ControlFrame>,
}

#[derive(Debug)]
struct Pending {
    address: Address,
    taken: oneshot::Sender<OnUpgrade>,
}

#[derive(Debug)]
struct ConversationEntry {
    address: Address,
    from: IpAddr,
    since: SystemTime,
    bytes: Arc<AtomicU64>,
}

/// A user's byte budget: the bytes relayed in the current window.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    window: Mutex<(Instant, u64)>,
}

impl Budget {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Counts `n` bytes; false once the window's budget is exceeded.
    pub(crate) fn charge(&self, n: u64) -> bool {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.0.elapsed() >= BUDGET_WINDOW {
            *window = (Instant::now(), 0);
        }
        window.1 = window.1.saturating_add(n);
        window.1 <= self.limit
    }

    fn exhausted(&self) -> bool {
        let window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.0.elapsed() < BUDGET_WINDOW && window.1 >= self.limit
    }
}

/// A slot taken by a user: given back (and its control channel dropped) when dropped.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    relay: Arc<Relay>,
    address: Address,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut inner = self.relay.lock();
        if let Some(slots) = inner.slots.get_mut(&self.address) {
            let before = slots.len();
            slots.retain(|s| s.id != self.id);
            let removed = before - slots.len();
            if slots.is_empty() {
                inner.slots.remove(&self.address);
            }
            inner.slot_count -= removed;
        }
        self.relay
            .metrics
            .relay_slots
            .set(i64::try_from(inner.slot_count).unwrap_or(i64::MAX));
    }
}

/// A conversation counted against its user and the node: given back when dropped, with
/// its waiting entry if it never started.
#[derive(Debug)]
pub(crate) struct ConversationGuard {
    relay: Arc<Relay>,
    address: Address,
    id: u64,
    waiting: Option<String>,
}

impl ConversationGuard {
    /// The counter of this conversation's bytes.
    fn bytes(&self) -> Option<Arc<AtomicU64>> {
        self.relay
            .lock()
            .conversations
            .get(&self.id)
            .map(|c| Arc::clone(&c.bytes))
    }
}

impl Drop for ConversationGuard {
    fn drop(&mut self) {
        let mut inner = self.relay.lock();
        if let Some(waiting) = &self.waiting {
            inner.pending.remove(waiting);
        }
        inner.conversations.remove(&self.id);
        if let Some(n) = inner.per_user.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                inner.per_user.remove(&self.address);
            }
        }
        self.relay
            .metrics
            .relay_conversations
            .set(i64::try_from(inner.conversations.len()).unwrap_or(i64::MAX));
    }
}

impl Relay {
    /// The relay with `config`, counting in `metrics`; `idle` takes upgraded connections
    /// out of the HTTP idle timeout.
    pub(crate) fn new(config: RelayConfig, metrics: Arc<Metrics>, idle: IdleSwitch) -> Self {
        Self {
            config,
            metrics,
            idle,
            inner: Mutex::new(Inner::default()),
            tasks: Mutex::new(Tasks::default()),
            stop: watch::channel(false).0,
        }
    }

    /// Whether the relay is offered.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refused(&self, refusal: Refusal) -> Refusal {
        self.metrics
            .relay_refusals
            .get_or_create(&crate::metrics::RefusalLabels {
                reason: refusal.label().to_owned(),
            })
            .inc();
        refusal
    }

    /// Runs `task` as one of the relay's own tasks (refused once shutting down).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<(), Refusal> {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if tasks.closed {
            return Err(Refusal::ShuttingDown);
        }
        while tasks.set.try_join_next().is_some() {}
        tasks.set.spawn(task);
        Ok(())
    }

    /// Takes a slot for `address` (a user of this node, already authenticated) connecting
    /// from `from`: the guard, and the receiver of its control frames.
    fn take_slot(
        self: &Arc<Self>,
        address: &Address,
        from: SocketAddr,
    ) -> Result<(SlotGuard, mpsc::Receiver<ControlFrame>), Refusal> {
        if !self.config.enabled {
            return Err(self.refused(Refusal::Disabled));
        }
        let mut inner = self.lock();
        let held = inner.slots.get(address).map_or(0, Vec::len);
        if held >= self.config.max_slots_per_user {
            drop(inner);
            return Err(self.refused(Refusal::UserSlots(address.clone(), held)));
        }
        if inner.slot_count >= self.config.max_slots {
            drop(inner);
            return Err(self.refused(Refusal::Slots));
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let (control, rx) = mpsc::channel(SLOT_QUEUE);
        inner
            .slots
            .entry(address.clone())
            .or_default()
            .push(SlotEntry {
                id,
                from,
                since: SystemTime::now(),
                offered: 0,
                control,
            });
        inner.slot_count += 1;
        self.metrics
            .relay_slots
            .set(i64::try_from(inner.slot_count).unwrap_or(i64::MAX));
        Ok((
            SlotGuard {
                relay: Arc::clone(self),
                address: address.clone(),
                id,
            },
            rx,
        ))
    }

    /// Offers a conversation to one of `address`'s slots: counts it, queues `incoming` on
    /// the slot that was offered the fewest, and returns the guard and the receiver of the
    /// listener's upgrade.
    fn offer(
        self: &Arc<Self>,
        address: &Address,
        from: IpAddr,
    ) -> Result<(ConversationGuard, oneshot::Receiver<OnUpgrade>), Refusal> {
        if !self.config.enabled {
            return Err(self.refused(Refusal::Disabled));
        }
        let mut inner = self.lock();
        let refusal = if !inner.slots.contains_key(address) {
            Some(Refusal::NoSlot(address.clone()))
        } else if inner.per_user.get(address).copied().unwrap_or(0)
            >= self.config.max_conversations_per_user
        {
            Some(Refusal::UserConversations(
                address.clone(),
                self.config.max_conversations_per_user,
            ))
        } else if inner.conversations.len() >= self.config.max_conversations {
            Some(Refusal::Conversations)
        } else if inner
            .budgets
            .get(address)
            .is_some_and(|budget| budget.exhausted())
        {
            Some(Refusal::Budget(address.clone()))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(inner);
            return Err(self.refused(refusal));
        }
        let id = pd_proto::relay::new_conversation_id();
        let frame = ControlFrame::Incoming { id: id.clone() };
        let Some(slots) = inner.slots.get_mut(address) else {
            drop(inner);
            return Err(self.refused(Refusal::NoSlot(address.clone())));
        };
        slots.sort_by_key(|s| s.offered);
        let Some(slot) = slots
            .iter_mut()
            .find(|s| s.control.try_send(frame.clone()).is_ok())
        else {
            drop(inner);
            return Err(self.refused(Refusal::NotTaken(address.clone())));
        };
        slot.offered += 1;
        inner.next_id += 1;
        let serial = inner.next_id;
        let (taken, upgrade) = oneshot::channel();
        inner.pending.insert(
            id.clone(),
            Pending {
                address: address.clone(),
                taken,
            },
        );
        inner.conversations.insert(
            serial,
            ConversationEntry {
                address: address.clone(),
                from,
                since: SystemTime::now(),
                bytes: Arc::new(AtomicU64::new(0)),
            },
        );
        *inner.per_user.entry(address.clone()).or_insert(0) += 1;
        let budget_limit = self.config.bytes_per_user_per_hour;
        inner
            .budgets
            .entry(address.clone())
            .or_insert_with(|| Arc::new(Budget::new(budget_limit)));
        self.metrics
            .relay_conversations
            .set(i64::try_from(inner.conversations.len()).unwrap_or(i64::MAX));
        Ok((
            ConversationGuard {
                relay: Arc::clone(self),
                address: address.clone(),
                id: serial,
                waiting: Some(id),
            },
            upgrade,
        ))
    }

    /// The listener `address` takes the conversation waiting with `id`: hands over its
    /// upgrade.
    fn take(&self, address: &Address, id: &str, upgrade: OnUpgrade) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let waiting = inner.pending.get(id).is_some_and(|p| &p.address == address);
        let pending = waiting.then(|| inner.pending.remove(id)).flatten();
        drop(inner);
        let Some(pending) = pending else {
            return Err(self.refused(Refusal::NoConversation(address.clone())));
        };
        pending
            .taken
            .send(upgrade)
            .map_err(|_| self.refused(Refusal::NoConversation(address.clone())))
    }

    fn budget(&self, address: &Address) -> Arc<Budget> {
        let limit = self.config.bytes_per_user_per_hour;
        Arc::clone(
            self.lock()
                .budgets
                .entry(address.clone())
                .or_insert_with(|| Arc::new(Budget::new(limit))),
        )
    }

    /// The slots held now, for the admin pages.
    pub fn slots(&self) -> Vec<SlotView> {
        let inner = self.lock();
        let mut out: Vec<SlotView> = inner
            .slots
            .iter()
            .flat_map(|(address, slots)| {
                slots.iter().map(move |s| SlotView {
                    address: address.to_string(),
                    from: s.from.ip().to_string(),
                    since: unix(s.since),
                    offered: s.offered,
                })
            })
            .collect();
        out.sort_by(|a, b| a.address.cmp(&b.address).then(a.since.cmp(&b.since)));
        out
    }

    /// The relayed conversations open now (and those waiting for their listener), for the
    /// admin pages: addresses, bytes and age, never content.
    pub fn conversations(&self) -> Vec<ConversationView> {
        let inner = self.lock();
        let mut out: Vec<ConversationView> = inner
            .conversations
            .values()
            .map(|c| ConversationView {
                address: c.address.to_string(),
                from: c.from.to_string(),
                since: unix(c.since),
                bytes: c.bytes.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.since.cmp(&b.since).then(a.address.cmp(&b.address)));
        out
    }

    /// Ends every slot and conversation (their connections close) and refuses new ones.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let mut set = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            tasks.closed = true;
            std::mem::take(&mut tasks.set)
        };
        set.shutdown().await;
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(config: RelayConfig) -> Arc<Relay> {
        Arc::new(Relay::new(
            config,
            Arc::new(Metrics::new()),
            IdleSwitch::default(),
        ))
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn from() -> SocketAddr {
        "192.0.2.7:4000".parse().unwrap()
    }

    #[test]
    fn slots_are_counted_per_user_and_given_back() {
        let relay = relay(RelayConfig {
            max_slots_per_user: 2,
            max_slots: 3,
            ..RelayConfig::default()
        });
        let alice = addr("alice@a.test");
        let bob = addr("bob@a.test");
        let a1 = relay.take_slot(&alice, from()).unwrap();
        let _a2 = relay.take_slot(&alice, from()).unwrap();
        assert!(matches!(
            relay.take_slot(&alice, from()).unwrap_err(),
            Refusal::UserSlots(_, 2)
        ));
        let _b1 = relay.take_slot(&bob, from()).unwrap();
        assert_eq!(relay.take_slot(&bob, from()).unwrap_err(), Refusal::Slots);
        drop(a1);
        assert_eq!(relay.slots().len(), 2);
        let _b2 = relay.take_slot(&bob, from()).unwrap();
    }

    #[test]
    fn offers_go_to_a_slot_and_are_counted_until_dropped() {
        let relay = relay(RelayConfig {
            max_conversations_per_user: 1,
            ..RelayConfig::default()
        });
        let alice = addr("alice@a.test");
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            relay.offer(&alice, ip).unwrap_err(),
            Refusal::NoSlot(alice.clone())
        );
        let (_slot, mut control) = relay.take_slot(&alice, from()).unwrap();
        let (guard, _upgrade) = relay.offer(&alice, ip).unwrap();
        let Ok(ControlFrame::Incoming { id }) = control.try_recv() else {
            panic!("no incoming frame");
        };
        assert!(pd_proto::relay::is_conversation_id(&id));
        assert!(matches!(
            relay.offer(&alice, ip).unwrap_err(),
            Refusal::UserConversations(..)
        ));
        assert_eq!(relay.conversations().len(), 1);
        drop(guard);
        assert!(relay.conversations().is_empty());
        assert!(relay.lock().pending.is_empty());
        let (_again, _) = relay.offer(&alice, ip).unwrap();
    }

    #[test]
    fn the_budget_refuses_once_used_up() {
        let budget = Budget::new(1000);
        assert!(budget.charge(600));
        assert!(!budget.exhausted());
        assert!(!budget.charge(600));
        assert!(budget.exhausted());
    }
}
