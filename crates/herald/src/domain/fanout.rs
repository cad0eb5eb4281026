//! Fan-out: which webhooks receive an event. One rule for every backend:
//! each enabled, undeleted webhook of the event's project whose subscribed
//! patterns match the event's type gets exactly one delivery; Herald's own
//! (operational) events only reach webhooks that name them, not `*`. The store
//! loads the subscribers inside the publishing transaction and persists
//! what this module decides.

use super::{EventType, SubscribedEvents, WebhookId};

/// An enabled, undeleted webhook's subscription, as publishing sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: WebhookId,
    pub events: SubscribedEvents,
}

/// The webhooks that receive an event of `event_type`, in `subscribers` order.
pub fn recipients<'a>(
    event_type: &'a EventType,
    subscribers: &'a [Subscriber],
) -> impl Iterator<Item = WebhookId> + 'a {
    subscribers
        .iter()
        .filter(move |subscriber| {
            if super::operational::is_operational(event_type) {
                subscriber.events.names(event_type)
            } else {
                subscriber.events.matches(event_type)
            }
        })
        .map(|subscriber| subscriber.id)
}

/// How many deliveries events of these types would create.
pub fn delivery_count<'a>(event_types: impl IntoIterator<Item = &'a EventType>, subscribers: &[Subscriber]) -> usize {
    event_types
        .into_iter()
        .map(|event_type| recipients(event_type, subscribers).count())
        .sum()
}

/// The limit check every backend applies in the publishing transaction.
pub fn check_limit(deliveries: usize, max: usize) -> Result<(), String> {
    if deliveries > max {
        return Err(format!(
            "this request would create {deliveries} deliveries (events × matching webhooks), more than \
             limits.max_fanout_per_request ({max}); publish fewer events per request"
        ));
    }
    Ok(())
}

/// The limit check on webhooks per project.
pub fn check_webhook_count(existing: usize, max: usize) -> Result<(), String> {
    if existing >= max {
        return Err(format!(
            "the project already has {existing} webhooks, the limit (limits.max_webhooks_per_project = {max}); \
             delete one first"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(patterns: &[&str]) -> Subscriber {
        Subscriber {
            id: WebhookId::generate(),
            events: SubscribedEvents::parse(patterns).unwrap(),
        }
    }

    #[test]
    fn each_matching_subscriber_gets_one_delivery() {
        let all = subscriber(&["*"]);
        let batches = subscriber(&["batch.*"]);
        let exact = subscriber(&["video.generated"]);
        let subscribers = vec![all.clone(), batches.clone(), exact.clone()];
        let check = |event: &str, expected: &[WebhookId]| {
            let event = EventType::parse(event).unwrap();
            let got: Vec<WebhookId> = recipients(&event, &subscribers).collect();
            assert_eq!(got, expected, "{event:?}");
        };
        check("batch.succeeded", &[all.id, batches.id]);
        check("video.generated", &[all.id, exact.id]);
        check("interaction.completed", &[all.id]);
        let types = [
            EventType::parse("batch.failed").unwrap(),
            EventType::parse("x.y").unwrap(),
        ];
        assert_eq!(delivery_count(&types, &subscribers), 3);
        assert!(check_limit(3, 3).is_ok());
        assert!(check_limit(4, 3).unwrap_err().contains("max_fanout_per_request (3)"));
        assert!(check_webhook_count(2, 3).is_ok());
        assert!(
            check_webhook_count(3, 3)
                .unwrap_err()
                .contains("max_webhooks_per_project = 3")
        );
    }
}
