//! Helpers shared by the adapter test suites: a fresh PostgreSQL database per test
//! and a fresh temporary directory for SQLite.

#![allow(dead_code)]

pub mod broker;

use tokio_postgres::NoTls;

/// The server the tests use; `make services` starts one on 127.0.0.1:5432.
pub fn admin_url() -> String {
    std::env::var("PLAZA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database with a unique name and returns its URL. Databases are
/// named `plaza_test_*`; `make clean-test-dbs` drops leftovers.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let (client, connection) =
        tokio_postgres::connect(&admin, NoTls).await.unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin} ({e}); run `make services`"));
    tokio::spawn(connection);
    let name = format!("plaza_test_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
