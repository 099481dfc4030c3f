//! The UDP socket's datagrams in flight (contract §8.1, §8.4): answered only once appended
//! within the ack timeout, never after, and no more appends at once than the bound.

use processor_core::teltonika::udp_flights::{
    Command, DatagramId, Input, Observation, UdpConfig, UdpFlights,
};
use processor_core::teltonika::{AllowList, BadPacket};
use processor_core::{MonoMillis, UnixMillis};

const CONFIG: UdpConfig = UdpConfig {
    max_bytes: 1_500,
    ack_timeout_ms: 5_000,
    max_in_flight: 2,
};

/// The Teltonika wiki's UDP example: packet id 0xCAFE, AVL packet id 5, one record.
const UDP8: &str = "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001";
const REPLY: [u8; 7] = [0x00, 0x05, 0xCA, 0xFE, 0x01, 0x05, 0x01];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

type Flights = UdpFlights<&'static str>;

fn drain(flights: &mut Flights) -> Vec<Command<&'static str>> {
    std::iter::from_fn(|| flights.poll_command()).collect()
}

/// What the machine says of a datagram it does not answer.
fn observed(peer: &'static str, what: Observation) -> Command<&'static str> {
    Command::Observe { peer, what }
}

/// A datagram from `peer` at `now`, and what the machine asks for it.
fn receive(
    flights: &mut Flights,
    now: u64,
    peer: &'static str,
    bytes: &[u8],
) -> Vec<Command<&'static str>> {
    flights.handle(
        MonoMillis(now),
        Input::Datagram {
            bytes,
            peer,
            received_at: UnixMillis(1_000),
            allow: &AllowList::Everyone,
        },
    );
    drain(flights)
}

