//! Fresh PostgreSQL databases, one per case, dropped afterwards.

use anyhow::Context as _;
use tokio_postgres::{Client, NoTls};

/// The server's administrative URL: `PLAZA_TEST_DATABASE_URL`, as for the tests.
pub fn admin_url() -> String {
    std::env::var("PLAZA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin_client(admin: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(admin, NoTls)
        .await
        .with_context(|| format!("PostgreSQL is not reachable at {admin}; run `make services` or set PLAZA_TEST_DATABASE_URL to a superuser URL"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Fails early, with a clear message, when PostgreSQL is not there.
pub async fn check_reachable(admin: &str) -> anyhow::Result<()> {
    admin_client(admin).await?.simple_query("SELECT 1").await.context("PostgreSQL does not answer")?;
    Ok(())
}

/// A database created for one case.
pub struct FreshDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

impl FreshDatabase {
    pub async fn create(admin: &str) -> anyhow::Result<Self> {
        let name = format!("plaza_bench_{}", uuid::Uuid::new_v4().simple());
        let url = database_url(admin, &name)?;
        admin_client(admin)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        Ok(Self { name, url, admin: admin.to_owned() })
    }

    /// Drops the database, closing whatever connections are still open on it.
    pub async fn drop_now(self) -> anyhow::Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin_client(&self.admin).await?.batch_execute(&sql).await.with_context(|| format!("cannot drop database {}", self.name))
    }
}

/// The admin URL with its database name replaced by `name` (query parameters kept).
fn database_url(admin: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).with_context(|| format!("{admin} is not a postgres:// URL"))?;
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(database_url("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(), "postgres://postgres@127.0.0.1:5432/x");
        assert_eq!(database_url("postgres://u:p@h/postgres?sslmode=disable", "x").unwrap(), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(database_url("postgresql://h:5433", "x").unwrap(), "postgresql://h:5433/x");
        assert!(database_url("host=localhost", "x").is_err());
    }
}
