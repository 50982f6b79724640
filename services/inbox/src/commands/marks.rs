//! What the person did to queue items, kept apart from the rows the projection derives
//! (`queue_item_marks`): a rebuild of the read models replays TASKS into new rows and applies
//! these again. Written in the same transaction as the item, copied from it.

use sqlx::PgConnection;

/// Records the items' read time and answer as they now stand.
pub(super) async fn keep(tx: &mut PgConnection, item_ids: &[String]) -> Result<(), sqlx::Error> {
    if item_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO queue_item_marks (item_id, read_at, response, responded_at) \
         SELECT id, read_at, response, CASE WHEN response IS NOT NULL THEN responded_at END \
         FROM queue_items WHERE id = ANY($1) \
         ON CONFLICT (item_id) DO UPDATE SET read_at = excluded.read_at, \
            response = excluded.response, responded_at = excluded.responded_at",
    )
    .bind(item_ids)
    .execute(tx)
    .await?;
    Ok(())
}
