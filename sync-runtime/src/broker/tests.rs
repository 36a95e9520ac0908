//! The numbering and gap rules without a transport: unit and property tests, and the helpers the
//! memory broker's tests share.

use super::*;
use proptest::prelude::*;
use tokio::time::Instant;

pub(crate) fn trigger(n: u64) -> WireTrigger {
    WireTrigger {
        path: "/dashboard".to_owned(),
        name: "counter".to_owned(),
        data: RawValue::from_string(format!("{{\"n\":{n}}}")).expect("JSON"),
        sender: None,
    }
}

/// The number a delivered test trigger carries.
pub(crate) fn n_of(trigger: &WireTrigger) -> u64 {
    serde_json::from_str::<serde_json::Value>(trigger.data.get()).expect("JSON")["n"]
        .as_u64()
        .expect("a number")
}

/// Through the wire format and back, as every envelope travels.
fn wire(envelope: Envelope) -> Envelope {
    serde_json::from_slice(&envelope.encode()).expect("decodes")
}

fn receiver() -> Receiver {
    Receiver::new(1, Duration::from_secs(600), Instant::now())
}

fn hear(receiver: &mut Receiver, envelope: Envelope) -> (Option<Gap>, Option<u64>) {
    let received = receiver.receive(wire(envelope), Instant::now());
    (received.gap, received.trigger.as_ref().map(n_of))
}

#[test]
fn numbers_are_consecutive_and_a_trigger_given_up_consumes_one() {
    let mut numbering = Numbering::new(7);
    let first = numbering.trigger(trigger(1));
    assert_eq!((first.node, first.seq, first.from), (7, 1, Some(1)));
    assert_eq!(numbering.trigger(trigger(2)).seq, 2);
    assert_eq!(numbering.heartbeat().seq, 2);
    numbering.give_up(3);
    let heartbeat = numbering.heartbeat();
    assert_eq!(
        (heartbeat.seq, heartbeat.from),
        (5, Some(6)),
        "a loss shows in the heartbeat"
    );
    let next = numbering.trigger(trigger(6));
    assert_eq!(
        (next.seq, next.from),
        (6, Some(6)),
        "a new run starts after the loss"
    );
    assert_eq!(numbering.trigger(trigger(7)).from, Some(6));
    numbering.give_up(0);
    assert_eq!(
        numbering.heartbeat().from,
        Some(6),
        "giving up nothing breaks no run"
    );
    numbering.unsent();
    let heartbeat = numbering.heartbeat();
    assert_eq!(
        (heartbeat.seq, heartbeat.from),
        (7, Some(8)),
        "an unsent publish is a loss"
    );
}

