//! Pausing deliveries: events are still accepted and stored, the dispatcher claims nothing new.

use std::sync::Arc;

use tokio::sync::watch;

/// Whether the dispatcher may start attempts; shared by the dispatcher and the admin API.
///
/// While paused, attempts already on the wire finish; due deliveries wait in the store,
/// including retries that come due. The state is not stored: a restart starts open unless
/// `whc serve --paused` says otherwise.
#[derive(Debug, Clone)]
pub struct DeliveryGate {
    paused: Arc<watch::Sender<bool>>,
}

impl DeliveryGate {
    /// A gate, open or paused.
    pub fn new(paused: bool) -> DeliveryGate {
        DeliveryGate {
            paused: Arc::new(watch::Sender::new(paused)),
        }
    }

    /// Stops new attempts; returns whether the gate was open.
    pub fn pause(&self) -> bool {
        !self.paused.send_replace(true)
    }

    /// Lets attempts start again; returns whether the gate was paused.
    pub fn resume(&self) -> bool {
        self.paused.send_replace(false)
    }

    /// Whether deliveries are paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Returns once deliveries are not paused (at once when they are not).
    pub async fn open(&self) {
        let mut rx = self.paused.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail here.
        let _ = rx.wait_for(|paused| !paused).await;
    }
}

impl Default for DeliveryGate {
    fn default() -> DeliveryGate {
        DeliveryGate::new(false)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn open_waits_for_resume() {
        let gate = DeliveryGate::new(false);
        gate.open().await;
        assert!(gate.pause());
        assert!(!gate.pause(), "pausing twice reports it was already paused");
        assert!(gate.is_paused());
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.open().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert!(gate.resume());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("open returns after resume")
            .expect("task");
        assert!(!gate.resume());
    }
}
