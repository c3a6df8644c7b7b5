//! The client commands against a real hub and memory broker, without a socket.

use clap::Parser;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::auth::Verifier;
use crate::config::Config;
use crate::hub::Outbound;
use crate::protocol::Offset;

const SECRET: &str = "commands-test-secret";

/// A node's state as the binary would build it from `args`.
fn node(args: &[&str]) -> AppState {
    let mut all = vec!["herald"];
    all.extend_from_slice(args);
    let config = Config::try_parse_from(all).unwrap();
    let verifier = Verifier::from_config(&config).unwrap();
    AppState::new(config, verifier)
}

/// A node that checks HS256 tokens signed with [`SECRET`].
fn auth_node(args: &[&str]) -> AppState {
    let mut all = vec!["--jwt-secret", SECRET];
    all.extend_from_slice(args);
    node(&all)
}

fn token(claims: Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::default(), &claims, &key).unwrap()
}

fn claims(sub: &str, exp: u64, groups: &[&str], publish: &[&str]) -> Value {
    json!({"sub": sub, "exp": exp, "groups": groups, "publish": publish})
}

fn in_ten_minutes() -> u64 {
    jsonwebtoken::get_current_timestamp() + 600
}

/// A connection's membership; with auth on, holding a token with `claims`.
fn connect(state: &AppState, claims: Option<Value>) -> Membership {
    let grant = claims.map(|c| {
        let verifier = state.verifier.as_ref().unwrap();
        let verified = verifier.verify(&token(c)).unwrap();
        let prefix = &state.config.personal_group_prefix;
        Grant::new(verified, prefix, verifier.leeway())
    });
    let member = Member::for_user(
        state.next_conn_id(),
        16,
        state.shutdown.clone(),
        grant.as_ref().map(|g| g.user().clone()),
    );
    Membership::new(state.clone(), member, grant)
}

async fn send(m: &mut Membership, frame: Value) -> Vec<ServerFrame> {
    m.on_frame(&frame.to_string()).await
}

/// The `error` code of a single error reply.
fn error_code(replies: &[ServerFrame]) -> &str {
    match replies {
        [ServerFrame::Error { error, .. }] => error,
        other => panic!("expected one error frame, got {other:?}"),
    }
}

/// The `subscribed` reply for `group` at `offset`, in the group's epoch on `state`.
async fn subscribed(state: &AppState, group: &str, offset: Offset) -> Vec<ServerFrame> {
    let epoch = state.broker.position(&g(group)).await.unwrap().epoch;
    vec![ServerFrame::Subscribed {
        group: group.into(),
        offset,
        epoch,
        recovered: None,
    }]
}

fn g(name: &str) -> GroupName {
    GroupName::parse(name).unwrap()
}

#[tokio::test]
async fn subscribe_joins_once_and_answers_with_the_group_offset() {
    let state = node(&[]);
    let mut m = connect(&state, None);
    let news = json!({"type": "subscribe", "group": "news"});

    assert_eq!(
        send(&mut m, news.clone()).await,
        subscribed(&state, "news", 0).await
    );
    let publication = Publication {
        group: g("news"),
        event: EventName::default_event(),
        offset: 0,
        epoch: Default::default(),
        users: None,
        data: serde_json::value::RawValue::from_string("1".into())
            .unwrap()
            .into(),
    };
    state.publish(publication).await.unwrap();
    assert_eq!(
        send(&mut m, news).await,
        subscribed(&state, "news", 1).await
    );
    assert_eq!(state.hub.subscribers(&g("news")), 1);
}

#[tokio::test]
async fn unsubscribe_leaves_and_is_answered_even_for_a_group_never_joined() {
    let state = node(&[]);
    let mut m = connect(&state, None);
    send(&mut m, json!({"type": "subscribe", "group": "news"})).await;

    for _ in 0..2 {
        let replies = send(&mut m, json!({"type": "unsubscribe", "group": "news"})).await;
        assert_eq!(
            replies,
            vec![ServerFrame::Unsubscribed {
                group: "news".into()
            }]
        );
        assert_eq!(state.hub.subscribers(&g("news")), 0);
    }
}

