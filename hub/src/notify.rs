//! Notification fan-out. For now one channel: the websocket bus, a `broadcast` that is
//! lossy by design — a client that lags behind is told so and catches up from the
//! database (`store::Store::updates_since`), so a slow browser never slows the hub.
//! SMS, voice and webhooks (issue 6) plug in beside it with their own bounded queues.

use tokio::sync::broadcast;

use crate::store::AlarmUpdate;

#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<AlarmUpdate>,
    /// Ids of alarms whose SMS / call / webhook deliveries changed (sent, delivered,
    /// answered, failed): boards fetch the new outcomes at once. Lossy like the steps; a
    /// board that misses one still refreshes them periodically.
    deliveries: broadcast::Sender<String>,
}

impl Bus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        let (deliveries, _) = broadcast::channel(capacity);
        Self { tx, deliveries }
    }

    /// A delivery of this alarm changed. Never blocks.
    pub fn delivery_changed(&self, alarm_id: &str) {
        let _ = self.deliveries.send(alarm_id.to_owned());
    }

    pub fn subscribe_deliveries(&self) -> broadcast::Receiver<String> {
        self.deliveries.subscribe()
    }

    /// Publish a committed step. Never blocks; with no subscriber it is simply dropped.
    pub fn publish(&self, update: AlarmUpdate) {
        metrics::counter!("anxin_alarm_updates_total", "step" => update.step.clone()).increment(1);
        let _ = self.tx.send(update);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AlarmUpdate> {
        self.tx.subscribe()
    }
}
