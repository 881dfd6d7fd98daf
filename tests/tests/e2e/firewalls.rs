//! Commentators behind firewalls: Chromium in a network namespace of the test's own
//! whose nftables drops every UDP datagram, as a hospital network that lets only
//! TCP out. It reaches the server over ICE-TCP, and where direct TCP to the media
//! port is not offered either, through a TURN server over TLS (coturn, configured as
//! `docs/deploy.md` says).

use std::time::Duration;

use anyhow::{Context, Result};
use casecast_signaling::Role;
use casecast_tests::browser::Browser;
use casecast_tests::coturn::Coturn;
use casecast_tests::net::Namespace;
use casecast_tests::*;
use serde_json::{Value, json};

use super::page_stats;

/// The selected candidate pair's local side, as the page reads it from `getStats()`.
fn media_path(page: &Browser) -> Value {
    page_stats(page)["path"].clone()
}

fn wait_for_feed(page: &Browser, what: &str) -> Result<()> {
    wait_for(what, Duration::from_secs(60), || page_stats(page)["feedFramesDecoded"].as_f64().filter(|&n| n > 10.0))
        .map_err(|e| anyhow::anyhow!("{e}; stats: {}", page_stats(page)))?;
    Ok(())
}

#[test]
fn a_commentator_whose_network_drops_udp_gets_the_feed_over_ice_tcp() -> Result<()> {
    let ns = Namespace::new()?;
    ns.block_udp()?;
    let host = ns.host.to_string();
    let tls_listen = format!("{host}:{}", free_tcp_port());
    let server = Server::demo_at(&host, &["--program", "false", "--tls-self-signed", &host, "--tls-listen", &tls_listen])?;
    server.wait_for_feed()?;
    let page = Browser::start_in(&ns, &["--ignore-certificate-errors"])?;
    page.join_room(&format!("https://{tls_listen}/room/demo?token={}", server.token("demo", Role::Commentator, "Dr. T")))?;
    wait_for_feed(&page, "the surgery feed to decode with UDP blocked")?;
    let path = media_path(&page);
    assert_eq!(path["protocol"], json!("tcp"), "{path}");
    // Chromium's active TCP candidate shows as peer-reflexive once connected (its
    // real port is learned then); either way straight to the server, not relayed.
    assert!(path["type"] == json!("host") || path["type"] == json!("prflx"), "ICE-TCP straight to the server: {path}");
    assert!(server.metric("casecast_ice_tcp_connections").unwrap_or(0.0) >= 1.0);
    Ok(())
}

#[test]
fn a_commentator_behind_a_tls_only_firewall_is_relayed_by_turn_and_heard() -> Result<()> {
    const TURN_SECRET: &str = "turn-shared-secret-0123456789";
    let ns = Namespace::new()?;
    ns.block_udp()?;
    let host = ns.host.to_string();
    // TURN over TLS only, relaying to the server's media address alone.
    let turn = Coturn::start_tls(&host, TURN_SECRET, &host)?;
    let turns = format!("turns:{host}:{}?transport=tcp", turn.tls_port);
    let tls_listen = format!("{host}:{}", free_tcp_port());
    // No ICE-TCP: from the namespace, only the TURN server's TLS port carries media.
    let server = Server::demo_at(
        &host,
        &["--program", "false", "--tls-self-signed", &host, "--tls-listen", &tls_listen, "--ice-tcp", "false", "--turn-urls", &turns, "--turn-secret", TURN_SECRET],
    )?;
    // The relay goes to the server's media address and to nothing else.
    assert!(!turn.relays_to("192.0.2.7")?, "coturn relayed to an address that is not the server's");

    server.wait_for_feed()?;
    let inside = Browser::start_in(&ns, &["--ignore-certificate-errors"])?;
    inside.join_room(&format!("https://{tls_listen}/room/demo?token={}", server.token("demo", Role::Commentator, "Dr. Inside")))?;
    wait_for_feed(&inside, "the surgery feed to decode through the TURN relay")
        .with_context(|| format!("coturn log:\n{}", turn.log_text()))?;
    let path = media_path(&inside);
    assert_eq!(path["type"], json!("relay"), "{path}");
    assert_eq!(path["relayProtocol"], json!("tls"), "{path}");

    // A commentator on an open network hears the relayed one.
    let outside = Browser::start_with(&["--ignore-certificate-errors"])?;
    outside.join_room(&format!("https://{tls_listen}/room/demo?token={}", server.token("demo", Role::Commentator, "Dr. Outside")))?;
    wait_for("audio from the relayed commentator", Duration::from_secs(60), || {
        page_stats(&outside)["audioPacketsReceivedFromCommentators"].as_f64().filter(|&n| n > 50.0)
    })
    .map_err(|e| anyhow::anyhow!("{e}; stats: {}", page_stats(&outside)))?;
    // The TURN credentials name the participant, never the person.
    assert!(!turn.log_text().contains("Dr. Inside"));
    Ok(())
}
