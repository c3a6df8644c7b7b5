//! The same cross-node fan-out on a 3-master Redis Cluster with `--redis-cluster`
//! (sharded pub/sub).

use std::time::Duration;

use serde_json::json;

use crate::helpers::two_nodes;
use crate::redis_server::{available, cli, RedisCluster};

#[tokio::test]
async fn on_a_redis_cluster_a_notify_reaches_every_member_on_both_nodes_once() {
    if !available("redis cluster fan-out") {
        return;
    }
    let cluster = RedisCluster::start();
    let cluster_mode = |c: &mut herald::Config| c.redis_cluster = true;
    let (a, b) = two_nodes(&cluster.urls(), cluster_mode).await;
    let groups = ["room:1", "room:2", "room:3", "room:4"];
    let mut clients = Vec::new();
    for group in groups {
        for node in [&a, &b] {
            clients.push((group, node.ws(&format!("/ws/{group}")).await));
        }
    }
    // Sharded channels: each group's channel lives on the shard owning its hash slot.
    let shard_channels: Vec<String> = cluster
        .servers
        .iter()
        .flat_map(|s| {
            cli(s.port, &["PUBSUB", "SHARDCHANNELS", "herald:*"])
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    for group in groups {
        assert!(
            shard_channels.contains(&format!("herald:{{{group}}}")),
            "{group} in {shard_channels:?}"
        );
    }
    for (i, group) in groups.iter().enumerate() {
        let via = if i % 2 == 0 { &a } else { &b };
        for seq in 1..=3u64 {
            let reply = via.notify_ok(group, "e", json!(seq)).await;
            assert_eq!(reply["offset"], seq);
        }
    }
    for (_, ws) in &mut clients {
        ws.expect_offsets(1..=3).await;
        ws.expect_silence(Duration::from_millis(200)).await;
    }
    let res = b.close_group("room:1", json!({"code": 4000})).await;
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["closed"], 2);
}
