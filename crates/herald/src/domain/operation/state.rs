//! The operation state machine: one pure function, [`apply`], decides what
//! a command does to an operation's status and which event (if any) the
//! change publishes. Every backend calls it inside the transaction that
//! persists its answer; none re-decides.
//!
//! ```text
//! pending ──start──▶ running ──requireAction──▶ requires_action
//!    │                 │  ▲ ◀──────────resume──────────┘   │
//!    │                 │  └ start (takeover, lease lapsed)  │
//!    │          complete│fail                               │ fail
//!    │                 ▼                                    ▼
//!    │            succeeded | failed  ◀─────────────────────┘
//!    │ cancel
//!    ▼                running | requires_action ──cancel──▶ cancelling
//! cancelled ◀──fail (worker stops)── cancelling ──complete──▶ succeeded
//! any open state past expire_time ──sweep──▶ expired (cancelling: cancelled)
//! ```
//!
//! Worker fence: a command naming a worker other than the lease holder is
//! refused, except `start` once the holder's lease has lapsed (takeover).
//! A lapsed lease is reported once (`operation.stalled`) by the sweep.

use std::time::Duration;

use super::events::OperationEventKind;
use super::{OperationError, OperationProgress, OperationState, OperationStatus, WorkerLease, WorkerName};
use crate::domain::Timestamp;

/// At most one `operation.progress` event per operation per this interval.
pub const PROGRESS_EVENT_INTERVAL: Duration = Duration::from_secs(5);

/// What a client, a worker or housekeeping asks of an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A worker takes the operation (from `pending`, or from a `running`
    /// one whose lease lapsed) and holds it for `lease`.
    Start { worker: WorkerName, lease: Duration },
    /// The holder extends its lease.
    Heartbeat { worker: Option<WorkerName> },
    Progress {
        worker: Option<WorkerName>,
        progress: OperationProgress,
    },
    RequireAction {
        worker: Option<WorkerName>,
        action: serde_json::Value,
    },
    /// The action was provided: back to `running`, the lease renewed.
    Resume,
    Complete {
        worker: Option<WorkerName>,
        response: serde_json::Value,
    },
    Fail {
        worker: Option<WorkerName>,
        error: OperationError,
    },
    /// The client's cancel.
    Cancel,
    /// Housekeeping at `now`: expire an operation past its expiry, or
    /// report a lapsed lease once.
    Sweep,
}

impl Command {
    /// The wire verb (`:start`…), used in messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Heartbeat { .. } => "heartbeat",
            Self::Progress { .. } => "progress",
            Self::RequireAction { .. } => "requireAction",
            Self::Resume => "resume",
            Self::Complete { .. } => "complete",
            Self::Fail { .. } => "fail",
            Self::Cancel => "cancel",
            Self::Sweep => "sweep",
        }
    }

    fn worker(&self) -> Option<&WorkerName> {
        match self {
            Self::Start { worker, .. } => Some(worker),
            Self::Heartbeat { worker }
            | Self::Progress { worker, .. }
            | Self::RequireAction { worker, .. }
            | Self::Complete { worker, .. }
            | Self::Fail { worker, .. } => worker.as_ref(),
            Self::Resume | Self::Cancel | Self::Sweep => None,
        }
    }
}

/// Why a command was refused; the API answers 409 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the operation is {}; :{verb} is not allowed in that state", state.as_str())]
    Illegal { state: OperationState, verb: &'static str },
    #[error("the operation is held by worker {holder:?} until its lease lapses")]
    HeldByAnotherWorker { holder: String },
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub status: OperationStatus,
    /// The event to publish with the change (its `sequence` is already
    /// counted in `status.sequence`).
    pub event: Option<OperationEventKind>,
    /// Whether anything changed (a sweep of an operation with nothing due
    /// changes nothing and need not be written).
    pub changed: bool,
}

