//! The operators' side of every process: `plaza admin grant|revoke` (roles, recorded as
//! events), the JSON routes under `/admin` and the ops page at `GET /admin`.
//!
//! Every route needs a user with the `admin` role: a bearer token, or the cookie the
//! page's login form sets (HttpOnly, SameSite=Strict; a form POST must also come from
//! this origin). Roles are read from the user's stream on each request, so a revoke
//! takes effect at once. The page is plain server-rendered HTML with forms: no script,
//! nothing from elsewhere, and it reloads itself every 5 s.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use clap::Subcommand;
use plaza_commands::{Accounts, CommandContext, CommandError};
use plaza_domain::EventStore;
use plaza_domain::accounts::Role;
use plaza_edge::Tokens;
use plaza_infra::Config;
use plaza_projections::dead_letters::{self, DeadLetter, Selection};
use plaza_projections::status::ProjectionStatus;
use plaza_projections::{Projection, ReadModelDb, generations};
use plaza_write_api::admin_forms::{Which, decode_login, decode_which};
use plaza_write_api::login::LoginKeys;
use plaza_write_api::{ApiError, LoginThrottle};
use serde_json::json;

/// The cookie the login form sets.
const COOKIE: &str = "plaza_admin";

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Give USERNAME a role (recorded as a RoleGranted event); `admin` may use /admin.
    Grant {
        username: String,
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Take a role back from USERNAME (a RoleRevoked event); effective at once.
    Revoke {
        username: String,
        #[arg(long, default_value = "admin")]
        role: String,
    },
}

pub async fn command(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let (username, role, grant) = match &command {
        AdminCommand::Grant { username, role } => (username, role, true),
        AdminCommand::Revoke { username, role } => (username, role, false),
    };
    let role = Role::parse(role).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = plaza_infra::open_event_store(config).await?;
    let accounts = Accounts::new(store);
    let ctx = CommandContext { correlation_id: Some(uuid::Uuid::now_v7()), ..Default::default() };
    match accounts.set_role(username, role, grant, &ctx).await {
        Ok((user_id, outcome)) => {
            let done = if grant { "granted" } else { "revoked" };
            println!("{}: role {} {done} (user {user_id}, position {})", username.trim().to_lowercase(), role.as_str(), outcome.position);
            Ok(())
        }
        Err(CommandError::Domain(plaza_domain::DomainError::UserNotFound)) => anyhow::bail!("no user named {username:?}"),
        Err(error) => Err(error.into()),
    }
}

/// What the admin routes work with.
#[derive(Clone)]
pub struct Admin {
    pub accounts: Accounts,
    pub tokens: Tokens,
    pub db: Arc<dyn ReadModelDb>,
    pub store: Arc<dyn EventStore>,
    pub projections: Vec<Arc<dyn Projection>>,
    pub config: Arc<Config>,
    /// The roles this process runs, for the page.
    pub process_roles: Vec<String>,
    pub logins: Arc<LoginThrottle>,
    /// The store's head, sampled every 5 s, for the event rate.
    pub heads: Arc<Mutex<VecDeque<(Instant, u64)>>>,
}

impl Admin {
    /// Samples the store's head every 5 s (kept for a minute) until shutdown.
    pub fn sample_heads(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
        let (store, heads) = (self.store.clone(), self.heads.clone());
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            while !*shutdown.borrow() {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.changed() => break,
                }
                if let Ok(head) = store.head().await {
                    let mut heads = heads.lock().expect("heads lock");
                    heads.push_back((Instant::now(), head));
                    while heads.front().is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(65)) {
                        heads.pop_front();
                    }
                }
            }
        }
    }

    /// Events appended per second over the samples of the last minute.
    fn event_rate(&self) -> Option<f64> {
        let heads = self.heads.lock().expect("heads lock");
        let ((first_at, first), (last_at, last)) = (heads.front()?, heads.back()?);
        let seconds = last_at.duration_since(*first_at).as_secs_f64();
        (seconds > 0.0).then(|| (last - first) as f64 / seconds)
    }

    async fn statuses(&self) -> anyhow::Result<Vec<ProjectionStatus>> {
        crate::ops::statuses_of(&self.config, &self.projections, self.db.as_ref(), self.store.as_ref()).await
    }

    fn projection(&self, name: &str) -> Result<&Arc<dyn Projection>, ApiError> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "projection_not_found", format!("no projection named {name:?}")))
    }
}

