//! The OpenAPI 3.1 document of the REST commands, served at `GET /api/v1/openapi.json`.
//! Paths, bodies and answers come from the handlers' `#[utoipa::path]` attributes and
//! the request and answer types; the answers every command may give (a malformed
//! header or token, a reused idempotency key, rate limits, the store being down, and
//! for commands with a body: its size, type and time limits) are added to each
//! operation here, so the document lists every status a command can answer.

use std::sync::LazyLock;

use utoipa::openapi::content::Content;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::answers::*;
use crate::{content, conversations, notifications, search, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "Plaza commands", description = "The write side of Plaza: every command over REST/JSON. Queries are GraphQL, at /graphql."),
    paths(
        users::register,
        users::login,
        users::update_profile,
        users::follow,
        users::unfollow,
        content::publish,
        content::update,
        content::delete,
        content::like,
        content::unlike,
        content::favorite,
        content::unfavorite,
        content::comment,
        content::delete_comment,
        content::like_comment,
        content::unlike_comment,
        content::view,
        content::create_hashtag,
        content::increment,
        content::refresh_recommendations,
        conversations::start,
        conversations::update,
        conversations::add_members,
        conversations::remove_member,
        conversations::set_role,
        conversations::send,
        conversations::edit,
        conversations::delete_message,
        conversations::mark_read,
        conversations::typing,
        conversations::heartbeat,
        notifications::mark_read,
        notifications::settings,
        search::clear_all,
        search::clear_one,
    ),
    components(schemas(ErrorBody)),
    modifiers(&CommonAnswers),
)]
struct ApiDoc;

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| ApiDoc::openapi().to_json().expect("the OpenAPI document serializes"));
    &DOCUMENT
}

struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()));
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                add_common_answers(operation);
            }
        }
    }
}

fn add_common_answers(operation: &mut Operation) {
    let mut answers = vec![
        (400, "Invalid input: a malformed `Idempotency-Key` or `Authorization` header, or a value the command refuses"),
        (401, "The bearer token is not valid or has expired"),
        (422, "The `Idempotency-Key` was used for another request (`idempotency_key_reused`)"),
        (429, "Too many requests from this user or address (`rate_limited`); see `Retry-After`"),
        (503, "The event store is unavailable (`store_unavailable`)"),
    ];
    if operation.request_body.is_some() {
        answers.extend([
            (408, "The body did not arrive in time (`request_timeout`)"),
            (413, "The body is over 64 KiB (`payload_too_large`)"),
            (415, "The body is not sent as `application/json` (`unsupported_media_type`)"),
        ]);
    }
    for (status, description) in answers {
        let mut answer =
            ResponseBuilder::new().description(description).content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))));
        if status == 429 {
            answer = answer.header("Retry-After", Header::new(ObjectBuilder::new().schema_type(Type::Integer)));
        }
        operation.responses.responses.entry(status.to_string()).or_insert_with(|| answer.build().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_answers() {
        let document: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(document["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let paths = document["paths"].as_object().unwrap();
        let operations: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
        assert_eq!(operations, 35, "{:?}", paths.keys().collect::<Vec<_>>());
        let register = &paths["/api/v1/users/register"]["post"];
        for status in ["201", "400", "409", "413", "415", "422", "429"] {
            assert!(register["responses"][status].is_object(), "{status}: {register}");
        }
        assert!(paths["/api/v1/videos/{id}/like"]["post"]["responses"]["413"].is_null(), "no body, no body limits");
    }
}