/// Applies `command` at `now` to `current`.
pub fn apply(current: &OperationStatus, command: &Command, now: Timestamp) -> Result<Transition, Refusal> {
    use OperationState::*;
    let state = current.state;
    let illegal = || Refusal::Illegal {
        state,
        verb: command.verb(),
    };
    if !matches!(command, Command::Sweep) && state.is_done() {
        return Err(illegal());
    }
    check_fence(current, command, now)?;
    let mut next = current.clone();
    next.update_time = now;
    let event = match command {
        Command::Start { worker, lease } => {
            let takeover = state == Running
                && current
                    .lease
                    .as_ref()
                    .is_none_or(|held| held.expire_time <= now || held.worker == *worker);
            if state != Pending && !takeover {
                return Err(illegal());
            }
            next.state = Running;
            next.lease = Some(WorkerLease {
                worker: worker.clone(),
                expire_time: now.saturating_add(*lease),
                duration: *lease,
            });
            next.stall_reported = false;
            (state == Pending).then_some(OperationEventKind::Running)
        }
        Command::Heartbeat { .. } => {
            if !matches!(state, Running | Cancelling | RequiresAction) {
                return Err(illegal());
            }
            renew_lease(&mut next, now);
            None
        }
        Command::Progress { progress, .. } => {
            if !matches!(state, Running | Cancelling) {
                return Err(illegal());
            }
            renew_lease(&mut next, now);
            next.progress = Some(progress.clone());
            let due = current
                .last_progress_event
                .is_none_or(|last| now.duration_since(last) >= PROGRESS_EVENT_INTERVAL);
            if current.progress_events && due {
                next.last_progress_event = Some(now);
                Some(OperationEventKind::Progress)
            } else {
                None
            }
        }
        Command::RequireAction { action, .. } => {
            if state != Running {
                return Err(illegal());
            }
            next.state = RequiresAction;
            next.action = Some(action.clone());
            Some(OperationEventKind::RequiresAction)
        }
        Command::Resume => {
            if state != RequiresAction {
                return Err(illegal());
            }
            next.state = Running;
            next.action = None;
            renew_lease(&mut next, now);
            next.stall_reported = false;
            Some(OperationEventKind::Running)
        }
        Command::Complete { response, .. } => {
            if !matches!(state, Running | Cancelling) {
                return Err(illegal());
            }
            next.state = Succeeded;
            next.response = Some(response.clone());
            next.lease = None;
            Some(OperationEventKind::Succeeded)
        }
        Command::Fail { error, .. } => {
            if !matches!(state, Running | RequiresAction | Cancelling) {
                return Err(illegal());
            }
            next.lease = None;
            if state == Cancelling {
                // The worker stopped the job it was asked to cancel.
                next.state = Cancelled;
                next.error = Some(cancelled_error());
                Some(OperationEventKind::Cancelled)
            } else {
                next.state = Failed;
                next.error = Some(error.clone());
                Some(OperationEventKind::Failed)
            }
        }
        Command::Cancel => match state {
            Pending => {
                next.state = Cancelled;
                next.error = Some(cancelled_error());
                Some(OperationEventKind::Cancelled)
            }
            Running | RequiresAction => {
                next.state = Cancelling;
                None
            }
            // Asked again: nothing more to do.
            Cancelling => return Ok(unchanged(current)),
            _ => return Err(illegal()),
        },
        Command::Sweep => return Ok(sweep(current, now)),
    };
    if event.is_some() {
        next.sequence += 1;
    }
    Ok(Transition {
        status: next,
        event,
        changed: true,
    })
}

fn check_fence(current: &OperationStatus, command: &Command, now: Timestamp) -> Result<(), Refusal> {
    let (Some(worker), Some(held)) = (command.worker(), current.lease.as_ref()) else {
        return Ok(());
    };
    let takeover_allowed = matches!(command, Command::Start { .. }) && held.expire_time <= now;
    if held.worker == *worker || takeover_allowed {
        return Ok(());
    }
    Err(Refusal::HeldByAnotherWorker {
        holder: held.worker.as_str().to_owned(),
    })
}

fn renew_lease(status: &mut OperationStatus, now: Timestamp) {
    if let Some(lease) = &mut status.lease {
        lease.expire_time = now.saturating_add(lease.duration);
    }
    status.stall_reported = false;
}

fn sweep(current: &OperationStatus, now: Timestamp) -> Transition {
    use OperationState::*;
    let mut next = current.clone();
    let event = if current.state.is_done() {
        None
    } else if now >= current.expire_time {
        next.lease = None;
        if current.state == Cancelling {
            next.state = Cancelled;
            next.error = Some(cancelled_error());
            Some(OperationEventKind::Cancelled)
        } else {
            next.state = Expired;
            next.error = Some(OperationError {
                code: OperationError::DEADLINE_EXCEEDED,
                message: "the operation was not done before its expire_time".into(),
            });
            Some(OperationEventKind::Expired)
        }
    } else if matches!(current.state, Running | Cancelling)
        && !current.stall_reported
        && current.lease.as_ref().is_some_and(|lease| lease.expire_time <= now)
    {
        next.stall_reported = true;
        Some(OperationEventKind::Stalled)
    } else {
        None
    };
    let Some(event) = event else {
        return unchanged(current);
    };
    next.update_time = now;
    next.sequence += 1;
    Transition {
        status: next,
        event: Some(event),
        changed: true,
    }
}