/// Why a request may not use the admin routes.
enum Refusal {
    /// No token, or not a valid one.
    Unauthenticated,
    /// A valid token of a user without the admin role.
    Forbidden,
    /// A form posted from another origin with the cookie.
    CrossOrigin,
    Failed(String),
}

impl Refusal {
    fn api(self) -> ApiError {
        match self {
            Self::Unauthenticated => ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "an admin's bearer token is required"),
            Self::Forbidden => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this needs the admin role"),
            Self::CrossOrigin => ApiError::new(StatusCode::FORBIDDEN, "cross_origin", "admin forms are only accepted from this origin"),
            Self::Failed(error) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", error),
        }
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Whether a browser says the request came from another site.
fn cross_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) => origin != format!("http://{host}") && origin != format!("https://{host}"),
        None => headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|site| site != "same-origin" && site != "none"),
    }
}

/// The admin user a request comes from.
async fn admin_user(admin: &Admin, headers: &HeaderMap, posting: bool) -> Result<uuid::Uuid, Refusal> {
    let (token, by_cookie) = match (plaza_edge::bearer(headers), cookie_token(headers)) {
        (Some(token), _) => (token, false),
        (None, Some(token)) => (token, true),
        (None, None) => return Err(Refusal::Unauthenticated),
    };
    let user_id = admin.tokens.verify(token).map_err(|_| Refusal::Unauthenticated)?;
    if posting && by_cookie && cross_origin(headers) {
        return Err(Refusal::CrossOrigin);
    }
    let roles = admin.accounts.roles(user_id).await.map_err(|e| Refusal::Failed(e.to_string()))?;
    if roles.iter().any(|r| r == Role::Admin.as_str()) { Ok(user_id) } else { Err(Refusal::Forbidden) }
}

pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/projections", get(projections_json))
        .route("/admin/dead-letters", get(dead_letters_json))
        .route("/admin/projections/{name}/pause", post(pause))
        .route("/admin/projections/{name}/resume", post(resume))
        .route("/admin/projections/{name}/dead-letters/retry", post(retry))
        .route("/admin/projections/{name}/dead-letters/skip", post(skip))
        .with_state(admin)
}

async fn projections_json(State(admin): State<Admin>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin_user(&admin, &headers, false).await.map_err(Refusal::api)?;
    let statuses = admin.statuses().await.map_err(|e| Refusal::Failed(e.to_string()).api())?;
    Ok(axum::Json(statuses).into_response())
}

async fn dead_letters_json(State(admin): State<Admin>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin_user(&admin, &headers, false).await.map_err(Refusal::api)?;
    let letters = dead_letters::list(admin.db.as_ref()).await.map_err(|e| Refusal::Failed(e.to_string()).api())?;
    Ok(axum::Json(letters).into_response())
}

/// Reads which dead letters a form (from the page: answered with a redirect back to
/// it) or a JSON body names.
async fn which(request: Request) -> Result<(Selection, bool), ApiError> {
    let form = is_form(request.headers());
    let bytes = axum::body::to_bytes(request.into_body(), 4096)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is limited to 4 KiB"))?;
    let selection = match decode_which(&bytes, form).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e))? {
        Which::One(position) => Selection::One(position),
        Which::All => Selection::All,
    };
    Ok((selection, form))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
}

fn back_to_page() -> Response {
    Redirect::to("/admin").into_response()
}

async fn retry(State(admin): State<Admin>, Path(name): Path<String>, request: Request) -> Result<Response, ApiError> {
    admin_user(&admin, request.headers(), true).await.map_err(Refusal::api)?;
    let projection = admin.projection(&name)?.clone();
    let (selection, form) = which(request).await?;
    let outcome = match plaza_infra::processes(&admin.config, admin.store.clone()).into_iter().find(|p| p.name() == name) {
        Some(process) => plaza_projections::processes::retry(admin.db.as_ref(), admin.store.as_ref(), process.as_ref(), selection).await,
        None => dead_letters::retry(admin.db.as_ref(), admin.store.as_ref(), projection.as_ref(), selection).await,
    }
    .map_err(|e| Refusal::Failed(e.to_string()).api())?;
    Ok(if form { back_to_page() } else { axum::Json(outcome).into_response() })
}

async fn skip(State(admin): State<Admin>, Path(name): Path<String>, request: Request) -> Result<Response, ApiError> {
    admin_user(&admin, request.headers(), true).await.map_err(Refusal::api)?;
    admin.projection(&name)?;
    let (selection, form) = which(request).await?;
    let skipped = dead_letters::skip(admin.db.as_ref(), &name, selection).await.map_err(|e| Refusal::Failed(e.to_string()).api())?;
    Ok(if form { back_to_page() } else { axum::Json(json!({ "skipped": skipped })).into_response() })
}

