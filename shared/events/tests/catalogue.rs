//! docs/EVENTS.md is the public catalogue: it must name every event type the schema has.

#[test]
fn the_catalogue_names_every_event_type() -> Result<(), std::io::Error> {
    let catalogue = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/EVENTS.md"))?;
    let missing: Vec<&str> = mainloop_events::ALL_EVENT_TYPES
        .iter()
        .copied()
        .filter(|name| !catalogue.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "docs/EVENTS.md does not list {missing:?}");
    Ok(())
}