#[test]
fn the_wire_format_is_stable_and_reads_older_nodes() {
    let mut numbering = Numbering::new(42);
    assert_eq!(
        &numbering.heartbeat().encode()[..],
        br#"{"node":42,"seq":0,"from":1}"#
    );
    assert_eq!(
        &numbering.trigger(trigger(5)).encode()[..],
        br#"{"node":42,"seq":1,"from":1,"trigger":{"path":"/dashboard","name":"counter","data":{"n":5}}}"#
    );
    // A node of the previous version: no `from`.
    let old: Envelope = serde_json::from_str(r#"{"node":9,"seq":3}"#).expect("reads");
    assert_eq!((old.node, old.seq, old.from), (9, 3, None));
    assert!(old.trigger.is_none());
}

#[test]
fn a_known_node_that_skips_a_number_is_a_gap() {
    let mut r = receiver();
    let mut b = Numbering::new(2);
    assert_eq!(hear(&mut r, b.heartbeat()), (None, None));
    assert_eq!(hear(&mut r, b.trigger(trigger(1))), (None, Some(1)));
    assert_eq!(hear(&mut r, b.trigger(trigger(2))), (None, Some(2)));
    b.give_up(2);
    let (gap, n) = hear(&mut r, b.trigger(trigger(5)));
    assert_eq!(
        gap,
        Some(Gap {
            node: 2,
            missed: Some(2)
        })
    );
    assert_eq!(n, Some(5), "the trigger after the gap is delivered");
    // A loss at the end of a burst shows with the next heartbeat.
    b.give_up(1);
    let (gap, _) = hear(&mut r, b.heartbeat());
    assert_eq!(
        gap,
        Some(Gap {
            node: 2,
            missed: Some(1)
        })
    );
    assert_eq!(hear(&mut r, b.heartbeat()), (None, None), "reported once");
    let again = b.trigger(trigger(7));
    let copy = Envelope {
        node: again.node,
        seq: again.seq,
        from: again.from,
        trigger: Some(trigger(7)),
        note: None,
        pv: None,
    };
    assert_eq!(hear(&mut r, again), (None, Some(7)));
    assert_eq!(
        hear(&mut r, copy),
        (None, None),
        "a trigger heard twice is delivered once"
    );
}

#[test]
fn this_nodes_own_envelopes_are_ignored() {
    let mut r = receiver();
    let mut own = Numbering::new(1);
    own.give_up(5);
    assert_eq!(hear(&mut r, own.trigger(trigger(1))), (None, None));
    assert!(!r.knows(1));
}

#[test]
fn a_node_heard_first_with_a_clean_history_joined_before_this_one_listened() {
    let mut r = receiver();
    let mut b = Numbering::new(2);
    for n in 1..=10 {
        b.trigger(trigger(n));
    }
    assert_eq!(hear(&mut r, b.heartbeat()), (None, None));
    // An old loss, followed by triggers on the wire: all before this node listened.
    let mut c = Numbering::new(3);
    c.trigger(trigger(1));
    c.give_up(4);
    c.trigger(trigger(6));
    assert_eq!(hear(&mut r, c.trigger(trigger(7))), (None, Some(7)));
    // A node that has just started: nothing before.
    let mut d = Numbering::new(4);
    assert_eq!(hear(&mut r, d.trigger(trigger(1))), (None, Some(1)));
}

/// Defect 3: a node started during an outage gave up its first triggers; heard for the first time,
/// it is not taken for a fresh start.
#[test]
fn a_node_started_during_an_outage_is_not_taken_for_a_fresh_start() {
    // Through the outage, without ever breaking: rule 2.
    let mut r = receiver();
    let mut b = Numbering::new(2);
    b.give_up(3);
    let (gap, n) = hear(&mut r, b.trigger(trigger(4)));
    assert_eq!(
        gap,
        Some(Gap {
            node: 2,
            missed: None
        })
    );
    assert_eq!(n, Some(4));
    // Heard first through a heartbeat.
    let mut r = receiver();
    let mut b = Numbering::new(2);
    b.give_up(3);
    assert_eq!(
        hear(&mut r, b.heartbeat()).0,
        Some(Gap {
            node: 2,
            missed: None
        })
    );
    assert_eq!(hear(&mut r, b.trigger(trigger(4))), (None, Some(4)), "once");
    // This node's subscription broke in the outage too: rule 3.
    let mut r = receiver();
    r.interrupted();
    let mut b = Numbering::new(2);
    b.give_up(1);
    assert_eq!(
        hear(&mut r, b.heartbeat()).0,
        Some(Gap {
            node: 2,
            missed: None
        })
    );
}

#[test]
fn after_an_interruption_a_new_node_that_published_before_is_a_gap() {
    let mut r = receiver();
    r.interrupted();
    r.subscribed(Instant::now());
    let mut b = Numbering::new(2);
    for n in 1..=3 {
        b.trigger(trigger(n));
    }
    // Published, never given up; but perhaps while this node was not listening.
    assert_eq!(
        hear(&mut r, b.trigger(trigger(4))).0,
        Some(Gap {
            node: 2,
            missed: None
        })
    );
    // A node that has just started published nothing before.
    let mut c = Numbering::new(3);
    assert_eq!(hear(&mut r, c.heartbeat()), (None, None));
    assert_eq!(hear(&mut r, c.trigger(trigger(1))), (None, Some(1)));
}

#[test]
fn an_older_node_without_from_heard_first_is_a_gap_if_it_published_before() {
    let mut r = receiver();
    let legacy = |seq, t: Option<u64>| Envelope {
        node: 5,
        seq,
        from: None,
        trigger: t.map(trigger),
        note: None,
        pv: None,
    };
    assert_eq!(
        hear(&mut r, legacy(3, Some(3))).0,
        Some(Gap {
            node: 5,
            missed: None
        })
    );
    assert_eq!(hear(&mut r, legacy(4, Some(4))), (None, Some(4)));
    let mut r = receiver();
    assert_eq!(hear(&mut r, legacy(0, None)), (None, None));
}

#[test]
fn silent_nodes_are_forgotten_but_only_while_listening() {
    let start = Instant::now();
    let mut r = Receiver::new(1, Duration::from_secs(60), start);
    let mut b = Numbering::new(2);
    r.receive(b.trigger(trigger(1)), start);
    let c = Numbering::new(3);
    let mut at = start;
    // An outage of this node's subscription longer than the silence: nobody is forgotten for it.
    r.interrupted();
    at += Duration::from_secs(120);
    r.subscribed(at);
    r.receive(c.heartbeat(), at + Duration::from_secs(10));
    assert!(r.knows(2));
    // Node 2 stays silent while this node listens: forgotten.
    at += Duration::from_secs(61);
    r.receive(c.heartbeat(), at);
    assert!(!r.knows(2));
    assert!(r.knows(3));
}

#[test]
fn node_ids_come_from_the_os_and_differ() {
    let ids: std::collections::HashSet<u64> = (0..64).map(|_| node_id()).collect();
    assert_eq!(ids.len(), 64);
}

/// What a node does in the model below.
#[derive(Debug, Clone)]
enum Step {
    /// The publisher numbers a trigger; it reaches the receiver if it listens.
    Publish,
    /// The publisher gives `n` triggers up.
    GiveUp(u64),
    /// The publisher's heartbeat; it reaches the receiver if it listens.
    Heartbeat,
    /// The receiver's subscription drops.
    Drop,
    /// The receiver's subscription comes back.
    Resubscribe,
    /// The receiver starts (it exists from here on; what came before does not concern it).
    Born { first_attempt_fails: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Publish),
        1 => (1u64..4).prop_map(Step::GiveUp),
        2 => Just(Step::Heartbeat),
        1 => Just(Step::Drop),
        1 => Just(Step::Resubscribe),
        1 => any::<bool>().prop_map(|first_attempt_fails| Step::Born { first_attempt_fails }),
    ]
}

