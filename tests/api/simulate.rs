//! The fleet simulator against a real server: demo fences are drawn, every fix it sends is
//! accepted and stored, over the JSON batch endpoint, the OsmAnd protocol, and Teltonika and GT06
//! over TCP.

use tokio_util::sync::CancellationToken;
use tools::simulate::{self, Protocol, SimulateArgs};

use crate::helpers::{TestApp, spawn_app, spawn_with};

#[tokio::test]
async fn the_demo_fleet_draws_its_fences_and_every_fix_is_stored() {
    let app = spawn_app().await;
    let args = SimulateArgs {
        url: app.url(""),
        devices: 10,
        interval_s: 0.1,
        duration_s: 2,
        quiet: true,
        ..SimulateArgs::demo()
    };
    let report = simulate::run(&args, CancellationToken::new()).await.expect("run");
    assert!(report.sent >= 100, "{report}");
    assert_eq!(
        (report.accepted, report.rejected, report.failed_requests),
        (report.sent, 0, 0),
        "{report}"
    );
    let fences: Vec<String> = sqlx::query_scalar("SELECT id FROM fences ORDER BY id")
        .fetch_all(&app.db)
        .await
        .expect("fences");
    assert_eq!(fences, ["demo-bridge", "demo-depot", "demo-park", "demo-school"]);
    assert_eq!(app.stored().await, i64::try_from(report.sent).expect("count"));

    let osmand = SimulateArgs {
        protocol: Protocol::Osmand,
        demo: false,
        seed: 2,
        duration_s: 1,
        ..args
    };
    let report = simulate::run(&osmand, CancellationToken::new())
        .await
        .expect("run");
    assert!(report.accepted > 0 && report.failed_requests == 0, "{report}");
    app.stop().await;
}

#[tokio::test]
async fn the_fleet_drives_as_teltonika_trackers_over_tcp() {
    let app = spawn_with(|c| c.tcp.teltonika = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let tcp = app.teltonika;
    // Millisecond times: no two fixes share a device and a time.
    drives_over_tcp(
        app,
        Protocol::Teltonika,
        tcp,
        (0.1, 2),
        50,
        simulate::teltonika::imei,
    )
    .await;
}

#[tokio::test]
async fn the_fleet_drives_as_gt06_trackers_over_tcp() {
    let app = spawn_with(|c| c.tcp.gt06 = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let tcp = app.gt06;
    // GT06 times are whole seconds: fixes over a second apart never share one.
    drives_over_tcp(app, Protocol::Gt06, tcp, (1.1, 3), 10, simulate::gt06::imei).await;
}

/// Five vehicles driven over `protocol`'s listener at `tcp`, every `interval_s` for
/// `duration_s` (`timing`): at least `min_sent` fixes, each acknowledged, stored under the
/// IMEIs `imei` gives (acknowledged means stored). Stops the app.
async fn drives_over_tcp(
    app: TestApp,
    protocol: Protocol,
    tcp: Option<std::net::SocketAddr>,
    (interval_s, duration_s): (f64, u64),
    min_sent: usize,
    imei: fn(usize) -> String,
) {
    let args = SimulateArgs {
        url: app.url(""),
        tcp: tcp.map(|a| a.to_string()),
        protocol,
        devices: 5,
        interval_s,
        duration_s,
        quiet: true,
        demo: false,
        ..SimulateArgs::demo()
    };
    let report = simulate::run(&args, CancellationToken::new()).await.expect("run");
    assert!(report.sent >= min_sent, "{report}");
    assert_eq!(
        (report.accepted, report.failed_requests),
        (report.sent, 0),
        "{report}"
    );
    let devices: Vec<String> = sqlx::query_scalar("SELECT DISTINCT device FROM positions ORDER BY device")
        .fetch_all(&app.db)
        .await
        .expect("devices");
    let imeis: Vec<String> = (0..5).map(imei).collect();
    assert_eq!(devices, imeis);
    assert_eq!(app.stored().await, i64::try_from(report.accepted).expect("count"));
    app.stop().await;
}
