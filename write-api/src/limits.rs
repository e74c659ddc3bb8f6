//! Rate limits on commands: the middleware on every command route. The buckets are
//! [`plaza_edge::limits`]'s; commands have their own, apart from GraphQL's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plaza_edge::{client_ip, retry_after_secs};

use crate::extract::Verified;
use crate::{ApiError, WriteApi};

/// The client's address as the rate limits see it.
pub fn request_ip(request: &Request, proxy_hops: usize) -> IpAddr {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    client_ip(request.headers(), peer, proxy_hops).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Middleware on the command routes.
pub async fn limit(State(api): State<Arc<WriteApi>>, mut request: Request, next: Next) -> Response {
    let ip = request_ip(&request, api.proxy_hops);
    let verified = plaza_edge::bearer(request.headers()).map(|token| api.tokens.verify(token));
    // An invalid token counts against the IP only; the handler then answers 401.
    let user = verified.and_then(Result::ok);
    if let Some(verified) = verified {
        request.extensions_mut().insert(Verified(verified));
    }
    match api.limiter.acquire(user, ip).await {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            plaza_edge::body::discard(request, crate::MAX_BODY_BYTES).await;
            let seconds = retry_after_secs(wait);
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests; retry in {seconds} s"))
                .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
                .into_response()
        }
    }
}