proptest! {
    /// Any trigger a receiver missed while it existed is followed by a gap by the time it has heard
    /// the publisher's next heartbeat; and without losses or breaks there is no gap.
    #[test]
    fn losses_are_never_silent(steps in proptest::collection::vec(step(), 1..60)) {
        let mut publisher = Numbering::new(2);
        let mut receiver: Option<Receiver> = None;
        let mut listening = false;
        // Triggers numbered while the receiver existed and that it did not get.
        let mut missed = 0u64;
        let mut gaps = 0u64;
        let mut broken = false;
        let mut gave_up = false;
        let now = Instant::now();
        let deliver = |receiver: &mut Option<Receiver>, listening: bool, envelope: Envelope, gaps: &mut u64| -> bool {
            match receiver {
                Some(r) if listening => {
                    let got = r.receive(wire(envelope), now);
                    *gaps += u64::from(got.gap.is_some());
                    got.trigger.is_some()
                }
                _ => false,
            }
        };
        for step in steps {
            match step {
                Step::Publish => {
                    let envelope = publisher.trigger(trigger(0));
                    let exists = receiver.is_some();
                    if !deliver(&mut receiver, listening, envelope, &mut gaps) && exists {
                        missed += 1;
                    }
                }
                Step::GiveUp(n) => {
                    publisher.give_up(n);
                    gave_up = true;
                    if receiver.is_some() {
                        missed += n;
                    }
                }
                Step::Heartbeat => {
                    deliver(&mut receiver, listening, publisher.heartbeat(), &mut gaps);
                }
                Step::Drop => {
                    if let Some(r) = &mut receiver {
                        if listening {
                            r.interrupted();
                            broken = true;
                        }
                        listening = false;
                    }
                }
                Step::Resubscribe => {
                    if let Some(r) = &mut receiver {
                        r.subscribed(now);
                        listening = true;
                    }
                }
                Step::Born { first_attempt_fails } => {
                    if receiver.is_none() {
                        let mut r = Receiver::new(1, Duration::from_secs(600), now);
                        if first_attempt_fails {
                            r.interrupted();
                            broken = true;
                        } else {
                            r.subscribed(now);
                            listening = true;
                        }
                        receiver = Some(r);
                    }
                }
            }
        }
        if let Some(r) = &mut receiver {
            r.subscribed(now);
            listening = true;
        }
        deliver(&mut receiver, listening, publisher.heartbeat(), &mut gaps);
        if missed > 0 {
            prop_assert!(gaps > 0, "{missed} missed without a gap");
        }
        if !broken && !gave_up {
            prop_assert_eq!(gaps, 0);
        }
    }
}