fn append_of(commands: &[Command<&'static str>]) -> DatagramId {
    match commands {
        [Command::Append { id, entries }] => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries.received_at, "1000");
            *id
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_confirmed_append_is_answered_with_its_latency() {
    let mut flights = Flights::new(CONFIG);
    let id = append_of(&receive(&mut flights, 100, "a", &hex(UDP8)));
    assert_eq!(flights.in_flight(), 1);
    assert_eq!(flights.poll_timeout(), Some(MonoMillis(5_100)));
    flights.handle(MonoMillis(130), Input::Appended(id));
    assert_eq!(
        drain(&mut flights),
        [Command::Reply {
            peer: "a",
            bytes: REPLY,
            records: 1,
            latency_ms: 30,
        }]
    );
    assert_eq!(flights.in_flight(), 0);
    assert_eq!(flights.poll_timeout(), None);
    // An answer for it again, or for one never asked, does nothing.
    flights.handle(MonoMillis(140), Input::Appended(id));
    flights.handle(MonoMillis(140), Input::AppendFailed(DatagramId(9)));
    assert_eq!(drain(&mut flights), []);
}

#[test]
fn a_failed_append_is_not_answered() {
    let mut flights = Flights::new(CONFIG);
    let id = append_of(&receive(&mut flights, 0, "a", &hex(UDP8)));
    flights.handle(MonoMillis(10), Input::AppendFailed(id));
    assert_eq!(
        drain(&mut flights),
        [observed("a", Observation::AppendFailed)]
    );
    assert_eq!(flights.in_flight(), 0);
}

#[test]
fn an_append_not_confirmed_in_time_is_abandoned_and_never_answered() {
    let mut flights = Flights::new(CONFIG);
    let id = append_of(&receive(&mut flights, 0, "a", &hex(UDP8)));
    flights.handle(MonoMillis(4_999), Input::Tick);
    assert_eq!(drain(&mut flights), []);
    // Exactly at the deadline.
    flights.handle(MonoMillis(5_000), Input::Tick);
    assert_eq!(
        drain(&mut flights),
        [
            observed("a", Observation::NotConfirmedInTime),
            Command::Abandon(id),
        ]
    );
    assert_eq!(flights.poll_timeout(), None);
    // Still running until the shell says it ended: it counts toward the bound.
    assert_eq!(flights.in_flight(), 1);
    flights.handle(MonoMillis(5_000), Input::Tick);
    assert_eq!(drain(&mut flights), [], "abandoned once");
    // Confirmed after all: too late to answer (the tracker is resending it).
    flights.handle(MonoMillis(5_010), Input::Appended(id));
    assert_eq!(drain(&mut flights), []);
    assert_eq!(flights.in_flight(), 0);
    // Or its end is a failure, observed once already.
    let id = append_of(&receive(&mut flights, 6_000, "a", &hex(UDP8)));
    flights.handle(MonoMillis(11_000), Input::Tick);
    drain(&mut flights);
    flights.handle(MonoMillis(11_001), Input::AppendFailed(id));
    assert_eq!(drain(&mut flights), []);
}

#[test]
fn an_answer_at_the_deadline_is_too_late_even_before_the_tick() {
    let mut flights = Flights::new(CONFIG);
    let id = append_of(&receive(&mut flights, 0, "a", &hex(UDP8)));
    flights.handle(MonoMillis(5_000), Input::Appended(id));
    assert_eq!(
        drain(&mut flights),
        [observed("a", Observation::NotConfirmedInTime)]
    );
    let id = append_of(&receive(&mut flights, 0, "a", &hex(UDP8)));
    flights.handle(MonoMillis(6_000), Input::AppendFailed(id));
    assert_eq!(
        drain(&mut flights),
        [observed("a", Observation::NotConfirmedInTime)]
    );
    // One millisecond before it, in time.
    let id = append_of(&receive(&mut flights, 0, "a", &hex(UDP8)));
    flights.handle(MonoMillis(4_999), Input::Appended(id));
    assert!(matches!(
        drain(&mut flights)[..],
        [Command::Reply {
            latency_ms: 4_999,
            ..
        }]
    ));
    assert_eq!(flights.in_flight(), 0);
}

#[test]
fn each_deadline_comes_in_its_turn() {
    let mut flights = Flights::new(UdpConfig {
        max_in_flight: 3,
        ..CONFIG
    });
    let first = append_of(&receive(&mut flights, 0, "a", &hex(UDP8)));
    let second = append_of(&receive(&mut flights, 1_000, "b", &hex(UDP8)));
    let third = append_of(&receive(&mut flights, 2_000, "c", &hex(UDP8)));
    assert_eq!(flights.poll_timeout(), Some(MonoMillis(5_000)));
    flights.handle(MonoMillis(6_000), Input::Tick);
    let abandoned: Vec<_> = drain(&mut flights)
        .into_iter()
        .filter_map(|c| match c {
            Command::Abandon(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(abandoned, [first, second]);
    assert_eq!(flights.poll_timeout(), Some(MonoMillis(7_000)));
    flights.handle(MonoMillis(6_500), Input::Appended(third));
    assert!(matches!(
        drain(&mut flights)[..],
        [Command::Reply {
            peer: "c",
            latency_ms: 4_500,
            ..
        }]
    ));
}

#[test]
fn no_more_appends_run_at_once_than_the_bound() {
    let mut flights = Flights::new(CONFIG);
    assert!(flights.wants_read());
    let first = append_of(&receive(&mut flights, 0, "a", &hex(UDP8)));
    assert!(flights.wants_read());
    append_of(&receive(&mut flights, 0, "b", &hex(UDP8)));
    assert!(!flights.wants_read(), "two running, the bound");
    // An abandoned one still runs.
    flights.handle(MonoMillis(5_000), Input::Tick);
    drain(&mut flights);
    assert!(!flights.wants_read());
    flights.handle(MonoMillis(5_001), Input::AppendFailed(first));
    assert!(flights.wants_read());
}

#[test]
fn bad_and_refused_datagrams_are_observed_and_take_no_place() {
    let mut flights = Flights::new(CONFIG);
    let mut broken = hex(UDP8);
    broken[1] ^= 1;
    assert_eq!(
        receive(&mut flights, 0, "a", &broken),
        [observed(
            "a",
            Observation::Bad {
                reason: BadPacket::Framing,
                head: broken.clone(),
            }
        )]
    );
    let too_long = vec![0u8; CONFIG.max_bytes + 1];
    match &receive(&mut flights, 0, "a", &too_long)[..] {
        [Command::Observe {
            what: Observation::Bad { head, .. },
            ..
        }] => assert_eq!(head.len(), 64),
        other => panic!("{other:?}"),
    }
    flights.handle(
        MonoMillis(0),
        Input::Datagram {
            bytes: &hex(UDP8),
            peer: "b",
            received_at: UnixMillis(0),
            allow: &AllowList::Only(["1".to_owned()].into_iter().collect()),
        },
    );
    assert_eq!(
        drain(&mut flights),
        [observed(
            "b",
            Observation::DeviceRejected {
                imei: "352093086403655".to_owned(),
            }
        )]
    );
    assert_eq!(flights.in_flight(), 0);
    assert_eq!(flights.poll_timeout(), None);
}
