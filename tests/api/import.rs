//! `geotrack import gpx`: a track file becomes history, de-duplicated on re-import, and the
//! GPX export of the API reads back as the same points.

use std::path::PathBuf;

use crate::helpers::spawn_with;

#[tokio::test]
async fn a_gpx_track_imports_once_and_exports_back_as_the_same_points() {
    let app = spawn_with(|_| {}).await;
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpx/track-1.1-garmin-extensions.gpx");
    let xml = std::fs::read_to_string(&file).expect("fixture");
    let points = tracker::gpx::parse(&xml).expect("fixture parses");
    let timed: Vec<_> = points.iter().filter(|p| p.time.is_some()).collect();
    assert!(
        !timed.is_empty() && timed.len() < points.len(),
        "the fixture has points with and without time"
    );

    let config = geotrack::Config {
        database_url: app.db_url.clone(),
        ..geotrack::Config::default()
    };
    let first = geotrack::import::gpx(&config, &file, "hiker")
        .await
        .expect("import");
    assert_eq!(first.points, points.len());
    assert_eq!(first.stored, timed.len() as u64);
    assert_eq!(
        first.rejected,
        points.len() - timed.len(),
        "points without time are skipped"
    );
    let second = geotrack::import::gpx(&config, &file, "hiker")
        .await
        .expect("re-import");
    assert_eq!((second.stored, second.duplicates), (0, timed.len() as u64));
    assert_eq!(app.stored().await, timed.len() as i64);

    let from = timed.iter().filter_map(|p| p.time).min().expect("time");
    let to = timed.iter().filter_map(|p| p.time).max().expect("time") + chrono::Duration::seconds(1);
    let path = format!(
        "/api/v1/devices/hiker/track?format=gpx&from={}&to={}",
        from.timestamp(),
        to.timestamp()
    );
    let exported = app.get(&path).await.text().await.expect("gpx");
    let round_trip = tracker::gpx::parse(&exported).expect("the export is GPX");
    assert_eq!(round_trip.len(), timed.len());
    for (original, back) in timed.iter().zip(&round_trip) {
        assert_eq!(
            (original.lon, original.lat, original.ele, original.time),
            (back.lon, back.lat, back.ele, back.time)
        );
    }
    app.stop().await;
}