async fn pause(State(admin): State<Admin>, Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    set_paused(admin, name, headers, true).await
}

async fn resume(State(admin): State<Admin>, Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    set_paused(admin, name, headers, false).await
}

async fn set_paused(admin: Admin, name: String, headers: HeaderMap, paused: bool) -> Result<Response, ApiError> {
    admin_user(&admin, &headers, true).await.map_err(Refusal::api)?;
    admin.projection(&name)?;
    generations::set_paused(admin.db.as_ref(), &name, paused).await.map_err(|e| Refusal::Failed(e.to_string()).api())?;
    Ok(if is_form(&headers) { back_to_page() } else { axum::Json(json!({ "projection": name, "paused": paused })).into_response() })
}

async fn login_form() -> Html<String> {
    Html(login_page(""))
}

async fn login(State(admin): State<Admin>, request: Request) -> Response {
    let ip = plaza_write_api::limits::request_ip(&request, admin.config.trusted_proxy_hops);
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), 4096).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, Html(login_page("That form is too large."))).into_response();
    };
    let Ok((login, password)) = decode_login(&bytes) else {
        return (StatusCode::BAD_REQUEST, Html(login_page("Give a username (or email) and a password."))).into_response();
    };
    let account = match admin.accounts.find_login(&login).await {
        Ok(account) => account,
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, Html(login_page(&format!("Cannot check logins now: {error}")))).into_response(),
    };
    let keys = LoginKeys {
        account: match &account {
            Some(account) => format!("user:{}", account.user_id),
            None => format!("login:{}", login.trim().to_lowercase()),
        },
        ip: format!("ip:{ip}"),
    };
    let wait = admin.logins.wait(&keys).await;
    if wait > Duration::ZERO {
        let message = format!("Too many failed logins: try again in {} s.", wait.as_secs().max(1));
        return (StatusCode::TOO_MANY_REQUESTS, Html(login_page(&message))).into_response();
    }
    let user_id = match admin.accounts.check_password(account.as_ref(), &password).await {
        Ok(user_id) => user_id,
        Err(_) => {
            admin.logins.failed(&keys).await;
            return (StatusCode::UNAUTHORIZED, Html(login_page("Wrong login or password."))).into_response();
        }
    };
    admin.logins.succeeded(&keys).await;
    match admin.accounts.roles(user_id).await {
        Ok(roles) if roles.iter().any(|r| r == Role::Admin.as_str()) => {}
        Ok(_) => return (StatusCode::FORBIDDEN, Html(login_page("That user is not an admin."))).into_response(),
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, Html(login_page(&format!("Cannot check roles now: {error}")))).into_response(),
    }
    let cookie = format!("{COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict", admin.tokens.issue(user_id));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin/login")).into_response()
}

async fn page(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    match admin_user(&admin, &headers, false).await {
        Ok(_) => {}
        Err(Refusal::Unauthenticated) => return Redirect::to("/admin/login").into_response(),
        Err(Refusal::Forbidden | Refusal::CrossOrigin) => {
            return (StatusCode::FORBIDDEN, Html(shell("Forbidden", "<p>This page needs the admin role.</p>", false))).into_response();
        }
        Err(Refusal::Failed(error)) => return (StatusCode::SERVICE_UNAVAILABLE, Html(shell("Unavailable", &escape(&error), true))).into_response(),
    }
    let statuses = admin.statuses().await;
    let letters = dead_letters::list(admin.db.as_ref()).await;
    let mut body = String::new();
    let rate = admin.event_rate().map_or("measuring…".to_owned(), |rate| format!("{rate:.1} events/s over the last minute"));
    let _ = write!(
        body,
        "<section><h2>This process</h2><p>Roles: <b>{}</b>. Event log: {}.</p><form method=post action=/admin/logout><button>Log out</button></form></section>",
        escape(&admin.process_roles.join(", ")),
        escape(&rate)
    );
    match statuses {
        Ok(statuses) => body += &projections_table(&statuses),
        Err(error) => {
            let _ = write!(body, "<p class=error>Cannot read the projections: {}</p>", escape(&error.to_string()));
        }
    }
    match letters {
        Ok(letters) => body += &dead_letters_table(&letters),
        Err(error) => {
            let _ = write!(body, "<p class=error>Cannot read the dead letters: {}</p>", escape(&error.to_string()));
        }
    }
    Html(shell("Plaza operations", &body, true)).into_response()
}

