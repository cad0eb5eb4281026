//! What a batch of completions does to endpoint health, planned once for
//! every backend: the backend loads the webhooks' counters (and, for
//! deliveries that failed for good, their event), calls [`plan`] inside
//! the completion transaction, and persists the plan in that same
//! transaction: new counters, webhooks to disable, and the operational
//! events to publish. The rules themselves are `domain::health` and
//! `domain::operational`.

use std::collections::HashMap;

use crate::domain::health::HealthCounters;
use crate::domain::operational::{self, DisabledReason};
use crate::domain::{DeliveryId, EventId, EventType, ProjectId, WebhookId, WebhookState};
use crate::store::{Completion, CompletionResult, NewEvent, NextStep};

/// A webhook's health as stored.
#[derive(Debug, Clone)]
pub struct HealthRow {
    pub project_id: ProjectId,
    pub enabled: bool,
    pub counters: HealthCounters,
}

/// A delivery that failed for good: what its `delivery.exhausted` names.
#[derive(Debug, Clone)]
pub struct ExhaustedFacts {
    pub event_id: EventId,
    pub event_type: EventType,
    pub attempt_count: u32,
}

/// A webhook Herald disables.
#[derive(Debug, Clone)]
pub struct Disable {
    pub webhook_id: WebhookId,
    pub state: WebhookState,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct HealthPlan {
    /// Counters that changed, final values.
    pub counters: Vec<(WebhookId, HealthCounters)>,
    pub disable: Vec<Disable>,
    /// Operational events, by project, in order.
    pub events: Vec<(ProjectId, NewEvent)>,
}

/// The webhooks whose health rows [`plan`] needs.
pub fn webhooks_to_load(completions: &[Completion], results: &[CompletionResult]) -> Vec<WebhookId> {
    let mut ids: Vec<WebhookId> = applied(completions, results)
        .filter(|c| c.health.is_some() || c.disable_webhook.is_some())
        .map(|c| c.webhook_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The deliveries whose event [`plan`] needs: scheduled ones that failed
/// for good (not because their webhook was deleted).
pub fn exhausted_to_load(completions: &[Completion], results: &[CompletionResult]) -> Vec<DeliveryId> {
    applied(completions, results)
        .filter(|c| is_exhausted(c))
        .map(|c| c.delivery_id)
        .collect()
}

fn is_exhausted(c: &Completion) -> bool {
    c.health.is_some()
        && c.next == NextStep::Failed
        && c.last_error.as_deref() != Some(crate::domain::delivery::reason::WEBHOOK_DELETED)
}

fn applied<'a>(completions: &'a [Completion], results: &'a [CompletionResult]) -> impl Iterator<Item = &'a Completion> {
    completions
        .iter()
        .zip(results)
        .filter(|(_, result)| **result == CompletionResult::Applied)
        .map(|(c, _)| c)
}

/// Folds the applied completions, in order, into the webhooks' health.
pub fn plan(
    completions: &[Completion],
    results: &[CompletionResult],
    mut rows: HashMap<WebhookId, HealthRow>,
    exhausted: &HashMap<DeliveryId, ExhaustedFacts>,
) -> HealthPlan {
    let mut plan = HealthPlan::default();
    let mut changed: Vec<WebhookId> = Vec::new();
    for c in applied(completions, results) {
        let Some(row) = rows.get_mut(&c.webhook_id) else {
            continue;
        };
        if let (Some(policy), Some(attempt)) = (c.health, &c.attempt) {
            let step = policy.after_attempt(
                row.counters,
                attempt.error_kind.is_none(),
                attempt.start_time,
                c.now,
                row.enabled,
            );
            if step.counters != row.counters {
                row.counters = step.counters;
                if !changed.contains(&c.webhook_id) {
                    changed.push(c.webhook_id);
                }
            }
            if step.disable {
                let reason = policy.disable_reason(row.counters, c.now);
                disable(&mut plan, row, c, DisabledReason::FailedDeliveries, reason);
            }
            if let Some(recovery) = step.recovered {
                let payload = operational::DeliveryRecovered {
                    webhook_id: c.webhook_id,
                    delivery_id: c.delivery_id,
                    failed_attempts: recovery.failed_attempts,
                    failing_since: operational::rfc3339(recovery.failing_since),
                };
                plan.events.push((
                    row.project_id,
                    NewEvent::from_data(
                        operational::event_type(operational::DELIVERY_RECOVERED),
                        c.now,
                        &payload,
                    ),
                ));
            }
        }
        if let Some(reason) = &c.disable_webhook
            && row.enabled
        {
            disable(&mut plan, row, c, DisabledReason::Gone, reason.clone());
        }
        if is_exhausted(c)
            && let Some(facts) = exhausted.get(&c.delivery_id)
            && !operational::is_operational(&facts.event_type)
        {
            let payload = operational::DeliveryExhausted {
                webhook_id: c.webhook_id,
                delivery_id: c.delivery_id,
                event_id: facts.event_id,
                event_type: facts.event_type.to_string(),
                attempt_count: c.attempt.as_ref().map_or(facts.attempt_count, |a| a.number),
                last_error: c.last_error.clone(),
            };
            plan.events.push((
                row.project_id,
                NewEvent::from_data(
                    operational::event_type(operational::DELIVERY_EXHAUSTED),
                    c.now,
                    &payload,
                ),
            ));
        }
    }
    plan.counters = changed.into_iter().map(|id| (id, rows[&id].counters)).collect();
    plan
}

fn disable(plan: &mut HealthPlan, row: &mut HealthRow, c: &Completion, why: DisabledReason, reason: String) {
    row.enabled = false;
    let state = match why {
        DisabledReason::FailedDeliveries => WebhookState::DisabledDueToFailedDeliveries,
        DisabledReason::Gone => WebhookState::Disabled,
    };
    let payload = operational::WebhookDisabled {
        webhook_id: c.webhook_id,
        reason: why,
        message: reason.clone(),
        consecutive_failures: row.counters.consecutive_failures,
        failing_since: operational::rfc3339(row.counters.failing_since),
    };
    plan.disable.push(Disable {
        webhook_id: c.webhook_id,
        state,
        reason,
    });
    plan.events.push((
        row.project_id,
        NewEvent::from_data(operational::event_type(operational::WEBHOOK_DISABLED), c.now, &payload),
    ));
}

/// The plan's events grouped by project (each group one publish).
pub fn events_by_project(events: Vec<(ProjectId, NewEvent)>) -> Vec<(ProjectId, Vec<NewEvent>)> {
    let mut groups: Vec<(ProjectId, Vec<NewEvent>)> = Vec::new();
    for (project, event) in events {
        match groups.iter_mut().find(|(p, _)| *p == project) {
            Some((_, list)) => list.push(event),
            None => groups.push((project, vec![event])),
        }
    }
    groups
}