fn unchanged(current: &OperationStatus) -> Transition {
    Transition {
        status: current.clone(),
        event: None,
        changed: false,
    }
}

fn cancelled_error() -> OperationError {
    OperationError {
        code: OperationError::CANCELLED,
        message: "the operation was cancelled".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::ProjectId;
    use crate::domain::operation::OperationState as S;
    use crate::domain::operation::{Operation, OperationKind};

    const LEASE: Duration = Duration::from_secs(60);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn worker(name: &str) -> WorkerName {
        WorkerName::parse(name).unwrap()
    }

    fn fresh() -> OperationStatus {
        Operation::new(
            ProjectId::generate(),
            OperationKind::parse("k").unwrap(),
            None,
            true,
            Duration::from_secs(3600),
            at(0),
        )
        .status
    }

    fn in_state(state: OperationState) -> OperationStatus {
        let mut status = fresh();
        status.state = state;
        if matches!(state, S::Running | S::RequiresAction | S::Cancelling) {
            status.lease = Some(WorkerLease {
                worker: worker("w1"),
                expire_time: at(60),
                duration: LEASE,
            });
        }
        status
    }

    fn commands() -> Vec<Command> {
        vec![
            Command::Start {
                worker: worker("w1"),
                lease: LEASE,
            },
            Command::Heartbeat { worker: None },
            Command::Progress {
                worker: None,
                progress: OperationProgress::new(Some(50.0), None).unwrap(),
            },
            Command::RequireAction {
                worker: None,
                action: json!({"type": "confirm"}),
            },
            Command::Resume,
            Command::Complete {
                worker: None,
                response: json!({"ok": true}),
            },
            Command::Fail {
                worker: None,
                error: OperationError::new(13, "boom").unwrap(),
            },
            Command::Cancel,
        ]
    }

    /// Every (state, command) pair at t=10 s: the resulting state and
    /// event, or `None` when the command is refused.
    #[test]
    fn every_transition_is_legal_or_refused_as_specified() {
        use OperationEventKind as E;
        let expected = |state: S, verb: &str| -> Option<(S, Option<E>)> {
            Some(match (state, verb) {
                (S::Pending, "start") => (S::Running, Some(E::Running)),
                (S::Pending, "cancel") => (S::Cancelled, Some(E::Cancelled)),
                // The holder starting again keeps its job (renewed lease).
                (S::Running, "start") => (S::Running, None),
                (S::Running | S::Cancelling | S::RequiresAction, "heartbeat") => (state, None),
                (S::Running | S::Cancelling, "progress") => (state, Some(E::Progress)),
                (S::Running, "requireAction") => (S::RequiresAction, Some(E::RequiresAction)),
                (S::RequiresAction, "resume") => (S::Running, Some(E::Running)),
                (S::Running | S::Cancelling, "complete") => (S::Succeeded, Some(E::Succeeded)),
                (S::Running | S::RequiresAction, "fail") => (S::Failed, Some(E::Failed)),
                (S::Cancelling, "fail") => (S::Cancelled, Some(E::Cancelled)),
                (S::Running | S::RequiresAction, "cancel") => (S::Cancelling, None),
                (S::Cancelling, "cancel") => (S::Cancelling, None),
                _ => return None,
            })
        };
        for state in OperationState::ALL {
            for command in commands() {
                let current = in_state(state);
                let got = apply(&current, &command, at(10));
                match (expected(state, command.verb()), got) {
                    (Some((to, event)), Ok(transition)) => {
                        assert_eq!(transition.status.state, to, "{state:?} :{}", command.verb());
                        assert_eq!(transition.event, event, "{state:?} :{}", command.verb());
                        let sequence = current.sequence + u64::from(event.is_some());
                        assert_eq!(transition.status.sequence, sequence);
                    }
                    (None, Err(Refusal::Illegal { state: named, verb })) => {
                        assert_eq!((named, verb), (state, command.verb()));
                    }
                    (expected, got) => panic!("{state:?} :{}: expected {expected:?}, got {got:?}", command.verb()),
                }
            }
        }
    }

    #[test]
    fn a_refusal_names_the_current_state() {
        let refusal = apply(&in_state(S::Succeeded), &Command::Cancel, at(1)).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "the operation is succeeded; :cancel is not allowed in that state"
        );
    }

    #[test]
    fn another_worker_is_fenced_until_the_lease_lapses() {
        let running = in_state(S::Running);
        let other = worker("w2");
        let complete = Command::Complete {
            worker: Some(other.clone()),
            response: json!({}),
        };
        assert!(matches!(
            apply(&running, &complete, at(10)),
            Err(Refusal::HeldByAnotherWorker { .. })
        ));
        let start = Command::Start {
            worker: other.clone(),
            lease: LEASE,
        };
        assert!(matches!(
            apply(&running, &start, at(59)),
            Err(Refusal::HeldByAnotherWorker { .. })
        ));
        // Lapsed: reported once, then another worker takes over.
        let stalled = apply(&running, &Command::Sweep, at(60)).unwrap();
        assert_eq!(stalled.event, Some(OperationEventKind::Stalled));
        assert!(stalled.status.stall_reported);
        let again = apply(&stalled.status, &Command::Sweep, at(61)).unwrap();
        assert!(!again.changed);
        let taken = apply(&stalled.status, &start, at(61)).unwrap();
        assert_eq!(taken.status.lease.as_ref().unwrap().worker, other);
        assert_eq!(taken.status.lease.as_ref().unwrap().expire_time, at(121));
        assert!(!taken.status.stall_reported);
        // The old holder is now fenced out.
        let late = Command::Complete {
            worker: Some(worker("w1")),
            response: json!({}),
        };
        assert!(apply(&taken.status, &late, at(62)).is_err());
    }

    #[test]
    fn heartbeats_and_progress_extend_the_lease() {
        let running = in_state(S::Running);
        let beat = apply(&running, &Command::Heartbeat { worker: None }, at(50)).unwrap();
        assert_eq!(beat.status.lease.unwrap().expire_time, at(110));
        assert!(!apply(&running, &Command::Sweep, at(59)).unwrap().changed);
    }

    #[test]
    fn progress_events_are_opt_in_and_throttled() {
        let progress = Command::Progress {
            worker: None,
            progress: OperationProgress::new(Some(1.0), None).unwrap(),
        };
        let first = apply(&in_state(S::Running), &progress, at(10)).unwrap();
        assert_eq!(first.event, Some(OperationEventKind::Progress));
        let soon = apply(&first.status, &progress, at(14)).unwrap();
        assert_eq!(soon.event, None);
        assert_eq!(soon.status.progress.as_ref().unwrap().percent, Some(1.0));
        let later = apply(&soon.status, &progress, at(15)).unwrap();
        assert_eq!(later.event, Some(OperationEventKind::Progress));
        let mut quiet = in_state(S::Running);
        quiet.progress_events = false;
        assert_eq!(apply(&quiet, &progress, at(10)).unwrap().event, None);
    }

    #[test]
    fn the_sweep_expires_open_operations_and_leaves_done_ones() {
        use OperationEventKind as E;
        for (state, to, event) in [
            (S::Pending, S::Expired, Some(E::Expired)),
            (S::Running, S::Expired, Some(E::Expired)),
            (S::RequiresAction, S::Expired, Some(E::Expired)),
            (S::Cancelling, S::Cancelled, Some(E::Cancelled)),
            (S::Succeeded, S::Succeeded, None),
            (S::Failed, S::Failed, None),
            (S::Cancelled, S::Cancelled, None),
            (S::Expired, S::Expired, None),
        ] {
            let swept = apply(&in_state(state), &Command::Sweep, at(3600)).unwrap();
            assert_eq!((swept.status.state, swept.event), (to, event), "{state:?}");
            assert_eq!(swept.status.housekeeping_due(), None, "{state:?}");
        }
        // Before expiry a pending operation is left alone.
        assert!(!apply(&fresh(), &Command::Sweep, at(3599)).unwrap().changed);
    }

    #[test]
    fn sequences_count_every_event_of_a_path() {
        let steps = [
            Command::Start {
                worker: worker("w1"),
                lease: LEASE,
            },
            Command::RequireAction {
                worker: None,
                action: json!({}),
            },
            Command::Resume,
            Command::Complete {
                worker: None,
                response: json!({}),
            },
        ];
        let mut status = fresh();
        let mut sequences = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let transition = apply(&status, step, at(i as i64 + 1)).unwrap();
            sequences.push(transition.status.sequence);
            status = transition.status;
        }
        assert_eq!(sequences, [1, 2, 3, 4]);
    }
}