#[tokio::test]
async fn subscriptions_stop_at_max_subscriptions() {
    let state = node(&["--max-subscriptions", "2"]);
    let mut m = connect(&state, None);
    for group in ["a", "b"] {
        let replies = send(&mut m, json!({"type": "subscribe", "group": group})).await;
        assert_eq!(replies, subscribed(&state, group, 0).await);
    }
    let third = send(&mut m, json!({"type": "subscribe", "group": "c"})).await;
    assert_eq!(error_code(&third), "too_many_subscriptions");
    assert_eq!(state.hub.subscribers(&g("c")), 0);
}

#[tokio::test]
async fn refused_frames_get_one_error_frame_and_ping_a_pong() {
    let state = node(&[]);
    let mut m = connect(&state, None);
    assert_eq!(error_code(&m.on_frame("not json").await), "invalid_json");
    assert_eq!(
        error_code(&send(&mut m, json!({"type": "nope"})).await),
        "unknown_type"
    );
    let bad_name = json!({"type": "subscribe", "group": "bad name"});
    assert_eq!(error_code(&send(&mut m, bad_name).await), "invalid_group");
    let refresh = json!({"type": "refresh", "token": "x"});
    assert_eq!(error_code(&send(&mut m, refresh).await), "auth_disabled");
    assert_eq!(
        send(&mut m, json!({"type": "ping"})).await,
        vec![ServerFrame::Pong]
    );
}

#[tokio::test]
async fn publish_needs_the_flag_and_a_membership_then_reaches_the_members() {
    let off = node(&[]);
    let mut m = connect(&off, None);
    let publish = json!({"type": "publish", "group": "room", "data": {"n": 1}});
    assert_eq!(
        error_code(&send(&mut m, publish.clone()).await),
        "publish_disabled"
    );

    let state = node(&["--client-publish"]);
    let mut m = connect(&state, None);
    assert_eq!(
        error_code(&send(&mut m, publish.clone()).await),
        "not_subscribed"
    );
    send(&mut m, json!({"type": "subscribe", "group": "room"})).await;
    let bad_event = json!({"type": "publish", "group": "room", "event": "a b", "data": 1});
    assert_eq!(error_code(&send(&mut m, bad_event).await), "invalid_event");
    assert!(m.member().take().is_empty());

    assert_eq!(send(&mut m, publish).await, vec![]);
    let queued = Vec::from(m.member().take());
    let [Outbound::Frame(frame)] = &queued[..] else {
        panic!("expected one notification frame, got {queued:?}");
    };
    let notify: Value =
        serde_json::from_slice(&crate::protocol::wire::text_payload(frame)).unwrap();
    let epoch = state.broker.position(&g("room")).await.unwrap().epoch;
    assert_eq!(
        notify,
        json!({"type": "notify", "group": "room", "event": "message", "offset": 1, "epoch": epoch, "data": {"n": 1}})
    );
}

#[tokio::test]
async fn the_token_decides_which_groups_may_be_joined_and_published_to() {
    let state = auth_node(&["--client-publish"]);
    let mut m = connect(&state, Some(claims("7", in_ten_minutes(), &["news"], &[])));

    let sport = json!({"type": "subscribe", "group": "sport"});
    assert_eq!(error_code(&send(&mut m, sport).await), "forbidden");
    let news = json!({"type": "subscribe", "group": "news"});
    assert_eq!(
        send(&mut m, news).await,
        subscribed(&state, "news", 0).await
    );
    let publish = json!({"type": "publish", "group": "news", "data": 1});
    assert_eq!(error_code(&send(&mut m, publish).await), "forbidden");
}

