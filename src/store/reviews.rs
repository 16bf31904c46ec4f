//! Access reviews: campaigns, their items (one per grant) and the owners' cards.

use sqlx::FromRow;

use super::{Store, StoreError, Tx};

/// One grant under review.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct ReviewItem {
    pub id: String,
    pub review_id: String,
    pub grant_id: String,
    pub subject_email: String,
    pub entitlement: String,
    /// `keep`, `revoke`, or None while unanswered.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

/// A review campaign.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Review {
    pub id: String,
    pub app: String,
    pub started_by: String,
    pub started_at: i64,
    pub due_at: i64,
    pub escalated_at: Option<i64>,
}

/// Where an owner's card for an item is.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReviewCard {
    pub item_id: String,
    pub owner_email: String,
    pub platform: String,
    pub chat_user_id: Option<String>,
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
}

const ITEM: &str =
    "id, review_id, grant_id, subject_email, entitlement, decision, decided_by, decided_at";

impl Tx {
    /// Starts a campaign.
    pub async fn insert_review(&mut self, r: &Review) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reviews (id, app, started_by, started_at, due_at) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(&r.id)
        .bind(&r.app)
        .bind(&r.started_by)
        .bind(r.started_at)
        .bind(r.due_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Adds a grant to a campaign.
    pub async fn insert_review_item(&mut self, i: &ReviewItem) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO review_items (id, review_id, grant_id, subject_email, entitlement) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(&i.id)
        .bind(&i.review_id)
        .bind(&i.grant_id)
        .bind(&i.subject_email)
        .bind(&i.entitlement)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Records that `owner` is asked about an item.
    pub async fn insert_review_card(
        &mut self,
        item_id: &str,
        owner: &str,
        platform: &str,
        chat_user_id: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO review_cards (item_id, owner_email, platform, chat_user_id) VALUES ($1,$2,$3,$4)")
            .bind(item_id)
            .bind(owner)
            .bind(platform)
            .bind(chat_user_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Where an owner's card went.
    pub async fn set_review_card_message(
        &mut self,
        item_id: &str,
        owner: &str,
        user: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE review_cards SET chat_user_id = $1, channel_id = $2, message_ts = $3 WHERE item_id = $4 AND owner_email = $5",
        )
        .bind(user)
        .bind(channel)
        .bind(ts)
        .bind(item_id)
        .bind(owner)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Decides an item once (compare-and-set on an empty decision). Returns whether this call did.
    pub async fn decide_review_item(
        &mut self,
        item_id: &str,
        decision: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE review_items SET decision = $1, decided_by = $2, decided_at = $3 WHERE id = $4 AND decision IS NULL",
        )
        .bind(decision)
        .bind(by)
        .bind(now_ms)
        .bind(item_id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a campaign escalated, once.
    pub async fn mark_review_escalated(
        &mut self,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE reviews SET escalated_at = $1 WHERE id = $2 AND escalated_at IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// A campaign.
    pub async fn review(&self, id: &str) -> Result<Option<Review>, StoreError> {
        Ok(sqlx::query_as("SELECT id, app, started_by, started_at, due_at, escalated_at FROM reviews WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.read_conn().await?)
            .await?)
    }

    /// Campaigns past their due date and not yet escalated.
    pub async fn overdue_reviews(&self, now_ms: i64) -> Result<Vec<Review>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, app, started_by, started_at, due_at, escalated_at FROM reviews WHERE due_at <= $1 AND escalated_at IS NULL",
        )
        .bind(now_ms)
        .fetch_all(&mut *self.read_conn().await?)
        .await?)
    }

    /// One item.
    pub async fn review_item(&self, id: &str) -> Result<Option<ReviewItem>, StoreError> {
        let sql = format!("SELECT {ITEM} FROM review_items WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *self.read_conn().await?)
            .await?)
    }

    /// Every item of a campaign.
    pub async fn review_items(&self, review_id: &str) -> Result<Vec<ReviewItem>, StoreError> {
        let sql = format!("SELECT {ITEM} FROM review_items WHERE review_id = $1 ORDER BY subject_email, entitlement, id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(review_id)
            .fetch_all(&mut *self.read_conn().await?)
            .await?)
    }

    /// The owners' cards of an item.
    pub async fn review_cards(&self, item_id: &str) -> Result<Vec<ReviewCard>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT item_id, owner_email, platform, chat_user_id, channel_id, message_ts FROM review_cards WHERE item_id = $1",
        )
        .bind(item_id)
        .fetch_all(&mut *self.read_conn().await?)
        .await?)
    }

    /// Active grants of an app (every entitlement).
    pub async fn active_grants_of_app(
        &self,
        app: &str,
    ) -> Result<Vec<super::grants::GrantRecord>, StoreError> {
        let mut out = Vec::new();
        let ents: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT entitlement FROM grants WHERE app = $1 AND state = 'active'",
        )
        .bind(app)
        .fetch_all(&mut *self.read_conn().await?)
        .await?;
        for e in ents {
            out.extend(
                self.active_grants_for(app, &e)
                    .await?
                    .into_iter()
                    .filter(|g| g.state == "active"),
            );
        }
        Ok(out)
    }
}

impl Tx {
    /// Records what the directory says about a person now.
    pub async fn upsert_snapshot(
        &mut self,
        email: &str,
        department: Option<&str>,
        manager: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO directory_snapshot (email, department, manager, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO UPDATE SET department = excluded.department, manager = excluded.manager, seen_at = excluded.seen_at",
        )
        .bind(email)
        .bind(department)
        .bind(manager)
        .bind(now_ms)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl Store {
    /// What the directory said about each person last time: email → (department, manager).
    pub async fn snapshot(
        &self,
    ) -> Result<std::collections::HashMap<String, (Option<String>, Option<String>)>, StoreError>
    {
        let rows: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT email, department, manager FROM directory_snapshot")
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
        Ok(rows.into_iter().map(|(e, d, m)| (e, (d, m))).collect())
    }
}
