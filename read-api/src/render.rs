//! Rendering a subscription event once for all its subscribers.
//!
//! The hub hands the same event to every subscriber of a conversation in this process.
//! Subscribers who sent the same document, operation and variables ask for the same
//! selection of it, so the first of them resolves it and the others reuse the value:
//! 10,000 subscribers of a group cost one resolution per message, not 10,000.
//!
//! A value is reused only when it is the same for every viewer: when no resolver asked
//! who the viewer is while rendering it ([`Viewer::of`]), and no field failed (a field
//! error travels beside the value, not in it). Otherwise each subscriber renders its own.

use std::borrow::Cow;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value};

use crate::Viewer;

/// Which selection a subscription asks for: the same for subscribers that sent the same
/// operation name, document and variables. Request data of every subscription.
pub struct RenderKey(pub Arc<str>);

impl RenderKey {
    pub fn of(request: &async_graphql::Request) -> Self {
        let variables = serde_json::to_string(&request.variables).unwrap_or_default();
        let operation = request.operation_name.as_deref().unwrap_or_default();
        Self(format!("{operation}\0{}\0{variables}", request.query).into())
    }
}

/// An event shared by the subscribers of a process, with the values rendered from it.
pub struct Shared<T> {
    event: T,
    renders: Mutex<Vec<(Arc<str>, Value)>>,
}

impl<T> Shared<T> {
    pub fn new(event: T) -> Arc<Self> {
        Arc::new(Self { event, renders: Mutex::new(Vec::new()) })
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.event
    }
}

/// A subscription's item: a shared event, resolved through the cache of its renders.
pub struct Rendered<T>(pub Arc<Shared<T>>);

impl<T: OutputType> OutputType for Rendered<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let shared = &self.0;
        let (Some(RenderKey(key)), Some(viewer)) = (ctx.data_opt::<RenderKey>(), ctx.data_opt::<Viewer>()) else {
            return shared.event.resolve(ctx, field).await;
        };
        if let Some((_, value)) = shared.renders.lock().expect("renders lock").iter().find(|(k, _)| k == key) {
            return Ok(value.clone());
        }
        viewer.take_consulted();
        let value = shared.event.resolve(ctx, field).await?;
        // Field errors of this item are in the query's errors until it is answered.
        let failed = !ctx.query_env.errors.lock().map(|errors| errors.is_empty()).unwrap_or(false);
        if !viewer.take_consulted() && !failed {
            let mut renders = shared.renders.lock().expect("renders lock");
            if !renders.iter().any(|(k, _)| k == key) {
                renders.push((key.clone(), value.clone()));
            }
        }
        Ok(value)
    }
}