#[tokio::test]
async fn refresh_leaves_the_groups_the_new_token_drops_and_moves_the_expiry() {
    let state = auth_node(&[]);
    let first_exp = in_ten_minutes();
    let mut m = connect(&state, Some(claims("7", first_exp, &["a", "b"], &[])));
    m.join_personal().await.unwrap();
    for group in ["a", "b"] {
        send(&mut m, json!({"type": "subscribe", "group": group})).await;
    }

    let later = first_exp + 60;
    let narrower = token(claims("7", later, &["a"], &[]));
    let replies = send(&mut m, json!({"type": "refresh", "token": narrower})).await;
    assert_eq!(
        replies,
        vec![
            ServerFrame::Unsubscribed { group: "b".into() },
            ServerFrame::Refreshed { exp: later }
        ]
    );
    assert_eq!(m.exp(), Some(later));
    assert_eq!(state.hub.subscribers(&g("a")), 1);
    assert_eq!(state.hub.subscribers(&g("b")), 0);
    // The personal group is the user's own, whatever the token lists.
    assert_eq!(state.hub.subscribers(&g("user:7")), 1);

    let other_user = token(claims("8", later, &["a"], &[]));
    let replies = send(&mut m, json!({"type": "refresh", "token": other_user})).await;
    assert_eq!(error_code(&replies), "forbidden");
    let replies = send(&mut m, json!({"type": "refresh", "token": "garbage"})).await;
    assert_eq!(error_code(&replies), "invalid_token");
    assert_eq!(m.exp(), Some(later));
}

#[tokio::test]
async fn leave_all_ends_the_member_and_leaves_every_group() {
    let state = auth_node(&[]);
    let mut m = connect(&state, Some(claims("7", in_ten_minutes(), &["*"], &[])));
    m.join_personal().await.unwrap();
    m.join(g("news")).await.unwrap();

    m.leave_all().await;
    for group in ["news", "user:7"] {
        assert_eq!(state.hub.subscribers(&g(group)), 0, "{group}");
    }
    let frame = bytes::Bytes::from_static(b"x");
    assert_eq!(m.member().try_deliver(&frame), crate::hub::Delivery::Gone);
}

/// The JSON of every frame queued for `m`.
fn queued_json(m: &Membership) -> Vec<Value> {
    m.member()
        .take()
        .into_iter()
        .map(|item| match item {
            Outbound::Frame(frame) => {
                serde_json::from_slice(&crate::protocol::wire::text_payload(&frame)).unwrap()
            }
            other => panic!("expected a frame, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_resume_queues_subscribed_then_exactly_what_was_missed() {
    let state = node(&[]);
    for n in 1..=3 {
        let publication = Publication {
            group: g("news"),
            event: EventName::default_event(),
            offset: 0,
            epoch: Default::default(),
            users: None,
            data: serde_json::value::RawValue::from_string(n.to_string())
                .unwrap()
                .into(),
        };
        state.publish(publication).await.unwrap();
    }
    let epoch = state.broker.position(&g("news")).await.unwrap().epoch;

    let mut m = connect(&state, None);
    let resume = json!({"type": "subscribe", "group": "news", "since": 1, "epoch": epoch});
    assert_eq!(
        send(&mut m, resume).await,
        vec![],
        "subscribed is queued, not replied"
    );
    let frames = queued_json(&m);
    assert_eq!(
        frames[0],
        json!({"type": "subscribed", "group": "news", "offset": 3, "epoch": epoch, "recovered": true})
    );
    let offsets: Vec<&Value> = frames[1..].iter().map(|f| &f["offset"]).collect();
    assert_eq!(offsets, [&json!(2), &json!(3)]);

    let mut other = connect(&state, None);
    let stale = json!({"type": "subscribe", "group": "news", "since": 1, "epoch": "old"});
    assert_eq!(send(&mut other, stale).await, vec![]);
    assert_eq!(
        queued_json(&other),
        [
            json!({"type": "subscribed", "group": "news", "offset": 3, "epoch": epoch, "recovered": false})
        ]
    );
    let bad = json!({"type": "subscribe", "group": "x", "since": 1, "epoch": "not valid"});
    assert_eq!(error_code(&send(&mut other, bad).await), "invalid_frame");
}