fn projections_table(statuses: &[ProjectionStatus]) -> String {
    let mut out = String::from(
        "<section><h2>Projections</h2><table id=projections><tr><th>Projection</th><th>State</th><th>Version</th><th>Generation</th>\
         <th>Applied</th><th>Head</th><th>Lag</th><th>Lag (s)</th><th>Events/s</th><th>Dead letters</th><th>Last error</th><th></th></tr>",
    );
    for s in statuses {
        let action = if s.paused { "resume" } else { "pause" };
        let _ = write!(
            out,
            "<tr data-projection=\"{name}\"><td>{name}</td><td class=\"state {state}\">{state}</td><td>{version}</td><td>{generation}</td>\
             <td>{applied}</td><td>{head}</td><td>{lag}</td><td>{lag_s:.1}</td><td>{rate:.1}</td><td>{dead}</td><td>{error}</td>\
             <td><form method=post action=\"/admin/projections/{name}/{action}\"><button>{action}</button></form></td></tr>",
            name = escape(&s.name),
            state = s.state,
            version = s.version.map_or("-".into(), |v| v.to_string()),
            generation = s.generation.map_or("-".into(), |g| g.to_string()),
            applied = s.applied_position,
            head = s.head_position,
            lag = s.lag_events,
            lag_s = s.lag_seconds,
            rate = s.events_per_sec,
            dead = s.dead_letters,
            error = escape(s.last_error.as_deref().unwrap_or("")),
        );
    }
    out + "</table></section>"
}

fn dead_letters_table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "<section><h2>Dead letters</h2><p id=no-dead-letters>None.</p></section>".into();
    }
    let mut out = String::from(
        "<section><h2>Dead letters</h2><table id=dead-letters><tr><th>Projection</th><th>Position</th><th>State</th><th>Event</th>\
         <th>Stream</th><th>Attempts</th><th>Error</th><th></th></tr>",
    );
    for d in letters {
        let _ = write!(
            out,
            "<tr data-position=\"{position}\"><td>{projection}</td><td>{position}</td><td>{state}</td><td>{event}</td><td>{stream}</td>\
             <td>{attempts}</td><td>{error}</td><td>\
             <form method=post action=\"/admin/projections/{projection}/dead-letters/retry\"><input type=hidden name=id value={position}><button class=retry>Retry</button></form>\
             <form method=post action=\"/admin/projections/{projection}/dead-letters/skip\"><input type=hidden name=id value={position}><button class=skip>Skip</button></form>\
             </td></tr>",
            projection = escape(&d.projection),
            position = d.position,
            state = escape(&d.state),
            event = escape(&d.event_type),
            stream = escape(&d.stream_id),
            attempts = d.attempts,
            error = escape(&d.error),
        );
    }
    out + "</table></section>"
}

fn login_page(message: &str) -> String {
    let message = if message.is_empty() { String::new() } else { format!("<p class=error>{}</p>", escape(message)) };
    shell(
        "Plaza operations: log in",
        &format!(
            "{message}<form method=post action=/admin/login><label>Username or email <input name=login autocomplete=username required></label>\
             <label>Password <input name=password type=password autocomplete=current-password required></label><button>Log in</button></form>"
        ),
        false,
    )
}

/// A page: inline style only, optionally reloading itself every 5 s.
fn shell(title: &str, body: &str, refresh: bool) -> String {
    let refresh = if refresh { "<meta http-equiv=refresh content=5>" } else { "" };
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">{refresh}<title>{title}</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
         form{{display:inline}}label{{display:block;margin:.5em 0}}.error{{color:#b00}}.state.running{{color:#070}}.state.stalled,.state.failed{{color:#b00;font-weight:bold}}</style>\
         </head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    )
}

/// Text made safe inside HTML (elements and quoted attributes).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(escape("<b a=\"x\">&'</b>"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;&lt;/b&gt;");
    }

    #[test]
    fn the_token_comes_from_the_bearer_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; plaza_admin=tok; c=d".parse().unwrap());
        assert_eq!(cookie_token(&headers), Some("tok"));
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(plaza_edge::bearer(&headers), Some("xyz"));
    }

    #[test]
    fn forms_from_another_origin_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(!cross_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(!cross_origin(&headers));
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(cross_origin(&headers));
    }
}
